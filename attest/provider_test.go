package attest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateTokenRequest(t *testing.T) {
	n := func(size int) string { return strings.Repeat("n", size) }
	six := []string{n(10), n(20), n(30), n(40), n(50), n(74)}
	ok := []struct {
		aud    string
		nonces []string
	}{
		{"", nil},
		{testAudience, nil},
		{testAudience, []string{testNonce}},
		{testAudience, six},
		{strings.Repeat("a", MaxAudienceLen), []string{n(MinNonceLen), n(MaxNonceLen)}},
	}
	for _, c := range ok {
		if err := ValidateTokenRequest(c.aud, c.nonces); err != nil {
			t.Errorf("ValidateTokenRequest(%d-byte aud, %d nonces): %v", len(c.aud), len(c.nonces), err)
		}
	}
	bad := map[string]struct {
		aud    string
		nonces []string
	}{
		"7 nonces":          {testAudience, append(six, n(10))},
		"9-byte nonce":      {testAudience, []string{n(9)}},
		"75-byte nonce":     {testAudience, []string{n(75)}},
		"empty nonce":       {testAudience, []string{""}},
		"513-byte audience": {strings.Repeat("a", MaxAudienceLen+1), nil},
		"nonce without aud": {"", []string{testNonce}},
	}
	for name, c := range bad {
		err := ValidateTokenRequest(c.aud, c.nonces)
		if !errors.Is(err, ErrRequest) || Reason(err) != "bad_request" {
			t.Errorf("%s: error = %v, want ErrRequest", name, err)
		}
	}
}

// The provider checks limits before any I/O: with no launcher at all, a bad
// request fails as ErrRequest, not as an unreachable launcher.
func TestProviderChecksLimitsLocally(t *testing.T) {
	p := NewConfidentialSpace(filepath.Join(t.TempDir(), "none.sock"))
	ctx := context.Background()
	cases := map[string]struct {
		aud    string
		nonces []string
	}{
		"7 nonces":      {testAudience, []string{testNonce, testNonce, testNonce, testNonce, testNonce, testNonce, testNonce}},
		"9-byte nonce":  {testAudience, []string{"123456789"}},
		"75-byte nonce": {testAudience, []string{strings.Repeat("x", 75)}},
		"513-byte aud":  {strings.Repeat("a", 513), []string{testNonce}},
	}
	for name, c := range cases {
		_, err := p.Token(ctx, c.aud, c.nonces)
		if !errors.Is(err, ErrRequest) {
			t.Errorf("%s: error = %v, want ErrRequest", name, err)
		}
	}
}

func TestProviderNoLauncher(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, p := range []*LauncherClient{NewConfidentialSpace(sock), NewDev(sock)} {
		_, err := p.Token(context.Background(), testAudience, []string{testNonce})
		if !errors.Is(err, ErrProvider) || Reason(err) != "provider_unavailable" {
			t.Fatalf("error = %v, want ErrProvider", err)
		}
		if !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), p.Kind()) {
			t.Errorf("error does not name the kind and socket: %v", err)
		}
	}
}

func TestNewProvider(t *testing.T) {
	p, err := NewProvider("confidential-space", "")
	if err != nil || p.(*LauncherClient).Socket() != DefaultLauncherSocket {
		t.Fatalf("confidential-space: %v %v", p, err)
	}
	p, err = NewProvider("dev", "/tmp/x.sock")
	if err != nil || p.(*LauncherClient).Socket() != "/tmp/x.sock" || p.(*LauncherClient).Kind() != KindDev {
		t.Fatalf("dev: %v %v", p, err)
	}
	if _, err := NewProvider("dev", ""); err == nil {
		t.Error("dev without socket accepted")
	}
	if _, err := NewProvider("tpm", ""); err == nil || !strings.Contains(err.Error(), "confidential-space") {
		t.Errorf("unknown kind: %v", err)
	}
}

// fakeLauncher serves handler on a Unix socket in t.TempDir().
func fakeLauncher(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "l.sock")
	l, err := listenUnix(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// The request on the wire is the launcher's: POST /v1/token with JSON.
func TestProviderRequestShape(t *testing.T) {
	var got TokenRequest
	var method, path, ctype string
	sock := fakeLauncher(t, func(w http.ResponseWriter, r *http.Request) {
		method, path, ctype = r.Method, r.URL.Path, r.Header.Get("Content-Type")
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &got); err != nil {
			t.Errorf("body %q: %v", body, err)
		}
		w.Write([]byte("aGVhZGVy.cGF5bG9hZA.c2ln\n"))
	})
	tok, err := NewConfidentialSpace(sock).Token(context.Background(), testAudience, []string{testNonce})
	if err != nil {
		t.Fatal(err)
	}
	if tok != "aGVhZGVy.cGF5bG9hZA.c2ln" {
		t.Errorf("token = %q (trailing newline should be trimmed)", tok)
	}
	if method != "POST" || path != "/v1/token" || ctype != "application/json" {
		t.Errorf("request %s %s %s", method, path, ctype)
	}
	if got.Audience != testAudience || got.TokenType != "OIDC" || len(got.Nonces) != 1 || got.Nonces[0] != testNonce {
		t.Errorf("request body = %+v", got)
	}
}

func TestProviderBadReplies(t *testing.T) {
	cases := map[string]struct {
		status  int
		body    string
		want    string // in the error
		notWant string // never in the error
	}{
		"launcher error":       {500, "failed to get token: attestation service unavailable", "attestation service unavailable", ""},
		"error body withheld":  {500, "eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl", "withheld", "eyJzdWIi"},
		"not a jwt":            {200, "secret-looking thing that is not a jwt", "not a compact JWT", "secret-looking"},
		"oversize reply":       {200, strings.Repeat("a", maxTokenReply+10), "larger than", ""},
		"control chars echoed": {400, "bad\nrequest\x1b[31m", "bad request", "\n"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			sock := fakeLauncher(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(c.status)
				w.Write([]byte(c.body))
			})
			_, err := NewDev(sock).Token(context.Background(), testAudience, []string{testNonce})
			if !errors.Is(err, ErrProvider) {
				t.Fatalf("error = %v, want ErrProvider", err)
			}
			if !strings.Contains(err.Error(), c.want) || (c.notWant != "" && strings.Contains(err.Error(), c.notWant)) {
				t.Errorf("error = %q; want it to contain %q and not %q", err, c.want, c.notWant)
			}
		})
	}
}

func TestProviderContextCanceled(t *testing.T) {
	block := make(chan struct{})
	sock := fakeLauncher(t, func(w http.ResponseWriter, r *http.Request) { <-block })
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := NewDev(sock).Token(ctx, testAudience, []string{testNonce})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("error = %v after %v", err, time.Since(start))
	}
}
