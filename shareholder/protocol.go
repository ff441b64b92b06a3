package shareholder

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Wire constants of the release protocol (docs/share-release.md).
const (
	// ReleasePath is the release endpoint.
	ReleasePath = "/v1/release"
	// ReleaseEKMLabel is the TLS exporter label both sides use; the 32-byte
	// exported value, lowercase hex, is the token's single nonce.
	ReleaseEKMLabel = "EXPORTER-mcbn-share-release-v1"
	// ReleaseEKMLength is the exported length in bytes.
	ReleaseEKMLength = 32
	// ProtocolVersion is the "version" of requests and responses.
	ProtocolVersion = 1
	// DefaultMaxBody bounds a release request body.
	DefaultMaxBody = 64 << 10
)

// Public reason codes of a refusal. They say what kind of check failed and
// nothing an attacker could use to tune a forgery.
const (
	ReasonOK             = "ok"
	ReasonBadRequest     = "bad_request"
	ReasonTooLarge       = "too_large"
	ReasonTokenInvalid   = "token_invalid"
	ReasonPolicyDenied   = "policy_denied"
	ReasonConsentRevoked = "consent_revoked"
	ReasonRateLimited    = "rate_limited"
	ReasonUnavailable    = "unavailable"
	// ReasonConfigInvalid is the refusal while the daemon's config file
	// does not load: it refuses every release until the file loads again
	// (HTTP 503). Consent fails closed.
	ReasonConfigInvalid = "config_invalid"
)

// ReleaseRequest is the body of POST /v1/release.
type ReleaseRequest struct {
	Version int    `json:"version"`
	Token   string `json:"token"`
	// GroupID optionally names the group the caller expects; a shareholder
	// holding a share of another group refuses with bad_request.
	GroupID string `json:"group_id,omitempty"`
	// Mode is "share" (the default) or "evaluate"; Identity and Epoch are
	// evaluate's input (protocol_eval.go, docs/share-release.md).
	Mode     string `json:"mode,omitempty"`
	Identity string `json:"identity,omitempty"`
	Epoch    uint64 `json:"epoch,omitempty"`
}

// ReleaseResponse is the 200 reply: the share file (psk format) as JSON.
type ReleaseResponse struct {
	Version int             `json:"version"`
	Share   json.RawMessage `json:"share"`
}

// Refusal is the body of every non-200 reply.
type Refusal struct {
	Error  string `json:"error"`  // always "refused"
	Reason string `json:"reason"` // one of the Reason* codes
}

// maxTokenLen bounds the token inside a request (the verifier has its own
// bound; this one keeps parsing cheap).
const maxTokenLen = 32 << 10

// ParseReleaseRequest decodes a request body strictly: one JSON object,
// known fields only, version 1, a token of plausible size and shape. Errors
// never quote the token.
func ParseReleaseRequest(body []byte) (*ReleaseRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r ReleaseRequest
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("request is not the expected JSON object: %s", jsonKind(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the request object")
	}
	if r.Version != ProtocolVersion {
		return nil, fmt.Errorf("version %d, want %d", r.Version, ProtocolVersion)
	}
	if r.Token == "" {
		return nil, errors.New("missing token")
	}
	if len(r.Token) > maxTokenLen {
		return nil, fmt.Errorf("token is %d bytes, at most %d", len(r.Token), maxTokenLen)
	}
	if r.GroupID != "" && !isHex(r.GroupID, 64) {
		return nil, errors.New("group_id is not 64 lowercase hex digits")
	}
	if err := checkMode(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ChannelNonce returns the nonce bound to a TLS 1.3 connection: the hex of
// ReleaseEKMLength bytes exported with ReleaseEKMLabel and no context.
func ChannelNonce(cs *tls.ConnectionState) (string, error) {
	if cs == nil || !cs.HandshakeComplete {
		return "", errors.New("no completed TLS handshake")
	}
	if cs.Version != tls.VersionTLS13 {
		return "", errors.New("TLS 1.3 is required")
	}
	ekm, err := cs.ExportKeyingMaterial(ReleaseEKMLabel, nil, ReleaseEKMLength)
	if err != nil {
		return "", fmt.Errorf("exporting keying material: %v", err)
	}
	return hex.EncodeToString(ekm), nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// jsonKind describes a JSON decoding error without quoting the input.
func jsonKind(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("wrong type for %q", te.Field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	case err != nil && len(err.Error()) < 80 && bytes.HasPrefix([]byte(err.Error()), []byte("json: unknown field")):
		return err.Error()
	default:
		return "invalid JSON"
	}
}
