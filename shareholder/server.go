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
	"net/netip"
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
	opts     ServerOptions
	log      *slog.Logger
	now      func() time.Time
	store    ShareStore
	group    *psk.Group
	audit    *AuditLog
	junk     *rateLimiter // per remote IP, charged for requests that fail before their token verifies
	subjects *rateLimiter // per verified token subject
	budget   *auditBudget
	metrics  *serverMetrics
	cert     tls.Certificate
	pin      string

	state atomic.Pointer[serverState]
	// gate orders releases against state changes: a release holds it for
	// reading from its last look at the state until its share is written;
	// install takes it for writing after storing a new state, so when
	// install returns no release decided under an older state is still
	// under way (see release and install).
	gate sync.RWMutex

	reloadMu sync.Mutex
	stamp    fileStamp // what the watcher compares; "" after a failed load, so it retries
	lastErr  string    // the last load error logged (repeats go to debug)

	httpSrv    *http.Server
	ln         net.Listener
	guard      *connGuard
	metricsSrv *http.Server
	metricsLn  net.Listener
	ctlLn      net.Listener
	ctlPath    string
	stop       chan struct{}
	done       sync.WaitGroup
	closed     sync.Once

	// testHook, set by tests only, is called at points of a release
	// ("before_gate", "in_gate") to stage races deterministically.
	testHook atomic.Pointer[func(stage string)]
}

// Refusal checks of a config file that does not load.
const (
	checkConfigInvalid    = "config_invalid"    // read, but wrong
	checkConfigUnreadable = "config_unreadable" // could not be read: a local failure
)

// serverState is what a reload may swap.
type serverState struct {
	cfg      *Config // the last config that loaded
	policy   *Policy
	verifier *attest.Verifier // nil: verifier.issuer is empty, tokens are refused
	// evidence is the raw TEE evidence verifier of cfg, built on first use
	// and shared only by states of the same config (evidence.go).
	evidence *lazyEvidence
	// consent is the consent in force: the config's when it loads; the
	// consent line read alone when it does not ("" when even that fails).
	consent string
	// refusing is checkConfigInvalid or checkConfigUnreadable while the
	// config file does not load: every release is refused, whatever the
	// consent line says, until it loads again. why is the load error.
	refusing string
	why      string
	gen      uint64 // counts installed states
	fileSum  string // SHA-256 of the config text last read ("" when unreadable)
}

// releasing reports whether a release may happen under st.
func (st *serverState) releasing() bool {
	return st.refusing == "" && st.consent == ConsentGranted
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
	st.consent, st.fileSum, st.gen = cfg.Consent, cfg.fileSum, 1
	s.state.Store(st)
	s.metrics.setState(st)
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
	if s.audit, err = OpenAuditLogWith(cfg.AuditLog, AuditOptions{Logger: s.log, RotateBytes: cfg.AuditRotateBytes}); err != nil {
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
	s.junk = newRateLimiter(rl.PerSecond, rl.Burst, rl.MaxClients)
	s.subjects = newRateLimiter(rl.PerSecond, rl.Burst, rl.MaxClients)
	s.budget = newAuditBudget(cfg.AuditRefusalsPerSecond, s.now)
	if opts.ConfigPath != "" {
		s.stamp = stampConfig(cfg)
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
	var v *attest.Verifier
	if cfg.Verifier.Issuer != "" { // else raw TEE evidence only (config.go)
		v, err = attest.NewVerifier(attest.VerifierConfig{
			Issuer: cfg.Verifier.Issuer, Audience: cfg.Verifier.Audience, ClockSkew: cfg.Verifier.ClockSkew,
			MaxTokenAge: cfg.Verifier.MaxTokenAge,
			HTTPClient:  s.opts.VerifierHTTPClient, Now: s.now, Logger: s.log,
		})
		if err != nil {
			return nil, fieldErr("verifier", "%v", err)
		}
	}
	return &serverState{cfg: cfg, policy: pol, verifier: v, evidence: &lazyEvidence{}}, nil
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

// MetricsAddr returns the metrics listener's address (nil when disabled).
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// ControlSocket returns the control socket's path ("" when there is none).
func (s *Server) ControlSocket() string { return s.ctlPath }

// Handler returns the release port's HTTP handler: POST /v1/release and
// GET /healthz. Metrics are not here (see MetricsHandler).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(ReleasePath, s.handleRelease)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	return mux
}

// MetricsHandler returns the metrics listener's handler: GET /metrics.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

// Timeouts of the release listener. Every request is one-shot (a token is
// bound to its connection), so there is no keep-alive: each connection
// carries one request and is closed after the answer.
const (
	// releaseHeaderTimeout bounds the wait for a request's headers after the
	// handshake (the proxy fetches its token in between).
	releaseHeaderTimeout = 5 * time.Second
	// releaseReadTimeout bounds handshake, headers and body together.
	releaseReadTimeout = 15 * time.Second
	// releaseWriteTimeout bounds the whole answer (key fetch + store read + reply).
	releaseWriteTimeout = 40 * time.Second
	// shareWriteTimeout bounds writing the share itself: a release holds the
	// gate meanwhile, so a stalled reader cannot delay a revoke's confirmation
	// by more than this.
	shareWriteTimeout = 5 * time.Second
	// metricsMaxConns caps the metrics listener's connections.
	metricsMaxConns = 16
)

// Start listens on the configured addresses (the release port with TLS 1.3,
// the metrics port in plain HTTP), opens the control socket and serves in
// the background; it also starts the config watcher when a path was given.
func (s *Server) Start() error {
	cfg := s.state.Load().cfg
	s.warnEveryInterface("release", "listen_all_interfaces", cfg.Listen, cfg.ListenAllInterfaces)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fieldErr("listen", "%v", err)
	}
	var mln net.Listener
	if addr := cfg.MetricsListen(); addr != "" {
		s.warnEveryInterface("metrics", "metrics.listen_all_interfaces", addr, cfg.Metrics.ListenAllInterfaces)
		if mln, err = net.Listen("tcp", addr); err != nil {
			ln.Close()
			return fieldErr("metrics.listen", "%v (\"\" disables metrics)", err)
		}
	}
	if s.opts.ConfigPath != "" {
		if err := s.startControl(cfg); err != nil {
			ln.Close()
			if mln != nil {
				mln.Close()
			}
			return err
		}
	}
	s.ln = ln
	s.guard = newConnGuard(ln, "release", cfg.MaxConnections, s.log, s.metrics)
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cert},
		NextProtos:   []string{"http/1.1"},
	}
	s.httpSrv = &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: releaseHeaderTimeout,
		ReadTimeout:       releaseReadTimeout,
		WriteTimeout:      releaseWriteTimeout,
		MaxHeaderBytes:    16 << 10,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 only
		ConnState:         s.guard.connState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.httpSrv.SetKeepAlivesEnabled(false)
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		if err := s.httpSrv.Serve(tls.NewListener(s.guard, tlsCfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	if mln != nil {
		s.metricsLn = mln
		mg := newConnGuard(mln, "metrics", metricsMaxConns, s.log, s.metrics)
		s.metricsSrv = &http.Server{
			Handler: s.MetricsHandler(), ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second,
			WriteTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10, ConnState: mg.connState,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		s.metricsSrv.SetKeepAlivesEnabled(false)
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			if err := s.metricsSrv.Serve(mg); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("serve metrics", "err", err)
			}
		}()
	}
	if s.opts.ConfigPath != "" && cfg.ReloadInterval > 0 {
		s.done.Add(1)
		go s.watch(cfg.ReloadInterval)
	}
	s.done.Add(1)
	go s.summarize()
	metricsAddr := "disabled"
	if mln != nil {
		metricsAddr = mln.Addr().String()
	}
	s.log.Info("shareholder serving", "name", cfg.Name, "addr", ln.Addr().String(), "pin", s.pin,
		"metrics", metricsAddr, "control_socket", s.ctlPath, "max_connections", cfg.MaxConnections,
		"share_store", s.store.String(), "group", s.group.ID, "consent", cfg.Consent, "audit_head", s.audit.Head())
	return nil
}

// warnEveryInterface warns when addr binds every interface (an empty or
// unspecified host) and the config does not say so on purpose: an empty
// host in particular reads like "the default" but exposes the port on
// every network the machine is on.
func (s *Server) warnEveryInterface(listener, field, addr string, intended bool) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !everyInterface(host) {
		return
	}
	if intended {
		s.log.Info("listener binds every interface, as configured", "listener", listener, "addr", addr)
		return
	}
	s.log.Warn("listener binds every interface (empty or unspecified host); give a host such as 127.0.0.1, or set "+field+": true if that is intended",
		"listener", listener, "addr", addr)
}

// everyInterface reports whether a listen host means every interface.
func everyInterface(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// Close stops serving and closes the store and the audit log.
func (s *Server) Close() error {
	s.closed.Do(func() {
		close(s.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if s.httpSrv != nil {
			s.httpSrv.Shutdown(ctx)
		}
		if s.metricsSrv != nil {
			s.metricsSrv.Shutdown(ctx)
		}
		cancel()
		if s.ctlLn != nil {
			s.ctlLn.Close()
		}
		s.done.Wait()
		s.flushSummary()
		s.store.Close()
		s.audit.Close()
	})
	return nil
}

// Consent returns the consent in force: granted or revoked, as the config
// file says (its consent line alone when the rest does not load), or
// "unknown" when the file cannot be read. Releases need more than granted
// consent: see Status.
func (s *Server) Consent() string {
	if c := s.state.Load().consent; c != "" {
		return c
	}
	return "unknown"
}

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
