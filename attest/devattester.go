package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DevAttesterConfig configures a DevAttester.
type DevAttesterConfig struct {
	// Listen is the loopback address for OIDC discovery and JWKS
	// (default "127.0.0.1:0"); the issuer is http://<that address>.
	Listen string
	// Socket is the path of the launcher-compatible token socket. Required.
	Socket string
	// SocketMode is 0600 (default) or 0660.
	SocketMode os.FileMode
	// ImageDigest goes into submods.container.image_digest (default: the
	// SHA-256 of the running executable, see ExecutableDigest).
	ImageDigest string
	// ImageReference goes into submods.container.image_reference (default:
	// "localhost/mcbn-dev@" + ImageDigest).
	ImageReference string
	// Key signs tokens. nil: load KeyFile, or generate an RSA-2048 key (and
	// write it to KeyFile with mode 0600 when KeyFile is set but missing).
	Key     *rsa.PrivateKey
	KeyFile string
	// TokenLifetime is exp - iat (default one hour, as Confidential Space).
	TokenLifetime time.Duration
	// Now is the clock for iat/nbf/exp (nil: time.Now).
	Now func() time.Time
	// Mutate hooks change every token's claims before signing, so tests can
	// mint expired, not-yet-valid or foreign-digest tokens through the real
	// socket path. See SetClaim, SetTimes and DevAttester.SetMutate.
	Mutate []func(claims map[string]any)
	// Logger (nil: slog.Default()).
	Logger *slog.Logger
}

// DevAttester is a local stand-in for Confidential Space: an OIDC issuer
// (discovery and JWKS over HTTP on loopback) and the launcher's token API on
// a Unix socket. Its tokens are Confidential-Space-shaped but marked as dev
// (DevSWName, DevDebugStatus, DevHWModel, no support attributes).
type DevAttester struct {
	issuer    string
	socket    string
	digest    string
	reference string
	lifetime  time.Duration
	now       func() time.Time
	log       *slog.Logger

	httpSrv, sockSrv *http.Server
	httpLn           net.Listener
	sockLn           *net.UnixListener

	mu     sync.Mutex
	signer jose.Signer
	kid    string
	pubs   []jose.JSONWebKey // published keys, newest first
	mutate []func(map[string]any)

	jwksRequests atomic.Int64
	closeOnce    sync.Once
	closeErr     error
}

// StartDevAttester starts the issuer and the token socket and returns once
// both accept connections. Call Close to stop them.
func StartDevAttester(cfg DevAttesterConfig) (*DevAttester, error) {
	if cfg.Socket == "" {
		return nil, errors.New("attest: dev attester needs a socket path")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if err := checkLoopback(cfg.Listen); err != nil {
		return nil, fmt.Errorf("attest: dev attester --listen %q: %v", cfg.Listen, err)
	}
	if cfg.SocketMode == 0 {
		cfg.SocketMode = 0o600
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ImageDigest == "" {
		d, err := ExecutableDigest()
		if err != nil {
			return nil, err
		}
		cfg.ImageDigest = d
	}
	if cfg.ImageReference == "" {
		cfg.ImageReference = "localhost/mcbn-dev@" + cfg.ImageDigest
	}
	key := cfg.Key
	if key == nil {
		var err error
		if cfg.KeyFile != "" {
			key, err = loadOrCreateKey(cfg.KeyFile)
		} else {
			key, err = rsa.GenerateKey(rand.Reader, devKeyBits)
		}
		if err != nil {
			return nil, fmt.Errorf("attest: dev attester key: %w", err)
		}
	}
	d := &DevAttester{
		socket: cfg.Socket, digest: cfg.ImageDigest, reference: cfg.ImageReference,
		lifetime: cfg.TokenLifetime, now: cfg.Now, log: cfg.Logger,
		mutate: append(([]func(map[string]any))(nil), cfg.Mutate...),
	}
	if err := d.useKey(key); err != nil {
		return nil, err
	}

	httpLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("attest: dev attester: %w", err)
	}
	sockLn, err := listenUnix(cfg.Socket, cfg.SocketMode)
	if err != nil {
		httpLn.Close()
		return nil, fmt.Errorf("attest: dev attester: %w", err)
	}
	d.httpLn, d.sockLn = httpLn, sockLn
	d.issuer = "http://" + httpLn.Addr().String()

	issuerMux := http.NewServeMux()
	issuerMux.HandleFunc("GET /.well-known/openid-configuration", d.serveDiscovery)
	issuerMux.HandleFunc("GET /jwks", d.serveJWKS)
	sockMux := http.NewServeMux()
	sockMux.HandleFunc("/v1/token", d.serveToken)
	d.httpSrv, d.sockSrv = newDevServer(issuerMux, d.log), newDevServer(sockMux, d.log)
	go d.httpSrv.Serve(httpLn)
	go d.sockSrv.Serve(sockLn)
	d.log.Info("dev attester started", "issuer", d.issuer, "socket", d.socket, "image_digest", d.digest, "kid", d.kid)
	return d, nil
}

func newDevServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// checkLoopback refuses listen addresses other than a loopback IP.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return errors.New("the dev issuer listens on a loopback IP only (e.g. 127.0.0.1:0)")
	}
	return nil
}

// useKey makes key the signing key and publishes its public half.
func (d *DevAttester) useKey(key *rsa.PrivateKey) error {
	if key.N.BitLen() < devKeyBits {
		return fmt.Errorf("attest: dev attester key has %d bits, want at least %d", key.N.BitLen(), devKeyBits)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return err
	}
	pub.KeyID = b64url(tp)
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: pub.KeyID, Algorithm: string(jose.RS256)}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.signer, d.kid = signer, pub.KeyID
	d.pubs = append([]jose.JSONWebKey{pub}, d.pubs...)
	return nil
}

// RotateKey switches to a new signing key (nil: generate one). The previous
// public keys stay in the JWKS, as an issuer does during rotation.
func (d *DevAttester) RotateKey(key *rsa.PrivateKey) error {
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, devKeyBits); err != nil {
			return err
		}
	}
	return d.useKey(key)
}

// Issuer returns the issuer URL, http://127.0.0.1:PORT.
func (d *DevAttester) Issuer() string { return d.issuer }

// JWKSURL returns the URL of the key set.
func (d *DevAttester) JWKSURL() string { return d.issuer + "/jwks" }

// Socket returns the token socket path.
func (d *DevAttester) Socket() string { return d.socket }

// ImageDigest returns the image digest put into tokens.
func (d *DevAttester) ImageDigest() string { return d.digest }

// KeyID returns the kid of the current signing key.
func (d *DevAttester) KeyID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.kid
}

// JWKSRequests returns how many times the JWKS was served.
func (d *DevAttester) JWKSRequests() int64 { return d.jwksRequests.Load() }

// Provider returns a TokenProvider talking to this attester's socket.
func (d *DevAttester) Provider() *LauncherClient { return NewDev(d.socket) }

// SetMutate replaces the claim mutate hooks (none: plain tokens).
func (d *DevAttester) SetMutate(fns ...func(claims map[string]any)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mutate = append(([]func(map[string]any))(nil), fns...)
}

// Mint signs a token as the socket would, applying the mutate hooks.
func (d *DevAttester) Mint(audience string, nonces []string) (string, error) {
	if err := ValidateTokenRequest(audience, nonces); err != nil {
		return "", err
	}
	claims := devClaims(d.issuer, audience, nonces, d.now(), d.lifetime, d.digest, d.reference)
	d.mu.Lock()
	signer, mutate := d.signer, d.mutate
	d.mu.Unlock()
	for _, m := range mutate {
		m(claims)
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// Close stops both servers and removes the socket.
func (d *DevAttester) Close() error {
	d.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err1 := d.httpSrv.Shutdown(ctx)
		err2 := d.sockSrv.Shutdown(ctx)
		err3 := os.Remove(d.socket)
		if errors.Is(err3, os.ErrNotExist) {
			err3 = nil
		}
		d.closeErr = errors.Join(err1, err2, err3)
		d.log.Info("dev attester stopped", "issuer", d.issuer, "socket", d.socket)
	})
	return d.closeErr
}

func (d *DevAttester) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{
		"issuer":                                d.issuer,
		"jwks_uri":                              d.JWKSURL(),
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"scopes_supported":                      []string{"openid"},
		"claims_supported": []string{"sub", "aud", "exp", "iat", "iss", "nbf", "eat_nonce",
			"dbgstat", "google_service_accounts", "hwmodel", "secboot", "submods", "swname", "swversion"},
	})
}

func (d *DevAttester) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	d.jwksRequests.Add(1)
	d.mu.Lock()
	set := jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), d.pubs...)}
	d.mu.Unlock()
	writeJSON(w, set)
}

// maxTokenRequest bounds the body of POST /v1/token.
const maxTokenRequest = 16 << 10

func (d *DevAttester) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	body := http.MaxBytesReader(w, r.Body, maxTokenRequest)
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(body); err != nil {
		http.Error(w, fmt.Sprintf("request body larger than %d bytes", maxTokenRequest), http.StatusRequestEntityTooLarge)
		return
	}
	req, err := parseTokenRequest(buf.Bytes())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tok, err := d.Mint(req.Audience, req.Nonces)
	if err != nil {
		d.log.Error("dev attester: signing failed", "err", err)
		http.Error(w, "signing failed", http.StatusInternalServerError)
		return
	}
	d.log.Debug("dev attester: issued token", "aud", req.Audience, "nonces", len(req.Nonces), "sub", DevSubject, "image_digest", d.digest)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(tok))
}

// parseTokenRequest decodes and checks a launcher token request: one JSON
// object, known fields only, token_type "OIDC", the launcher's limits.
func parseTokenRequest(body []byte) (TokenRequest, error) {
	var req TokenRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return TokenRequest{}, wrapf(ErrRequest, "body is not a token request: %s", jsonErrorKind(err))
	}
	if dec.More() {
		return TokenRequest{}, wrapf(ErrRequest, "trailing data after the request object")
	}
	if req.TokenType != "OIDC" {
		return TokenRequest{}, wrapf(ErrRequest, "token_type %s not supported (the dev attester issues \"OIDC\" tokens)", clip(req.TokenType))
	}
	if err := ValidateTokenRequest(req.Audience, req.Nonces); err != nil {
		return TokenRequest{}, err
	}
	return req, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=60")
	json.NewEncoder(w).Encode(v)
}
