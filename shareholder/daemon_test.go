package shareholder

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startCustom starts name's daemon on its fixture config as edited by edit.
func (f *fixture) startCustom(name string, edit func(string) string) *Server {
	f.t.Helper()
	s, err := f.tryStart(name, edit)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) tryStart(name string, edit func(string) string) (*Server, error) {
	path := f.configPath(name)
	if err := os.WriteFile(path, []byte(edit(f.configYAML(name, f.devPolicy, ConsentGranted))), 0o600); err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	s, err := NewServer(context.Background(), cfg, ServerOptions{ConfigPath: path, Logger: f.logger()})
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		s.Close()
		return nil, err
	}
	f.t.Cleanup(func() { s.Close() })
	return s, nil
}

// replacing returns an edit replacing old by new, failing when old is absent.
func replacing(t *testing.T, pairs ...string) func(string) string {
	return func(text string) string {
		for i := 0; i+1 < len(pairs); i += 2 {
			if !strings.Contains(text, pairs[i]) {
				t.Fatalf("config lacks %q", pairs[i])
			}
			text = strings.Replace(text, pairs[i], pairs[i+1], 1)
		}
		return text
	}
}

// tryRelease is a release by an attested proxy over a fresh connection,
// usable from any goroutine.
func (f *fixture) tryRelease(s *Server, name string) (int, string, error) {
	return f.tryReleaseWithin(s, name, 20*time.Second)
}

// tryReleaseWithin is tryRelease with the whole exchange bounded by limit.
func (f *fixture) tryReleaseWithin(s *Server, name string, limit time.Duration) (int, string, error) {
	pin, _ := ParsePin(s.Pin())
	d := &net.Dialer{Deadline: time.Now().Add(limit)}
	c, err := tls.DialWithDialer(d, "tcp", s.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		VerifyConnection: pinVerifier(pin), NextProtos: []string{"http/1.1"}})
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(d.Deadline)
	cs := c.ConnectionState()
	nonce, err := ChannelNonce(&cs)
	if err != nil {
		return 0, "", err
	}
	tok, err := f.att.Mint("mcbn-test-"+name, []string{nonce})
	if err != nil {
		return 0, "", err
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+s.Addr().String()+ReleasePath, bytes.NewReader(requestBody(tok)))
	if err := req.Write(c); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var ref Refusal
	if resp.StatusCode != http.StatusOK {
		json.Unmarshal(data, &ref)
	}
	return resp.StatusCode, ref.Reason, nil
}

// within fails the test unless ch delivers within a generous bound.
func within[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

type releaseResult struct {
	code   int
	reason string
	err    error
}

// A release checked under granted consent that has not sent its share yet
// when consent is revoked: once Reload (what the revoke command waits for)
// has returned, it is refused; one already writing its share finishes
// before Reload returns.
func TestReleaseRacingRevoke(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	stage := func(at string) (reached chan struct{}, proceed chan struct{}) {
		reached, proceed = make(chan struct{}), make(chan struct{})
		var once sync.Once
		h := func(st string) {
			if st == at {
				once.Do(func() { close(reached); <-proceed })
			}
		}
		s.testHook.Store(&h)
		return reached, proceed
	}
	release := func() <-chan releaseResult {
		ch := make(chan releaseResult, 1)
		go func() {
			code, reason, err := f.tryRelease(s, "alice")
			ch <- releaseResult{code, reason, err}
		}()
		return ch
	}
	reload := func(consent string) <-chan error {
		if err := writeConfig(f, "alice", f.devPolicy, consent); err != nil {
			t.Fatal(err)
		}
		ch := make(chan error, 1)
		go func() { ch <- s.Reload() }()
		return ch
	}

	// Checked, share loaded, not yet at the gate: the revoke completes,
	// then the release is refused.
	reached, proceed := stage("before_gate")
	res := release()
	within(t, "the release to reach the gate", reached)
	if err := within(t, "the reload", reload(ConsentRevoked)); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if r := within(t, "the release", res); r.err != nil || r.code != http.StatusForbidden || r.reason != ReasonConsentRevoked {
		t.Fatalf("a release checked before the revoke, sent after it: %+v", r)
	}

	// Already past its last look at the state: the revoke waits for it.
	within(t, "the grant", reload(ConsentGranted))
	reached, proceed = stage("in_gate")
	res = release()
	within(t, "the release to hold the gate", reached)
	done := reload(ConsentRevoked)
	time.Sleep(200 * time.Millisecond) // give a wrong Reload the time to return early
	select {
	case <-done:
		t.Fatal("Reload returned while a release decided under the old consent was still under way")
	default:
	}
	close(proceed)
	if r := within(t, "the release", res); r.err != nil || r.code != http.StatusOK {
		t.Fatalf("the release committed before the revoke: %+v", r)
	}
	within(t, "the reload", done)
	s.testHook.Store(nil)
	if code, reason, err := f.tryRelease(s, "alice"); err != nil || reason != ReasonConsentRevoked {
		t.Fatalf("after the revoke: %d %s %v", code, reason, err)
	}
}

// withPolicyFile turns the fixture's inline policy into policy_file: file.
func (f *fixture) withPolicyFile(text, file string) string {
	i := strings.Index(text, "policy: |\n")
	j := strings.Index(text, "consent:")
	return text[:i] + "policy_file: " + file + "\n" + text[j:]
}

// A reload that fails is retried although no watched file changes: here
// the config names a policy file that appears only afterwards. Meanwhile
// every release is refused.
func TestReloadRetriesFailure(t *testing.T) {
	f := newFixture(t)
	os.WriteFile(filepath.Join(f.dir, "p1.cel"), []byte(f.devPolicy), 0o644)
	s := f.startCustom("alice", func(text string) string { return f.withPolicyFile(text, "p1.cel") })
	if !s.Status().Releasing {
		t.Fatalf("status at start: %+v", s.Status())
	}
	text := f.withPolicyFile(f.configYAML("alice", "x", ConsentGranted), "p2.cel")
	if err := replaceFile(f.configPath("alice"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload", func() bool { return !s.Status().Releasing })
	if st := s.Status(); st.State != checkConfigUnreadable || !strings.Contains(st.ConfigError, "p2.cel") {
		t.Fatalf("status %+v", st)
	}
	if code, reason, err := f.tryRelease(s, "alice"); err != nil || code != http.StatusServiceUnavailable || reason != ReasonUnavailable {
		t.Fatalf("release while the policy file is missing: %d %s %v", code, reason, err)
	}
	os.WriteFile(filepath.Join(f.dir, "p2.cel"), []byte(f.devPolicy), 0o644)
	waitFor(t, "the retried reload", func() bool { return s.Status().Releasing })
	if code, reason, err := f.tryRelease(s, "alice"); err != nil || code != http.StatusOK {
		t.Fatalf("release after the retry: %d %s %v", code, reason, err)
	}
	if !strings.Contains(f.logs.String(), "the config does not load") && !strings.Contains(f.logs.String(), "the config cannot be read") {
		t.Fatal("no log line about the failed reload")
	}
}

// The release port serves no metrics; the metrics listener does, on
// loopback by default.
func TestMetricsOnlyOnMetricsListener(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	pin, _ := ParsePin(s.Pin())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, VerifyConnection: pinVerifier(pin)}}}
	resp, err := c.Get("https://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || strings.Contains(string(body), "mcbn_shareholder") {
		t.Fatalf("GET /metrics on the release port: HTTP %d\n%s", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("the release port keeps connections alive")
	}
	if m := metricsGet(t, s); !strings.Contains(m, "mcbn_shareholder_consent_granted 1") {
		t.Fatalf("metrics listener:\n%s", m)
	}
	cfg, err := ParseConfig([]byte(minimalConfig), "/etc/mcbn")
	if err != nil || cfg.MetricsListen() != DefaultMetricsListen || !strings.HasPrefix(DefaultMetricsListen, "127.0.0.1:") {
		t.Fatalf("default metrics listener %q %v", cfg.MetricsListen(), err)
	}
	cfg, err = ParseConfig([]byte(minimalConfig+"metrics:\n  listen: \"\"\n"), "/etc/mcbn")
	if err != nil || cfg.MetricsListen() != "" {
		t.Fatalf("disabled metrics listener %q %v", cfg.MetricsListen(), err)
	}
}

// Junk sent from the proxy's own address (another host behind the same
// NAT) uses up that address's budget of failing requests, yet an attested
// request from it is released; verified requests have their own budget per
// token subject.
func TestJunkDoesNotStarveAttestedRelease(t *testing.T) {
	f := newFixture(t)
	s := f.startCustom("alice", replacing(t, "per_second: 1000\n  burst: 1000\n", "per_second: 0.001\n  burst: 3\n"))
	var reasons []string
	for range 5 {
		c := dialServer(t, s)
		_, ref, _ := c.post(t, []byte(`{}`))
		reasons = append(reasons, ref.Reason)
	}
	if strings.Join(reasons, ",") != "bad_request,bad_request,bad_request,rate_limited,rate_limited" {
		t.Fatalf("junk: %v", reasons)
	}
	for i := range 3 {
		if code, reason, err := f.tryRelease(s, "alice"); err != nil || code != http.StatusOK {
			t.Fatalf("attested release %d from the junk's address: %d %s %v", i, code, reason, err)
		}
	}
	if code, reason, err := f.tryRelease(s, "alice"); err != nil || reason != ReasonRateLimited {
		t.Fatalf("fourth release within the subject's burst of 3: %d %s %v", code, reason, err)
	}
	if rec := lastAudit(t, f.auditPath("alice")); rec.Reason != ReasonRateLimited || !strings.HasPrefix(rec.Detail, "rate_subject:") {
		t.Fatalf("audit record of the subject's rate limit: %+v", rec)
	}
}

// auditCounts reads an audit log: refusals with a line of their own, and
// the refusals counted in summary lines.
func auditCounts(t *testing.T, path string) (lines, summarized int, reasons map[string]int) {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := VerifyAudit(file); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	reasons = map[string]int{}
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		rec, _, err := ParseAuditLine(l)
		if err != nil {
			t.Fatal(err)
		}
		switch rec.Decision {
		case DecisionRefuse:
			lines++
			reasons[rec.Reason]++
		case DecisionRefusalSummary:
			for _, n := range rec.Counts {
				summarized += int(n)
			}
		}
	}
	return lines, summarized, reasons
}

// Junk over the global audit budget is counted in summary lines, not
// written line by line; every refusal is accounted for; an attested
// caller's refusal always gets its own line.
func TestAuditBudgetSummarizes(t *testing.T) {
	f := newFixture(t)
	s := f.startCustom("alice", replacing(t, "audit_refusals_per_second: 10000", "audit_refusals_per_second: 5"))
	const junk = 100
	for range junk {
		c := dialServer(t, s)
		if _, ref, _ := c.post(t, []byte(`{"version":1,"token":"a.b.c"}`)); ref.Reason != ReasonTokenInvalid {
			t.Fatalf("junk: %s", ref.Reason)
		}
	}
	if err := writeConfig(f, "alice", f.devPolicy, ConsentRevoked); err != nil {
		t.Fatal(err)
	}
	s.Reload()
	for range 10 {
		c := dialServer(t, s)
		c.post(t, []byte(`{"version":1,"token":"a.b.c"}`))
	}
	if code, reason, err := f.tryRelease(s, "alice"); err != nil || reason != ReasonConsentRevoked {
		t.Fatalf("attested request: %d %s %v", code, reason, err)
	}
	s.Close() // writes the last summary
	lines, summarized, reasons := auditCounts(t, f.auditPath("alice"))
	if lines+summarized != junk+10+1 {
		t.Fatalf("%d refusal lines + %d summarized, want %d refusals in all", lines, summarized, junk+11)
	}
	if summarized == 0 || lines >= junk {
		t.Fatalf("%d refusal lines, %d summarized: the budget of 5 a second did not hold", lines, summarized)
	}
	if reasons[ReasonConsentRevoked] != 1 {
		t.Fatalf("the attested caller's refusal has %d lines of its own, want 1", reasons[ReasonConsentRevoked])
	}
	if !strings.Contains(f.logs.String(), "refusals not logged individually in the last") {
		t.Fatal("the daemon's log lacks the summary")
	}
}

// Binding every interface warns unless the config says it is intended.
func TestEveryInterfaceWarning(t *testing.T) {
	f := newFixture(t)
	f.startCustom("alice", replacing(t, "listen: 127.0.0.1:0\n", "listen: :0\n"))
	logs := f.logs.String()
	if !strings.Contains(logs, "listener binds every interface") || !strings.Contains(logs, "listener=release addr=:0") {
		t.Fatalf("no warning for listen :0:\n%s", logs)
	}
	if strings.Contains(logs, "listener=metrics") {
		t.Fatal("a warning for the loopback metrics listener")
	}

	g := newFixture(t)
	g.startCustom("bob", replacing(t, "listen: 127.0.0.1:0\n", "listen: 0.0.0.0:0\nlisten_all_interfaces: true\n",
		"metrics:\n  listen: 127.0.0.1:0\n", "metrics:\n  listen: 0.0.0.0:0\n"))
	logs = g.logs.String()
	if !strings.Contains(logs, `level=INFO msg="listener binds every interface, as configured" listener=release`) {
		t.Fatalf("intended: no info line:\n%s", logs)
	}
	if !strings.Contains(logs, `level=WARN msg="listener binds every interface (empty or unspecified host); give a host such as 127.0.0.1, or set metrics.listen_all_interfaces: true if that is intended" listener=metrics`) {
		t.Fatalf("metrics on 0.0.0.0: no warning:\n%s", logs)
	}
}

// Local failures are reported as such, never as a consent decision.
func TestLocalFailureWording(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	share := filepath.Join(f.dir, "alice.share.json")
	saved, _ := os.ReadFile(share)
	os.Remove(share)
	if code, reason, err := f.tryRelease(s, "alice"); err != nil || code != http.StatusServiceUnavailable || reason != ReasonUnavailable {
		t.Fatalf("store unreachable: %d %s %v", code, reason, err)
	}
	rec := lastAudit(t, f.auditPath("alice"))
	if !strings.HasPrefix(rec.Detail, "store: the share store is unreachable (a local failure; consent is unchanged)") {
		t.Fatalf("audit detail %q", rec.Detail)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `msg="share not released: local failure"`) || strings.Contains(logs, "revoked") {
		t.Fatalf("daemon log:\n%s", logs)
	}
	os.WriteFile(share, saved, 0o600)

	// The config cannot be read: refused as a local failure, not as invalid
	// or revoked.
	path := f.configPath("alice")
	os.Rename(path, path+".away")
	if err := s.Reload(); err == nil {
		t.Fatal("reload of a missing config succeeded")
	}
	if code, reason, err := f.tryRelease(s, "alice"); err != nil || code != http.StatusServiceUnavailable || reason != ReasonUnavailable {
		t.Fatalf("config unreadable: %d %s %v", code, reason, err)
	}
	if st := s.Status(); st.State != checkConfigUnreadable || st.Consent != "unknown" || st.Releasing {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(f.logs.String(), "the config cannot be read (a local failure)") {
		t.Fatal("no local-failure log line for the unreadable config")
	}
	os.Rename(path+".away", path)
	waitFor(t, "the config to read again", func() bool { return s.Status().Releasing })
}

// fakeListener returns queued accept results.
type fakeListener struct {
	mu      sync.Mutex
	results []func() (net.Conn, error)
	closed  chan struct{}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.results) > 0 {
		r := l.results[0]
		l.results = l.results[1:]
		l.mu.Unlock()
		return r()
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}
func (l *fakeListener) Close() error   { close(l.closed); return nil }
func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

// closeNotingConn records that it was closed.
type closeNotingConn struct {
	net.Conn
	closed chan struct{}
}

func (c *closeNotingConn) Close() error { close(c.closed); return nil }

// Out of descriptors, the guard says so (a local failure) and closes the
// oldest idle connection to free one; at the cap it evicts the oldest idle
// connection, and refuses a new one when every held one is busy.
func TestConnGuard(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	conn := func() *closeNotingConn { return &closeNotingConn{closed: make(chan struct{})} }
	a, b, c, d := conn(), conn(), conn(), conn()
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	ln := &fakeListener{closed: make(chan struct{}), results: []func() (net.Conn, error){
		func() (net.Conn, error) { return a, nil },
		func() (net.Conn, error) { return b, nil },
		func() (net.Conn, error) { return nil, emfile },
		func() (net.Conn, error) { return c, nil },
		func() (net.Conn, error) { return d, nil },
	}}
	g := newConnGuard(ln, "release", 2, log, newServerMetrics())
	ga, _ := g.Accept()
	gb, _ := g.Accept()
	g.requested(gb) // b carries a request: not evictable
	gc, err := g.Accept()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.closed:
	default:
		t.Fatal("out of descriptors, the oldest idle connection was not closed")
	}
	if !strings.Contains(logs.String(), "out of file descriptors (a local failure, not a refusal; consent is unchanged)") {
		t.Fatalf("log: %s", logs.String())
	}
	_ = ga
	if g.held() != 2 {
		t.Fatalf("%d held, want 2 (b and c)", g.held())
	}
	g.requested(gc)
	// d arrives with b and c busy: refused at once.
	done := make(chan struct{})
	go func() {
		g.Accept()
		close(done)
	}()
	within(t, "d to be refused", d.closed)
	ln.Close()
	within(t, "Accept to return", done)
}

// The control socket answers status, refuses an unknown request, is private
// to the daemon's user, and a second daemon on the same config is refused.
func TestControlSocket(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	path := s.ControlSocket()
	if path != ControlSocketPath(f.configPath("alice"), "") {
		t.Fatalf("control socket %q", path)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode: %v %v", fi.Mode(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := RequestStatus(ctx, path)
	if err != nil || !st.Releasing || st.State != StateReleasing || st.Generation != 1 {
		t.Fatalf("status %+v %v", st, err)
	}
	st, err = RequestReload(ctx, path)
	if err != nil || st.Generation != 2 {
		t.Fatalf("reload %+v %v", st, err)
	}
	if _, err := controlRequest(ctx, path, "release please"); err == nil || !strings.Contains(err.Error(), "did not understand") {
		t.Fatalf("unknown request: %v", err)
	}
	if _, err := f.tryStart("alice", func(s string) string { return s }); err == nil || !strings.Contains(err.Error(), "control_socket") {
		t.Fatalf("a second daemon on the same config: %v", err)
	}
	if _, err := RequestStatus(ctx, path); err != nil {
		t.Fatalf("the first daemon's socket after the second was refused: %v", err)
	}
	s.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket left after Close: %v", err)
	}
}

func TestParseConsentLine(t *testing.T) {
	for text, want := range map[string]string{
		"consent: granted\n":                   "granted",
		"a: 1\nconsent: \"revoked\"  # why\n":  "revoked",
		"consent: 'granted'\r\n":               "granted",
		"consent:\tgranted#x\n":                "",
		"consent: maybe\n":                     "",
		"  consent: granted\n":                 "",
		"# consent: granted\n":                 "",
		"consent: granted\nconsent: granted\n": "",
	} {
		got, err := ParseConsentLine([]byte(text))
		if got != want || (want == "") != (err != nil) {
			t.Errorf("%q: %q %v, want %q", text, got, err, want)
		}
	}
	// The consent line and the YAML must agree for a config to load.
	if _, err := ParseConfig([]byte(strings.Replace(minimalConfig, "consent: granted\n", "consent : granted\n", 1)), "/etc/mcbn"); err == nil || !strings.HasPrefix(err.Error(), "consent:") {
		t.Fatalf("a consent key the line parser does not see: %v", err)
	}
	if _, err := ParseConfig([]byte(strings.Replace(minimalConfig, "consent: granted\n", "{consent: granted}\n", 1)), "/etc/mcbn"); err == nil {
		t.Fatal("a flow-style consent loaded")
	}
}

// revoke edits a broken file's consent line (or adds one) and nothing else.
func TestSetConsentRevokeBrokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice.yaml")
	broken := strings.Replace(minimalConfig, "audit_log:", "audit_lgo:", 1)
	os.WriteFile(path, []byte(broken), 0o600)
	if changed, err := SetConsent(path, ConsentRevoked); err != nil || !changed {
		t.Fatalf("revoke on a broken file: %v %v", changed, err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != strings.Replace(broken, "consent: granted", "consent: revoked", 1) {
		t.Fatalf("edited:\n%s", got)
	}
	if _, err := SetConsent(path, ConsentGranted); err == nil {
		t.Fatal("granted on a broken file")
	}
	os.WriteFile(path, []byte("name: alice"), 0o600)
	SetConsent(path, ConsentRevoked)
	if got, _ := os.ReadFile(path); string(got) != "name: alice\nconsent: revoked\n" {
		t.Fatalf("no consent line: %q", got)
	}
}

// The daemon's new settings are checked and name their field; the audit
// log rotates at audit_rotate_bytes.
func TestDaemonSettings(t *testing.T) {
	for extra, want := range map[string]string{
		"max_connections: -1\n":             "max_connections:",
		"max_connections: 100000\n":         "max_connections:",
		"audit_refusals_per_second: -1\n":   "audit_refusals_per_second:",
		"audit_rotate_bytes: 100\n":         "audit_rotate_bytes:",
		"metrics:\n  listen: nowhere\n":     "metrics.listen:",
		"metrics:\n  listne: 127.0.0.1:1\n": "unknown key listne",
		"listen_all_interfaces: maybe\n":    "listen_all_interfaces",
		"control_socket: [a]\n":             "control_socket",
	} {
		if _, err := ParseConfig([]byte(minimalConfig+extra), "/etc/mcbn"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", extra, err, want)
		}
	}
	c, err := ParseConfig([]byte(minimalConfig+"control_socket: run/alice.ctl\n"), "/etc/mcbn")
	if err != nil || c.MaxConnections != DefaultMaxConnections || c.AuditRefusalsPerSecond != DefaultAuditRefusalsPerSecond || c.ControlSocket != "/etc/mcbn/run/alice.ctl" {
		t.Fatalf("defaults: %+v %v", c, err)
	}

	f := newFixture(t)
	s := f.startCustom("alice", replacing(t, "audit_log: alice.audit.jsonl\n", "audit_log: alice.audit.jsonl\naudit_rotate_bytes: 4096\n"))
	for range 30 {
		c := dialServer(t, s)
		c.post(t, []byte(`{}`))
	}
	if _, err := os.Stat(f.auditPath("alice") + ".1"); err != nil {
		t.Fatalf("the audit log did not rotate: %v", err)
	}
}
