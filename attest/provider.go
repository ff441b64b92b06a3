package attest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// TokenProvider obtains an attestation token for audience carrying nonces in
// its eat_nonce claim. It is what the proxy calls inside the TEE.
type TokenProvider interface {
	Token(ctx context.Context, audience string, nonces []string) (string, error)
}

// Provider kinds accepted by NewProvider (the "attestation.provider" of a
// proxy configuration).
const (
	KindConfidentialSpace = "confidential-space"
	KindDev               = "dev"
)

// DefaultLauncherSocket is where the Confidential Space launcher serves its
// token API to the workload container.
const DefaultLauncherSocket = "/run/container_launcher/teeserver.sock"

// Limits of the launcher's custom-token API. Google documents 10..74 bytes
// per nonce in one place and 8..88 in another; we keep the narrower range so
// a request valid here is valid everywhere.
const (
	MaxNonces        = 6
	MinNonceLen      = 10
	MaxNonceLen      = 74
	MaxAudienceLen   = 512
	maxTokenReply    = 64 << 10 // a launcher reply larger than this is refused
	providerTimeout  = 30 * time.Second
	maxErrorBodyEcho = 200
)

// TokenRequest is the JSON body of POST /v1/token on the launcher socket.
type TokenRequest struct {
	Audience  string   `json:"audience"`
	TokenType string   `json:"token_type"`
	Nonces    []string `json:"nonces,omitempty"`
}

// ValidateTokenRequest checks audience and nonces against the launcher's
// documented limits: at most 6 nonces of 10..74 bytes each, an audience of
// at most 512 bytes, required when nonces are given.
func ValidateTokenRequest(audience string, nonces []string) error {
	if len(audience) > MaxAudienceLen {
		return wrapf(ErrRequest, "audience is %d bytes, at most %d allowed", len(audience), MaxAudienceLen)
	}
	if len(nonces) > MaxNonces {
		return wrapf(ErrRequest, "%d nonces, at most %d allowed", len(nonces), MaxNonces)
	}
	if len(nonces) > 0 && audience == "" {
		return wrapf(ErrRequest, "an audience is required when nonces are given")
	}
	for i, n := range nonces {
		if len(n) < MinNonceLen || len(n) > MaxNonceLen {
			return wrapf(ErrRequest, "nonce %d is %d bytes, must be %d..%d", i, len(n), MinNonceLen, MaxNonceLen)
		}
	}
	return nil
}

// LauncherClient speaks the Confidential Space launcher's token API over a
// Unix socket. The dev attester serves the same API, so one client serves
// both kinds.
type LauncherClient struct {
	kind   string
	socket string
	client *http.Client
}

// NewConfidentialSpace returns a provider for the Confidential Space
// launcher; socket "" means DefaultLauncherSocket.
func NewConfidentialSpace(socket string) *LauncherClient {
	if socket == "" {
		socket = DefaultLauncherSocket
	}
	return newLauncherClient(KindConfidentialSpace, socket)
}

// NewDev returns a provider for a dev attester listening on socket.
func NewDev(socket string) *LauncherClient {
	return newLauncherClient(KindDev, socket)
}

// NewProvider builds a provider from configuration: kind is
// "confidential-space" (socket optional), "dev" (socket required), "tdx" or
// "sev-snp" (raw evidence via configfs-tsm or the guest device; socket
// unused) or "mock-tsm" (socket is the mock-tsm directory; tests only).
func NewProvider(kind, socket string) (TokenProvider, error) {
	switch kind {
	case KindConfidentialSpace:
		return NewConfidentialSpace(socket), nil
	case KindDev:
		if socket == "" {
			return nil, fmt.Errorf("attest: provider %q needs the dev attester's socket path", kind)
		}
		return NewDev(socket), nil
	case KindTDX:
		return NewTDXProvider(), nil
	case KindSEVSNP:
		return NewSEVSNPProvider(), nil
	case KindMockTSM:
		if socket == "" {
			return nil, fmt.Errorf("attest: provider %q needs the mock-tsm directory (attestation.socket)", kind)
		}
		return NewMockTSMProvider(socket), nil
	default:
		return nil, fmt.Errorf("attest: unknown token provider %q (want %q, %q, %q, %q or %q)", kind, KindConfidentialSpace, KindDev, KindTDX, KindSEVSNP, KindMockTSM)
	}
}

func newLauncherClient(kind, socket string) *LauncherClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:           1,
		IdleConnTimeout:        30 * time.Second,
		ResponseHeaderTimeout:  providerTimeout,
		MaxResponseHeaderBytes: 16 << 10,
		DisableCompression:     true,
	}
	return &LauncherClient{
		kind:   kind,
		socket: socket,
		client: &http.Client{Transport: tr, Timeout: providerTimeout},
	}
}

// Kind returns "confidential-space" or "dev".
func (c *LauncherClient) Kind() string { return c.kind }

// Socket returns the Unix socket path the client talks to.
func (c *LauncherClient) Socket() string { return c.socket }

// Token asks the launcher for an OIDC token with audience and nonces. The
// request is checked locally first so a bad one fails with a clear error.
func (c *LauncherClient) Token(ctx context.Context, audience string, nonces []string) (string, error) {
	if err := ValidateTokenRequest(audience, nonces); err != nil {
		return "", err
	}
	body, err := json.Marshal(TokenRequest{Audience: audience, TokenType: "OIDC", Nonces: nonces})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost/v1/token", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("attest: %w: %s token API at %s: %v", ErrProvider, c.kind, c.socket, unwrapURLError(err))
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenReply+1))
	if err != nil {
		return "", fmt.Errorf("attest: %w: %s token API at %s: reading reply: %v", ErrProvider, c.kind, c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("attest: %w: %s token API at %s: %s: %s", ErrProvider, c.kind, c.socket, resp.Status, printable(reply, maxErrorBodyEcho))
	}
	if len(reply) > maxTokenReply {
		return "", fmt.Errorf("attest: %w: %s token API at %s: reply larger than %d bytes", ErrProvider, c.kind, c.socket, maxTokenReply)
	}
	tok := strings.TrimSpace(string(reply))
	if !looksLikeJWT(tok) {
		// Never echo the body: it might be a credential in an unexpected shape.
		return "", fmt.Errorf("attest: %w: %s token API at %s: reply is not a compact JWT (%d bytes)", ErrProvider, c.kind, c.socket, len(reply))
	}
	return tok, nil
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the
// meaningless "http://localhost" URL, keeping the dial error.
func unwrapURLError(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && strings.Contains(err.Error(), "http://localhost") {
		if inner := u.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// looksLikeJWT reports whether s has the shape of a JWS compact
// serialisation: three base64url segments separated by dots.
func looksLikeJWT(s string) bool {
	if strings.Count(s, ".") != 2 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// printable returns at most n bytes of b with control characters replaced,
// for echoing a launcher's error message.
func printable(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if looksLikeJWT(s) {
		return "(body withheld: it looks like a token)"
	}
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
