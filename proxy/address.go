package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Endpoint is a parsed listen or connect address: scheme://host:port.
type Endpoint struct {
	Scheme string // tcp, tls, udp or dtls
	Host   string // may be empty (all interfaces) for a listener
	Port   int
}

// Secure reports whether the scheme is the tunnel side (tls or dtls).
func (e Endpoint) Secure() bool { return e.Scheme == "tls" || e.Scheme == "dtls" }

// Network is the socket network: "tcp" or "udp".
func (e Endpoint) Network() string {
	if e.Scheme == "udp" || e.Scheme == "dtls" {
		return "udp"
	}
	return "tcp"
}

// HostPort is host:port for net.Dial and net.Listen.
func (e Endpoint) HostPort() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

func (e Endpoint) String() string { return e.Scheme + "://" + e.HostPort() }

// ParseEndpoint parses scheme://host:port. The scheme is required so a
// config says plainly which side is encrypted.
func ParseEndpoint(s string) (Endpoint, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Endpoint{}, fmt.Errorf("%q has no scheme: write tcp://, tls://, udp:// or dtls:// before host:port", s)
	}
	switch scheme {
	case "tcp", "tls", "udp", "dtls":
	default:
		return Endpoint{}, fmt.Errorf("%q: unknown scheme %q (want tcp, tls, udp or dtls)", s, scheme)
	}
	host, portStr, err := net.SplitHostPort(rest)
	if err != nil {
		return Endpoint{}, fmt.Errorf("%q: want host:port: %v", s, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return Endpoint{}, fmt.Errorf("%q: bad port %q", s, portStr)
	}
	if strings.ContainsAny(host, " /?#@") {
		return Endpoint{}, fmt.Errorf("%q: bad host %q", s, host)
	}
	return Endpoint{Scheme: scheme, Host: host, Port: port}, nil
}

// overlaps reports whether two listeners would fight over the same socket.
func (e Endpoint) overlaps(o Endpoint) bool {
	if e.Network() != o.Network() || e.Port != o.Port || e.Port == 0 {
		return false
	}
	return e.Host == o.Host || isWildcard(e.Host) || isWildcard(o.Host)
}

func isWildcard(h string) bool {
	if h == "" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsUnspecified()
}

// isLoopbackHost reports whether a listener host is loopback only: a
// loopback IP or "localhost". An empty host is every interface.
func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}
