package shareholder

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/api/option"
)

// storeTimeout bounds one share store read (Secret Manager is remote).
const storeTimeout = 15 * time.Second

// ServerOptions are the knobs tests and the CLI set beyond the config.
type ServerOptions struct {
	// ConfigPath is re-read by Reload and watched for changes; "" disables both.
	ConfigPath string
	Logger     *slog.Logger
	// StoreOptions go to the Secret Manager client.
	StoreOptions []option.ClientOption
	// VerifierHTTPClient fetches OIDC discovery and JWKS (nil: attest's default).
	VerifierHTTPClient *http.Client
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Server is the share-release daemon.
type Server struct {
	opts    ServerOptions
	log     *slog.Logger
	now     func() time.Time
	store   ShareStore
	group   *psk.Group
	audit   *AuditLog
	limiter *rateLimiter
	metrics *serverMetrics
	cert    tls.Certificate
	pin     string

	state atomic.Pointer[serverState]

	reloadMu sync.Mutex
	stamp    fileStamp

	httpSrv *http.Server
	ln      net.Listener
	stop    chan struct{}
	done    sync.WaitGroup
	closed  sync.Once
}

// serverState is what a reload may swap.
type serverState struct {
	cfg      *Config
	policy   *Policy
	verifier *attest.Verifier
}

// NewServer prepares a daemon from a validated config: it opens the share
// store and checks the share against the group descriptor, opens (and
// verifies) the audit log, and loads or generates the TLS certificate. It
// does not listen yet (see Start).
func NewServer(ctx context.Context, cfg *Config, opts ServerOptions) (*Server, error) {
	s := &Server{opts: opts, log: opts.Logger, now: opts.Now, metrics: newServerMetrics(), stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	st, err := s.buildState(cfg)
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	s.metrics.setConsent(cfg.Consent)
	if s.group, err = psk.LoadGroup(cfg.Group); err != nil {
		return nil, fieldErr("group", "%v", err)
	}
	if s.group.Scheme != psk.SchemeShamir {
		return nil, fieldErr("group", "group %q uses %s; the share-release daemon serves %s shares", s.group.Name, s.group.Scheme, psk.SchemeShamir)
	}
	if s.store, err = OpenStore(ctx, cfg.ShareStore, cfg.dir, opts.StoreOptions...); err != nil {
		return nil, fieldErr("share_store", "%v", err)
	}
	if err := s.checkShare(ctx, cfg); err != nil {
		s.store.Close()
		return nil, err
	}
	if s.audit, err = OpenAuditLog(cfg.AuditLog); err != nil {
		s.store.Close()
		return nil, fieldErr("audit_log", "%v", err)
	}
	if s.cert, err = serverCertificate(cfg); err != nil {
		s.audit.Close()
		s.store.Close()
		return nil, err
	}
	s.pin = SPKIPin(s.cert.Leaf)
	rl := cfg.RateLimit
	s.limiter = newRateLimiter(rl.PerSecond, rl.Burst, rl.MaxClients)
	if opts.ConfigPath != "" {
		s.stamp = stampFiles(opts.ConfigPath, cfg.PolicyFile)
	}
	return s, nil
}

// checkShare loads the share once at start so a wrong store, a share of
// another group or a corrupted share is a startup error.
func (s *Server) checkShare(ctx context.Context, cfg *Config) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	sh, err := s.store.LoadShare(ctx)
	if err != nil {
		return fieldErr("share_store", "%v", err)
	}
	defer sh.Wipe()
	if err := psk.VerifyShare(s.group, sh); err != nil {
		return fieldErr("share_store", "%v", err)
	}
	if cfg.Name != "" && sh.Participant != cfg.Name {
		s.log.Warn("the share belongs to another participant than name", "name", cfg.Name, "participant", sh.Participant)
	}
	return nil
}

func (s *Server) buildState(cfg *Config) (*serverState, error) {
	pol, err := CompilePolicy(cfg.policyText, cfg.PolicyCostLimit)
	if err != nil {
		return nil, fieldErr("policy", "%v", err)
	}
	v, err := attest.NewVerifier(attest.VerifierConfig{
		Issuer: cfg.Verifier.Issuer, Audience: cfg.Verifier.Audience, ClockSkew: cfg.Verifier.ClockSkew,
		HTTPClient: s.opts.VerifierHTTPClient, Now: s.now, Logger: s.log,
	})
	if err != nil {
		return nil, fieldErr("verifier", "%v", err)
	}
	return &serverState{cfg: cfg, policy: pol, verifier: v}, nil
}

// Pin returns the SPKI pin of the serving certificate ("sha256:<hex>").
func (s *Server) Pin() string { return s.pin }

// Certificate returns the serving certificate's leaf.
func (s *Server) Certificate() *tls.Certificate { return &s.cert }

// Addr returns the listening address once started.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Handler returns the HTTP handler (release, health, metrics).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(ReleasePath, s.handleRelease)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

// Start listens on the configured address with TLS 1.3 and serves in the
// background; it also starts the config watcher when a path was given.
func (s *Server) Start() error {
	cfg := s.state.Load().cfg
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fieldErr("listen", "%v", err)
	}
	s.ln = ln
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cert},
		NextProtos:   []string{"http/1.1"},
	}
	s.httpSrv = &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      40 * time.Second, // key fetch + store read + reply
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 only
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		if err := s.httpSrv.Serve(tls.NewListener(ln, tlsCfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	if s.opts.ConfigPath != "" && cfg.ReloadInterval > 0 {
		s.done.Add(1)
		go s.watch(cfg.ReloadInterval)
	}
	s.log.Info("shareholder serving", "name", cfg.Name, "addr", ln.Addr().String(), "pin", s.pin,
		"share_store", s.store.String(), "group", s.group.ID, "consent", cfg.Consent, "audit_head", s.audit.Head())
	return nil
}

// Close stops serving and closes the store and the audit log.
func (s *Server) Close() error {
	s.closed.Do(func() {
		close(s.stop)
		if s.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.httpSrv.Shutdown(ctx)
			cancel()
		}
		s.done.Wait()
		s.store.Close()
		s.audit.Close()
	})
	return nil
}

// Consent returns the consent value in force.
func (s *Server) Consent() string { return s.state.Load().cfg.Consent }

// policyDigest names a policy text in logs without printing it.
func policyDigest(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:6])
}

// writeJSON writes v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
