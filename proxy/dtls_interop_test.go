package proxy

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestOpenSSLClientDTLSUnknownIdentity: an OpenSSL DTLS client offering an
// identity the server proxy has no key for hears unknown_psk_identity
// ("unknown psk identity") at once, where pion answered internal_error,
// and the server proxy logs and counts unknown_identity naming it.
func TestOpenSSLClientDTLSUnknownIdentity(t *testing.T) {
	openssl := needBinary(t, "openssl")
	key := randomKey(t)
	srv := serverProxy(t, "dtls://127.0.0.1:0", "udp://"+udpEcho(t).String(), PSKConfig{Hex: hexKey(key)}, nil)
	peer := startPeer(t, testCtx(t), openssl, "s_client", "-dtls1_2", "-cipher", "PSK-AES128-GCM-SHA256",
		"-psk", hexKey(key), "-psk_identity", "mallory", "-connect", srv.url("svc"))
	waitFor(t, 10*time.Second, "s_client to report the alert", func() bool {
		return strings.Contains(peer.out.String(), "unknown psk identity")
	})
	waitFor(t, 5*time.Second, "the server's unknown_identity metric", func() bool {
		return metricValue(srv.met.handshakeFailures.WithLabelValues("svc", "unknown_identity")) == 1
	})
	if !strings.Contains(srv.logs.String(), "mallory") {
		t.Fatalf("the server log does not name the identity:\n%s", srv.logs.String())
	}
}

// TestGnuTLSClientDTLS: gnutls-cli --udp (DTLS 1.2, plain PSK: GnuTLS 3.7's
// client crashes on ECDHE-PSK over DTLS) reaches a UDP backend through a
// server proxy.
func TestGnuTLSClientDTLS(t *testing.T) {
	gnutls := needBinary(t, "gnutls-cli")
	key := randomKey(t)
	srv := serverProxy(t, "dtls://127.0.0.1:0", "udp://"+udpEcho(t).String(), PSKConfig{Hex: hexKey(key)}, nil)
	host, port, _ := net.SplitHostPort(srv.url("svc"))
	peer := startPeer(t, testCtx(t), gnutls, "--udp", "--pskusername", DefaultIdentity, "--pskkey", hexKey(key),
		"--priority", "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-GCM", "-p", port, host)
	waitFor(t, 10*time.Second, "the handshake", func() bool {
		return metricValue(srv.met.sessionsTotal.WithLabelValues("svc")) == 1
	})
	fmt.Fprintln(peer.stdin, "hello through gnutls dtls")
	waitFor(t, 10*time.Second, "the echo in gnutls-cli's output", func() bool {
		return strings.Contains(peer.out.String(), "hello through gnutls dtls")
	})
}
