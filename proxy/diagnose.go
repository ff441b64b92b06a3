package proxy

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// Handshake failure reasons, as logged and as the metric label. The TCP
// path gets them from tlspsk.FailureReason; the UDP path too (classifyDTLS),
// after the proxy's own errors.
const (
	reasonUnknownIdentity = "unknown_identity"
	reasonWrongKey        = "wrong_key"
	reasonNoShared        = "no_shared_parameters"
	reasonTimeout         = "timeout"
	reasonPeerClosed      = "peer_closed"
	reasonProtocol        = "protocol_error"
	reasonLocal           = "local_error"
	reasonNotReady        = "psk_not_ready"
	reasonSilent          = "silent"      // server: no byte within timeouts.first_byte
	reasonUnreachable     = "unreachable" // the peer's port is closed (connection refused)
)

// explain says what a reason means and what to check, in words a user can
// act on.
func explain(reason string, mode Mode, identity string) string {
	switch reason {
	case reasonUnknownIdentity:
		if mode == ModeClient {
			return fmt.Sprintf("the server does not know PSK identity %q: check the identity on both sides", identity)
		}
		return fmt.Sprintf("the peer offered PSK identity %q, which has no key here: check the identity on both sides", identity)
	case reasonWrongKey:
		return "the peer's PSK differs from ours for this identity: check that both sides use the same key"
	case reasonNoShared:
		return "no shared protocol version, cipher suite or key exchange group: compare tls/dtls versions, cipher_suites and tls.groups on both sides"
	case reasonTimeout:
		return "the handshake did not finish in time: the peer is slow, unreachable, or (DTLS) silently dropping our records"
	case reasonPeerClosed:
		if mode == ModeClient {
			return "the server proxy closed the connection during the handshake: it may have no PSK yet, be at its connection limit, or not be a TLS-PSK server (see its log)"
		}
		return "the peer closed the connection during the handshake"
	case reasonNotReady:
		return "our PSK is not available yet"
	case reasonLocal:
		return "a local error ended the handshake"
	case reasonUnreachable:
		return "peer not reachable: connection refused (nothing listens on that port, or a firewall rejects the traffic)"
	case reasonSilent:
		return "the peer sent nothing within timeouts.first_byte"
	}
	return "the peer does not speak the expected protocol (wrong port, plain traffic, or garbage)"
}

// shortIdentity bounds an identity a peer chose before we log it.
func shortIdentity(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// classifyDTLS turns a DTLS handshake error into a reason: the proxy's own
// errors (no key yet, connection refused) first, then tlspsk's
// classification of alerts and timeouts.
func classifyDTLS(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, ErrUnknownIdentity) {
		return reasonUnknownIdentity
	}
	if errors.Is(err, ErrNotReady) {
		return reasonNotReady
	}
	if errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused") {
		return reasonUnreachable
	}
	return tlspsk.FailureReason(err)
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }
