package gather

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/tprf"
	"github.com/mcbn/mcbn/shareholder"
)

// startEvalServer starts name's daemon with release: evaluate-only and the
// epoch window [lo, hi]: it never releases its raw share.
func (f *fixture) startEvalServer(name string, lo, hi int) *shareholder.Server {
	f.t.Helper()
	y := f.configYAML(name, f.devPolicy, shareholder.ConsentGranted) +
		"release: evaluate-only\nevaluate:\n  min_epoch: " + itoa(lo) + "\n  max_epoch: " + itoa(hi) + "\n"
	if err := os.WriteFile(f.configPath(name), []byte(y), 0o600); err != nil {
		f.t.Fatal(err)
	}
	cfg, err := shareholder.LoadConfig(f.configPath(name))
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := shareholder.NewServer(context.Background(), cfg, shareholder.ServerOptions{ConfigPath: f.configPath(name), Logger: f.logger()})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

func itoa(i int) string { b, _ := yaml.Marshal(i); return strings.TrimSpace(string(b)) }

// evalPSK is the reference PSK of mode evaluate, from the group secret.
func (f *fixture) evalPSK(identity string, epoch uint64) []byte {
	f.t.Helper()
	secret, err := psk.Combine(f.group, []*psk.Share{f.shares["alice"], f.shares["bob"]})
	if err != nil {
		f.t.Fatal(err)
	}
	defer psk.Wipe(secret)
	k, err := tprf.ReferencePSK(secret, tprf.Input{KeyID: f.group.KeyID(), Identity: identity, Epoch: epoch}, 32)
	if err != nil {
		f.t.Fatal(err)
	}
	return k
}

// wireWatch instruments the evaluate path: it fails the test if any share
// file is parsed from a daemon's reply, and keeps every evaluate reply.
type wireWatch struct {
	sharesParsed atomic.Int32
	mu           sync.Mutex
	replies      map[string][][]byte
}

func watchWire(t *testing.T) *wireWatch {
	w := &wireWatch{replies: map[string][][]byte{}}
	oldParse, oldObserve := parseShare, observeEvaluateReply
	parseShare = func(b []byte) (*psk.Share, error) {
		w.sharesParsed.Add(1)
		return oldParse(b)
	}
	observeEvaluateReply = func(name string, body []byte) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.replies[name] = append(w.replies[name], bytes.Clone(body))
	}
	t.Cleanup(func() { parseShare, observeEvaluateReply = oldParse, oldObserve })
	return w
}

// Mode evaluate end to end: three evaluate-only daemons (they refuse any
// share request), two proxies' sources reach ready with the PSK the group
// secret gives through the threshold PRF. What crossed the wire: only
// partials (points and proof scalars), never a share; no share was parsed
// on the gatherer's side; every daemon audited mode and epoch.
func TestEvaluateModeEndToEnd(t *testing.T) {
	f := newFixture(t)
	w := watchWire(t)
	var entries []ShareholderConfig
	for _, n := range names {
		entries = append(entries, entry(n, f.startEvalServer(n, 1, 2)))
	}
	want := f.evalPSK("Client_identity", 1)
	if bytes.Equal(want, f.expectedPSK("Client_identity", 1)) {
		t.Fatal("mode evaluate's PSK equals mode share's (the derivations must differ)")
	}
	cfg := f.sourceConfig(entries...)
	cfg.Mode = ModeEvaluate
	var keys [][]byte
	for _, side := range []string{"client proxy", "server proxy"} {
		src, err := NewSharesSource(cfg, nil, f.logger())
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		waitFor(t, side+" ready", func() bool { return src.Status().Ready })
		k, err := src.Key("Client_identity")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k, want) {
			t.Fatalf("%s: the combined PSK differs from the reference", side)
		}
		keys = append(keys, k)
	}
	if !bytes.Equal(keys[0], keys[1]) {
		t.Fatal("the two proxies derived different keys")
	}
	if n := w.sharesParsed.Load(); n != 0 {
		t.Fatalf("mode evaluate parsed %d share files", n)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := 0
	for name, bodies := range w.replies {
		for _, b := range bodies {
			seen++
			for owner, sh := range f.shares {
				if bytes.Contains(b, []byte(hex.EncodeToString(sh.Value))) || bytes.Contains(b, sh.Value) {
					t.Fatalf("%s's reply holds %s's share", name, owner)
				}
			}
			if _, err := psk.ParseShare(b); err == nil {
				t.Fatalf("%s's reply parses as a share file", name)
			}
			if _, err := shareholder.ParseEvaluateResponse(b); err != nil {
				t.Fatalf("%s's reply is not a partial: %v", name, err)
			}
		}
	}
	if seen < 2 {
		t.Fatalf("only %d evaluate replies observed", seen)
	}
	for _, n := range names {
		if rec := lastAudit(t, f.auditPath(n)); rec.Decision == shareholder.DecisionRelease && !strings.Contains(rec.Detail, "mode evaluate, epoch 1") {
			t.Fatalf("%s's audit line: %q", n, rec.Detail)
		}
	}
	f.checkLogsClean()
}

// fakePartialServer answers every evaluate request with the partial make
// returns (a hostile or broken daemon).
func fakePartialServer(t *testing.T, name string, make func() *tprf.Partial) ShareholderConfig {
	t.Helper()
	return serveFake(t, name, func(w http.ResponseWriter, r *http.Request) {
		b, err := make().MarshalBinary()
		if err != nil {
			t.Error(err)
		}
		writeJSON(w, http.StatusOK, shareholder.EvaluateResponse{Version: shareholder.ProtocolVersion, Partial: hex.EncodeToString(b)})
	})
}

// A daemon answering a wrong partial is named invalid, with the kind of
// fault, exactly like a wrong share; with T honest ones left the key is
// still right, with fewer there is none.
func TestEvaluateModeNamesWrongPartials(t *testing.T) {
	f := newFixture(t)
	tg, err := tprf.NewGroup(f.group)
	if err != nil {
		t.Fatal(err)
	}
	carol := f.shares["carol"]
	bob := f.startEvalServer("bob", 1, 1)
	eval := func(sh *psk.Share, identity string, epoch uint64) *tprf.Partial {
		p, err := tg.Evaluate(sh, tg.Input(identity, epoch), nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		make func() *tprf.Partial
		why  string
	}{
		{"alice's share under carol's index", func() *tprf.Partial {
			p := eval(f.shares["alice"], "Client_identity", 1)
			p.Index = 3
			return p
		}, "partial fails verification: bad_proof"},
		{"an earlier epoch's answer replayed", func() *tprf.Partial { return eval(carol, "Client_identity", 0) }, "partial fails verification: wrong_epoch"},
		{"another identity", func() *tprf.Partial { return eval(carol, "other", 1) }, "partial fails verification: wrong_identity"},
		{"alice's honest partial", func() *tprf.Partial { return eval(f.shares["alice"], "Client_identity", 1) }, "returned the partial of index 1, not its own"},
	} {
		t.Run(c.name, func(t *testing.T) {
			liar := fakePartialServer(t, "carol", c.make)
			cfg := f.sourceConfig(entry("bob", bob), liar)
			cfg.Mode = ModeEvaluate
			prog, err := Check(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := prog.Outcomes[1]
			if got.Name != "carol" || got.State != StateInvalid || got.Reason != c.why {
				t.Fatalf("carol's outcome: %+v", got)
			}
			if sf := prog.Shortfall(); prog.Enough() || !strings.Contains(sf, "1 invalid (carol: "+c.why+")") {
				t.Fatalf("shortfall: %q", prog.Shortfall())
			}
		})
	}
}

// A participant of a kind that cannot evaluate (like a KMS participant)
// has its share fetched and evaluated inside the TEE; the key is the same.
func TestEvaluateModeLocalEvaluationForShareKinds(t *testing.T) {
	f := newFixture(t)
	alice := f.startEvalServer("alice", 1, 1)
	opts, err := NewOptions(fakeOptions{Share: f.dir + "/bob.share.json"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.sourceConfig(entry("alice", alice), ShareholderConfig{Name: "bob", Kind: "fake", Options: opts})
	cfg.Mode = ModeEvaluate
	src, err := NewSharesSource(cfg, nil, f.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitFor(t, "ready", func() bool { return src.Status().Ready })
	k, _ := src.Key("Client_identity")
	if !bytes.Equal(k, f.evalPSK("Client_identity", 1)) {
		t.Fatal("wrong key with a locally evaluated participant")
	}
	st := statsFor(f.dir + "/bob.share.json")
	if st.fetches.Load() == 0 {
		t.Fatal("the share kind was not asked for its share")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, sh := range st.given {
		if !bytes.Equal(sh.Value, make([]byte, 32)) {
			t.Fatal("a share evaluated locally was not wiped")
		}
	}
}

// A participant that revokes stops answering: the source below T drops
// the key and says consent was withdrawn.
func TestEvaluateModeRevokeDropsKey(t *testing.T) {
	f := newFixture(t)
	alice := f.startEvalServer("alice", 1, 1)
	bob := f.startEvalServer("bob", 1, 1)
	cfg := f.sourceConfig(entry("alice", alice), entry("bob", bob))
	cfg.Mode = ModeEvaluate
	src, err := NewSharesSource(cfg, nil, f.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitFor(t, "ready", func() bool { return src.Status().Ready })
	y, _ := os.ReadFile(f.configPath("bob"))
	y = bytes.Replace(y, []byte("consent: granted"), []byte("consent: revoked"), 1)
	if err := os.WriteFile(f.configPath("bob"), y, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := bob.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "key dropped", func() bool { return !src.Status().Ready })
	if st := src.Status().State; !strings.Contains(st, "bob refused: consent_revoked") {
		t.Fatalf("status %q", st)
	}
}

// The epoch: the route's psk.epochs entry (SourceSpec.Epoch) is used when
// options.epoch is unset; both set and different is a config error naming
// psk.options.epoch. mode: is checked.
func TestSourceSpecEpoch(t *testing.T) {
	f := newFixture(t)
	alice := f.startEvalServer("alice", 3, 3)
	bob := f.startEvalServer("bob", 3, 3)
	spec := func(opts string, epoch uint64) proxy.SourceSpec {
		full := "group: " + f.groupPath + "\nattestation: {provider: dev, socket: " + f.att.Socket() + "}\nrefresh: 100ms\n" +
			"shareholders:\n"
		for _, e := range []ShareholderConfig{entry("alice", alice), entry("bob", bob)} {
			full += "  - {name: " + e.Name + ", url: " + e.URL + ", pin: '" + e.Pin + "', audience: " + e.Audience + "}\n"
		}
		if !strings.Contains(opts, "mode:") {
			full += "mode: evaluate\n"
		}
		full += opts
		return proxy.SourceSpec{Route: "r", Identity: "Client_identity", Epoch: epoch, Logger: f.logger(),
			Decode: func(v any) error { return yaml.Unmarshal([]byte(full), v) }}
	}
	src, err := newFromSpec(spec("", 3))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ss := src.(*SharesSource)
	waitFor(t, "ready", func() bool { return ss.Status().Ready })
	k, _ := ss.Key("Client_identity")
	if !bytes.Equal(k, f.evalPSK("Client_identity", 3)) {
		t.Fatal("the source did not derive the spec's epoch")
	}
	_, err = newFromSpec(spec("epoch: 4\n", 3))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "psk.options.epoch" {
		t.Fatalf("differing epochs: %v", err)
	}
	s2, err := newFromSpec(spec("epoch: 3\n", 3))
	if err != nil {
		t.Fatalf("equal epochs: %v", err)
	}
	s2.Close()
	_, err = newFromSpec(spec("mode: sometimes\n", 0))
	if err == nil || !strings.Contains(err.Error(), "mode") {
		t.Fatalf("bad mode: %v", err)
	}
}
