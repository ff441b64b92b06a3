package tlspsk

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// DTLSConfig configures a DTLS 1.2 PSK client or listener. The embedded
// Config supplies the PSK (Identity, Key, GetKey, IdentityHint), the suites
// (CipherSuites, from DTLSCipherSuites; nil means the defaults),
// CurvePreferences (X25519 and P-256 for ECDHE_PSK), AllowPSKOnly and
// RequireForwardSecrecy (as for TLS 1.2), Rand, Time and KeyLogWriter.
// MinVersion, MaxVersion and PSKHash do not apply: this is DTLS 1.2 only.
// A DTLSConfig must not be modified once in use.
type DTLSConfig struct {
	Config

	// MTU is the largest datagram the handshake sends (UDP payload);
	// longer handshake messages are fragmented. 0 means 1200. It does not
	// limit application data: Write sends each datagram as one record.
	MTU int
	// HandshakeTimeout bounds a whole handshake, retransmissions included;
	// 0 means 30s.
	HandshakeTimeout time.Duration
	// RetransmitInterval is the first retransmission timeout of a flight
	// (RFC 6347 4.2.4.1 suggests 1s); it doubles on each retransmission
	// up to 60s. 0 means 1s.
	RetransmitInterval time.Duration

	// ConnectionIDLength, when above 0, makes a listener issue connection
	// IDs of this many random bytes (RFC 9146) to clients that offer the
	// extension, and route their records by CID, so that a client whose
	// address changes (NAT rebinding) keeps its session. A client offers
	// the extension (asking for no CID of its own) when it is above 0.
	ConnectionIDLength int

	// UDPOffload turns on UDP segmentation offload on Linux where the
	// DTLS code owns the socket's batched path: GSO for WriteBatch (a
	// run of records to the peer leaves as one message the kernel
	// segments) and, on a listener, GRO for its read loop (the kernel
	// hands over coalesced runs, split again per datagram). Each segment
	// is one datagram, so records never straddle them. A kernel or
	// device that refuses GSO turns it off for that socket's batch; see
	// docs/udp.md.
	UDPOffload bool

	// Listener only.

	// MaxHandshakes bounds the handshakes in progress (each started only
	// by a ClientHello with a valid cookie); ClientHellos beyond it are
	// dropped and counted. 0 means 256.
	MaxHandshakes int
	// MaxSessions bounds the sessions (handshaking and established); 0
	// means no bound.
	MaxSessions int
	// QueueLength is the number of datagrams a session buffers between the
	// listener's read loop and the session's Read; more are dropped and
	// counted (queue_full). 0 means 256.
	QueueLength int
	// AcceptBacklog is the number of established sessions waiting for
	// Accept; a session finding it full is closed and counted. 0 means 64.
	AcceptBacklog int
	// CookieRotation is how often the listener replaces its cookie secret;
	// a cookie is valid for up to two periods. 0 means 30s.
	CookieRotation time.Duration
	// HandshakeFailed, if set, is called (from the handshake's goroutine)
	// when a server handshake fails: the peer, the PSK identity it
	// offered (empty before the ClientKeyExchange) and the error
	// (FailureReason classifies it). It must not block.
	HandshakeFailed func(peer net.Addr, identity string, err error)
}

// DTLS defaults.
const (
	DefaultDTLSMTU                = 1200
	DefaultDTLSHandshakeTimeout   = 30 * time.Second
	DefaultDTLSRetransmitInterval = time.Second
	maxRetransmitInterval         = 60 * time.Second
	defaultMaxHandshakes          = 256
	defaultQueueLength            = 256
	defaultAcceptBacklog          = 64
	defaultCookieRotation         = 30 * time.Second
	// minDTLSMTU leaves room for a header, a handshake header, the AEAD
	// overhead and some payload in each fragment.
	minDTLSMTU = 128
	maxDTLSMTU = 65507
)

func (c *DTLSConfig) mtu() int {
	if c.MTU == 0 {
		return DefaultDTLSMTU
	}
	return c.MTU
}

func (c *DTLSConfig) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout <= 0 {
		return DefaultDTLSHandshakeTimeout
	}
	return c.HandshakeTimeout
}

func (c *DTLSConfig) retransmitInterval() time.Duration {
	if c.RetransmitInterval <= 0 {
		return DefaultDTLSRetransmitInterval
	}
	return c.RetransmitInterval
}

func (c *DTLSConfig) maxHandshakes() int {
	if c.MaxHandshakes <= 0 {
		return defaultMaxHandshakes
	}
	return c.MaxHandshakes
}

func (c *DTLSConfig) queueLength() int {
	if c.QueueLength <= 0 {
		return defaultQueueLength
	}
	return c.QueueLength
}

func (c *DTLSConfig) acceptBacklog() int {
	if c.AcceptBacklog <= 0 {
		return defaultAcceptBacklog
	}
	return c.AcceptBacklog
}

func (c *DTLSConfig) cookieRotation() time.Duration {
	if c.CookieRotation <= 0 {
		return defaultCookieRotation
	}
	return c.CookieRotation
}

func (c *DTLSConfig) now() time.Time {
	if c.Time != nil {
		return c.Time()
	}
	return time.Now()
}

// checkDTLS validates the configuration for a client or a listener.
func (c *DTLSConfig) checkDTLS(isClient bool) error {
	if c == nil {
		return errors.New("tlspsk: nil DTLSConfig")
	}
	if isClient && len(c.Key) == 0 && c.GetKey == nil {
		return errors.New("tlspsk: DTLS client config needs Key or GetKey")
	}
	if !isClient && c.GetKey == nil && len(c.Key) == 0 {
		return errors.New("tlspsk: DTLS server config needs GetKey or Key")
	}
	if c.AllowPSKOnly && c.RequireForwardSecrecy {
		return errors.New("tlspsk: AllowPSKOnly and RequireForwardSecrecy exclude each other")
	}
	if m := c.mtu(); m < minDTLSMTU || m > maxDTLSMTU {
		return fmt.Errorf("tlspsk: DTLS MTU %d out of range %d..%d", m, minDTLSMTU, maxDTLSMTU)
	}
	if c.ConnectionIDLength < 0 || c.ConnectionIDLength > maxCIDLen {
		return fmt.Errorf("tlspsk: DTLS ConnectionIDLength %d out of range 0..%d", c.ConnectionIDLength, maxCIDLen)
	}
	if len(c.dtlsSuites(isClient)) == 0 {
		return errors.New("tlspsk: no usable DTLS cipher suite in CipherSuites (see DTLSCipherSuites; plain PSK suites need AllowPSKOnly or naming them on a client)")
	}
	for _, id := range c.CipherSuites {
		if dtlsSuiteByID(id) == nil {
			return fmt.Errorf("tlspsk: cipher suite %s is not a DTLS 1.2 suite this package implements", DTLSCipherSuiteName(id))
		}
	}
	return nil
}
