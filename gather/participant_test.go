package gather

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// A second kind of participant, registered the way package kms registers
// itself: the round logic, the source, the dry run and the proxy's config
// reach it only through RegisterKind and the Participant interface.
func init() { RegisterKind("fake", buildFake) }

// fakeOptions are the fake kind's options: block.
type fakeOptions struct {
	// Share is the share file it "releases" (relative: Entry.Path).
	Share string `yaml:"share"`
	// Mode: ok, refuse, local, invalid, hang, both (a share and an
	// error), none (neither), other (another participant's share file in
	// Share).
	Mode   string `yaml:"mode"`
	Reason string `yaml:"reason"`
}

// fakeStats is what a test reads back about the fake participants it
// configured, keyed by the share path (unique per test directory).
type fakeStats struct {
	fetches atomic.Int32
	closed  atomic.Int32
	mu      sync.Mutex
	last    FetchRequest
	token   string
	given   []*psk.Share // shares handed out, to check they were wiped
}

var fakes sync.Map // share path -> *fakeStats

func statsFor(path string) *fakeStats {
	s, _ := fakes.LoadOrStore(path, &fakeStats{})
	return s.(*fakeStats)
}

type fakeParticipant struct {
	name string
	opts fakeOptions
	st   *fakeStats
}

func buildFake(e Entry) (Participant, error) {
	var o fakeOptions
	if err := e.Decode(&o); err != nil {
		return nil, err
	}
	if o.Share == "" {
		return nil, e.Errorf("share", "missing")
	}
	o.Share = e.Path(o.Share)
	switch o.Mode {
	case "", "ok", "refuse", "local", "invalid", "hang", "both", "none", "other":
	default:
		return nil, e.Errorf("mode", "%q is not a mode", o.Mode)
	}
	return &fakeParticipant{name: e.Name, opts: o, st: statsFor(o.Share)}, nil
}

func (p *fakeParticipant) Name() string { return p.name }
func (p *fakeParticipant) Kind() string { return "fake" }
func (p *fakeParticipant) Close() error { p.st.closed.Add(1); return nil }

func (p *fakeParticipant) Fetch(ctx context.Context, req FetchRequest) (*psk.Share, error) {
	p.st.fetches.Add(1)
	tok, err := req.Attestation.Token(ctx, "fake-"+p.name, []string{strings.Repeat("ab", 32)})
	if err != nil {
		return nil, fmt.Errorf("attestation token: %w", err)
	}
	p.st.mu.Lock()
	p.st.last, p.st.token = req, tok
	p.st.mu.Unlock()
	load := func() *psk.Share {
		sh, err := psk.LoadShare(p.opts.Share)
		if err != nil {
			panic(err)
		}
		p.st.mu.Lock()
		p.st.given = append(p.st.given, sh)
		p.st.mu.Unlock()
		return sh
	}
	switch p.opts.Mode {
	case "refuse":
		return nil, &RefusedError{Participant: p.name, Reason: p.opts.Reason}
	case "local":
		return nil, Local(errors.New("credentials file unreadable"))
	case "invalid":
		return nil, &InvalidShareError{Why: "plaintext is not a share file"}
	case "hang":
		<-ctx.Done()
		return nil, ctx.Err()
	case "both":
		return load(), errors.New("half-done")
	case "none":
		return nil, nil
	}
	return load(), nil
}

// fakeEntry is a shareholders: entry of kind fake for name.
func (f *fixture) fakeEntry(t *testing.T, name, mode, reason string) ShareholderConfig {
	t.Helper()
	o, err := NewOptions(fakeOptions{Share: filepath.Join(f.dir, name+".share.json"), Mode: mode, Reason: reason})
	if err != nil {
		t.Fatal(err)
	}
	return ShareholderConfig{Name: name, Kind: "fake", Options: o}
}

func (f *fixture) fakeStats(name string) *fakeStats {
	return statsFor(filepath.Join(f.dir, name+".share.json"))
}

// A source whose participants are of two kinds reaches the same key as
// with daemons alone; each participant gets the request it needs (group,
// its own index, identity, epoch, timeout, a working token provider), the
// status names every one, and closing the source closes the participants
// that hold resources.
func TestSourceMixedKinds(t *testing.T) {
	f := newFixture(t)
	a := f.startServer("alice", f.devPolicy, shareholder.ConsentGranted)
	cfg := f.sourceConfig(entry("alice", a), f.fakeEntry(t, "bob", "ok", ""), f.fakeEntry(t, "carol", "refuse", "consent_revoked"))
	cfg.Epoch = 7
	src, err := NewSharesSource(cfg, nil, f.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitFor(t, "ready", func() bool { return src.Status().Ready })
	k, err := src.Key("Client_identity")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k, f.expectedPSK("Client_identity", 7)) {
		t.Fatal("the key from a daemon and a fake participant differs from psk.Combine + DerivePSK")
	}
	bob := f.fakeStats("bob")
	bob.mu.Lock()
	req, tok := bob.last, bob.token
	bob.mu.Unlock()
	if req.Group == nil || req.Group.ID != f.group.ID || req.Participant.Name != "bob" || req.Participant.Index != f.shares["bob"].Index ||
		req.Identity != "Client_identity" || req.Epoch != 7 || req.Timeout != cfg.Timeout || tok == "" {
		t.Fatalf("fake participant got request %+v (token %v)", req, tok != "")
	}
	for _, o := range src.Progress().Outcomes {
		want := map[string]string{"alice": KindDaemon, "bob": "fake", "carol": "fake"}[o.Name]
		if o.Kind != want {
			t.Errorf("outcome %s has kind %q, want %q", o, o.Kind, want)
		}
	}
	src.Close()
	if bob.closed.Load() != 1 || f.fakeStats("carol").closed.Load() != 1 {
		t.Fatalf("Close closed bob %d and carol %d times, want once each", bob.closed.Load(), f.fakeStats("carol").closed.Load())
	}
	bob.mu.Lock()
	defer bob.mu.Unlock()
	for _, sh := range bob.given {
		if !bytes.Equal(sh.Value, make([]byte, len(sh.Value))) {
			t.Fatal("a share handed to the round was not wiped")
		}
	}
	f.checkLogsClean()
}

// Each way a participant of any kind can fail is reported as the daemon
// client's failures are: a refusal with its (plain) reason, a local error
// as local, an invalid share as invalid, a share with an error as the
// error (and the share wiped), no answer at all as unreachable; the dry run
// asks every participant of every kind and closes them afterwards.
func TestCheckEveryKindClassified(t *testing.T) {
	f := newFixture(t)
	groupOf := func(names ...string) (string, map[string]*psk.Share) {
		g, shares, err := psk.Split("wide", 2, names, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "group.json")
		if err := psk.WriteGroup(path, g); err != nil {
			t.Fatal(err)
		}
		m := map[string]*psk.Share{}
		for _, s := range shares {
			m[s.Participant] = s
			if err := psk.WriteShare(filepath.Join(f.dir, s.Participant+".share.json"), s); err != nil {
				t.Fatal(err)
			}
		}
		return path, m
	}
	gp, shares := groupOf("a", "b", "c", "d", "e", "g", "h", "i")
	// i hands out h's share: valid against the group, but not i's.
	if err := os.WriteFile(filepath.Join(f.dir, "i.share.json"), marshalShare(t, shares["h"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := f.sourceConfig(
		f.fakeEntry(t, "a", "ok", ""),
		f.fakeEntry(t, "b", "refuse", "key_disabled"),
		f.fakeEntry(t, "c", "refuse", "Evil\x1b[31m reason"),
		f.fakeEntry(t, "d", "local", ""),
		f.fakeEntry(t, "e", "invalid", ""),
		f.fakeEntry(t, "g", "both", ""),
		f.fakeEntry(t, "h", "none", ""),
		f.fakeEntry(t, "i", "ok", ""),
	)
	cfg.Group = gp
	prog, err := Check(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "1/8 shares (threshold 2): a ok, b refused: key_disabled, c refused: unknown_reason, " +
		"d unreachable: local error: credentials file unreadable, e invalid: plaintext is not a share file, " +
		"g unreachable: half-done, h unreachable: no share and no error, i invalid: returned another participant's share"
	if got := prog.String(); got != want {
		t.Fatalf("dry run:\n got %s\nwant %s", got, want)
	}
	if !prog.Outcomes[3].Local || prog.Outcomes[5].Local {
		t.Fatalf("local marks: %+v", prog.Outcomes)
	}
	if got := prog.Shortfall(); !strings.HasPrefix(got, "not enough shares: 1/8 valid") {
		t.Fatalf("shortfall %q", got)
	}
	for _, n := range []string{"a", "b", "c", "d", "e", "g", "h", "i"} {
		st := f.fakeStats(n)
		if st.fetches.Load() != 1 || st.closed.Load() != 1 {
			t.Errorf("%s: asked %d times, closed %d times; want once each", n, st.fetches.Load(), st.closed.Load())
		}
	}
	g := f.fakeStats("g")
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.given) != 1 || !bytes.Equal(g.given[0].Value, make([]byte, len(g.given[0].Value))) {
		t.Fatal("the share returned with an error was not wiped")
	}
}

// A hanging participant of another kind is bounded by the source's
// timeout like a daemon, and worded "timed out".
func TestFakeKindTimeout(t *testing.T) {
	f := newFixture(t)
	cfg := f.sourceConfig(f.fakeEntry(t, "alice", "ok", ""), f.fakeEntry(t, "bob", "hang", ""), f.fakeEntry(t, "carol", "ok", ""))
	cfg.Timeout = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	prog, err := Check(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := prog.Outcomes[1].String(); got != "bob unreachable: timed out after 200ms" {
		t.Fatalf("hanging participant: %s", got)
	}
}

// The configuration of kinds: kind defaults to daemon, an unknown kind is
// named with the kinds this binary knows, a daemon's settings on another
// kind and options on a daemon are refused, and a kind's own errors name
// the option (through the proxy's config too, prefixed with psk.options).
func TestKindConfigErrors(t *testing.T) {
	f := newFixture(t)
	a := f.startServer("alice", f.devPolicy, shareholder.ConsentGranted)
	opts := func(text string) Options {
		var o Options
		if err := yaml.Unmarshal([]byte(text), &o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	cases := []struct {
		name string
		sh   ShareholderConfig
		want string
	}{
		{"unknown kind", ShareholderConfig{Name: "bob", Kind: "hsm"}, `shareholders[1].kind: unknown participant kind "hsm" (this binary knows daemon, fake)`},
		{"daemon settings on another kind", ShareholderConfig{Name: "bob", Kind: "fake", URL: "https://x:1"}, "shareholders[1]: url, pin, ca_file and audience are settings of kind daemon; a fake participant takes its settings under options:"},
		{"options on a daemon", ShareholderConfig{Name: "bob", URL: "https://x:1", Pin: a.Pin(), Options: opts("{x: 1}")}, "shareholders[1].options: kind daemon takes url, pin, ca_file and audience, not options"},
		{"unknown option", ShareholderConfig{Name: "bob", Kind: "fake", Options: opts("{share: s.json, colour: red}")}, `shareholders[1].options: unknown key colour`},
		{"option of the wrong type", ShareholderConfig{Name: "bob", Kind: "fake", Options: opts("{share: [1, 2]}")}, "shareholders[1].options: share: cannot unmarshal !!seq into string"},
		{"options not a mapping", ShareholderConfig{Name: "bob", Kind: "fake", Options: opts("[1]")}, "shareholders[1].options: want a mapping of the kind's settings"},
		{"missing option", ShareholderConfig{Name: "bob", Kind: "fake"}, "shareholders[1].options.share: missing"},
		{"bad option", ShareholderConfig{Name: "bob", Kind: "fake", Options: opts("{share: s.json, mode: sometimes}")}, `shareholders[1].options.mode: "sometimes" is not a mode`},
	}
	for _, tc := range cases {
		_, err := Check(context.Background(), f.sourceConfig(entry("alice", a), tc.sh), nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.name, err, tc.want)
		}
	}

	// Through the proxy: the route's source error names the option.
	text := fmt.Sprintf(`mode: client
routes:
  - name: app
    listen: tcp://127.0.0.1:0
    connect: tls://127.0.0.1:1
    psk:
      source: shares
      options:
        group: %s
        attestation: {provider: dev, socket: %s}
        shareholders:
          - {name: alice, url: "https://%s", pin: %q}
          - {name: bob, kind: fake, options: {share: s.json, mode: sometimes}}
`, f.groupPath, f.att.Socket(), a.Addr(), a.Pin())
	pcfg, err := proxy.ParseConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(pcfg, proxy.Options{Logger: quietLogger()})
	if err == nil {
		p.Close()
		t.Fatal("the proxy accepted a bad option of a fake participant")
	}
	if !strings.Contains(err.Error(), `psk.options.shareholders[1].options.mode: "sometimes" is not a mode`) {
		t.Fatalf("proxy error %v", err)
	}
}

// A participant built before a bad entry is closed: a source that fails
// to start holds nothing open.
func TestPrepareClosesOnError(t *testing.T) {
	f := newFixture(t)
	cfg := f.sourceConfig(f.fakeEntry(t, "alice", "ok", ""), ShareholderConfig{Name: "bob", Kind: "nope"})
	if _, err := NewSharesSource(cfg, nil, quietLogger()); err == nil {
		t.Fatal("accepted an unknown kind")
	}
	if n := f.fakeStats("alice").closed.Load(); n != 1 {
		t.Fatalf("alice closed %d times, want once", n)
	}
}

// In a stand-alone shares: file, relative paths in a kind's options are
// relative to the file, like the group's.
func TestCheckTargetsKindPaths(t *testing.T) {
	f := newFixture(t)
	text := fmt.Sprintf(`shares:
  group: group.json
  attestation: {provider: dev, socket: %s}
  shareholders:
    - {name: alice, kind: fake, options: {share: alice.share.json}}
    - {name: bob, kind: fake, options: {share: bob.share.json}}
`, f.att.Socket())
	path := filepath.Join(f.dir, "check.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	targets, err := LoadCheckTargets(path)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := Check(context.Background(), targets[0].Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := prog.String(); got != "2/2 shares (threshold 2): alice ok, bob ok" {
		t.Fatalf("dry run %s", got)
	}
}

// RegisterKind refuses a second registration of a kind and malformed
// names: a kind must not silently replace another's builder.
func TestRegisterKindRefusesDuplicates(t *testing.T) {
	for _, kind := range []string{"fake", KindDaemon, "", "Bad Kind", strings.Repeat("k", 40)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterKind(%q) did not panic", kind)
				}
			}()
			RegisterKind(kind, buildFake)
		}()
	}
	if got := strings.Join(Kinds(), ","); got != "daemon,fake" {
		t.Fatalf("Kinds() = %s", got)
	}
}

// A daemon answering with a certificate other than the pinned one is not
// asked: the round reports it unreachable with the pin mismatch.
func TestDaemonPinMismatch(t *testing.T) {
	f := newFixture(t)
	a := f.startServer("alice", f.devPolicy, shareholder.ConsentGranted)
	b := f.startServer("bob", f.devPolicy, shareholder.ConsentGranted)
	impostor := entry("carol", f.startServer("carol", f.devPolicy, shareholder.ConsentGranted))
	impostor.Pin = a.Pin()
	prog, err := Check(context.Background(), f.sourceConfig(entry("alice", a), entry("bob", b), impostor), nil)
	if err != nil {
		t.Fatal(err)
	}
	o := prog.Outcomes[2]
	if o.State != StateUnreachable || !strings.Contains(o.Reason, "certificate pin mismatch") || o.Local {
		t.Fatalf("impostor: %+v", o)
	}
	// The real carol was never asked: the handshake failed on the pin.
	if audit, _ := readFile(f.auditPath("carol")); strings.Contains(audit, `"decision"`) {
		t.Fatalf("carol's daemon saw a request:\n%s", audit)
	}
}

// A daemon entry with STS's audience would hand a daemon a token it could
// replay at STS to decrypt the KMS participants' shares: refused, naming
// the field.
func TestDaemonAudienceNotSTS(t *testing.T) {
	f := newFixture(t)
	e := ShareholderConfig{Name: "alice", URL: "https://127.0.0.1:1", Pin: "sha256:" + strings.Repeat("ab", 32), Audience: "https://sts.googleapis.com"}
	_, err := NewSharesSource(f.sourceConfig(e, ShareholderConfig{Name: "bob", URL: "https://127.0.0.1:2", Pin: "sha256:" + strings.Repeat("cd", 32)}), nil, f.logger())
	if err == nil || !strings.Contains(err.Error(), "shareholders[0].audience") {
		t.Fatalf("error %v, want one naming shareholders[0].audience", err)
	}
}
