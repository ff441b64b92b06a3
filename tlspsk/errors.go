package tlspsk

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// AlertError is a fatal TLS alert, either sent by us (Received false) or
// received from the peer. It never carries key material.
type AlertError struct {
	Alert    Alert
	Received bool
	// Handshake is true when the alert ended the handshake.
	Handshake bool
	// Detail says why, for alerts we send.
	Detail string
	// answeredHello is set on the client for an alert received in answer
	// to its ClientHello, where an illegal_parameter or decrypt_error
	// means the server rejected the PSK binder.
	answeredHello bool
}

func (e *AlertError) Error() string {
	var s string
	if e.Received {
		s = "tlspsk: peer sent alert " + e.Alert.String()
		if e.rejectedPSK() {
			return s + " (the server rejected our PSK: wrong key, or an identity it does not know)"
		}
		if hint := receivedHint(e.Alert); hint != "" {
			s += " (" + hint + ")"
		}
		return s
	}
	s = "tlspsk: " + e.Alert.String()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *AlertError) rejectedPSK() bool {
	return e.Received && e.answeredHello && (e.Alert == alertIllegalParameter || e.Alert == alertDecryptError)
}

func receivedHint(a Alert) string {
	switch a {
	case alertUnknownPSKIdentity:
		return "the server does not know our PSK identity"
	case alertDecryptError:
		return "the peer's key differs from ours"
	case alertBadRecordMAC:
		return "records do not decrypt: wrong key or corruption"
	case alertHandshakeFailure:
		return "no shared parameters, or the peer rejected our PSK identity"
	case alertProtocolVersion:
		return "no shared TLS version"
	case alertInsufficientSecurity:
		return "the peer requires stronger parameters"
	}
	return ""
}

func alertf(a Alert, detail string) *AlertError {
	return &AlertError{Alert: a, Detail: detail}
}

// FailureReason classifies err for logs and metrics: "unknown_identity",
// "wrong_key", "no_shared_parameters", "timeout", "peer_closed",
// "protocol_error", "local_error" or "" for nil. It never returns key
// material.
func FailureReason(err error) string {
	if err == nil {
		return ""
	}
	var ae *AlertError
	if errors.As(err, &ae) {
		if ae.rejectedPSK() {
			return "wrong_key"
		}
		switch ae.Alert {
		case alertUnknownPSKIdentity:
			return "unknown_identity"
		case alertDecryptError:
			return "wrong_key"
		case alertBadRecordMAC:
			if ae.Handshake {
				return "wrong_key"
			}
			return "protocol_error"
		case alertHandshakeFailure, alertInsufficientSecurity, alertProtocolVersion, alertMissingExtension:
			return "no_shared_parameters"
		case alertCloseNotify, alertUserCanceled:
			return "peer_closed"
		case alertInternalError:
			if !ae.Received {
				return "local_error"
			}
		}
		return "protocol_error"
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
		return "peer_closed"
	}
	if errors.Is(err, errConfig) {
		return "local_error"
	}
	return "protocol_error"
}

var errConfig = errors.New("tlspsk: configuration")
