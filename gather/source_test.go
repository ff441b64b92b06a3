package gather

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/shareholder"
	dto "github.com/prometheus/client_model/go"
)

// A shareholder returning a corrupted share is named, and the PSK is still
// derived from the honest ones.
func TestCorruptedShareIdentified(t *testing.T) {
	f := newFixture(t)
	a := f.startServer("alice", f.devPolicy, shareholder.ConsentGranted)
	b := f.startServer("bob", f.devPolicy, shareholder.ConsentGranted)
	cfg := f.sourceConfig(entry("alice", a), entry("bob", b), startLiar(t, f))

	// The dry run asks everyone, so it always sees the liar.
	prog, err := Check(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := prog.String(); got != "2/3 shares (threshold 2): alice ok, bob ok, carol invalid: share fails verification against the group commitments" {
		t.Fatalf("check progress %q", got)
	}

	// A shareholder handing out someone else's (valid) share is named too.
	prog, err = Check(context.Background(), f.sourceConfig(entry("alice", a), entry("bob", b), startFakeShareholder(t, "carol", f.shares["bob"])), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := prog.String(); got != "2/3 shares (threshold 2): alice ok, bob ok, carol invalid: returned another participant's share" {
		t.Fatalf("check progress %q", got)
	}

	src, err := NewSharesSource(cfg, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// The source stops at T valid shares, so a round may finish before the
	// liar's answer is looked at; wait for a round that examined it.
	waitFor(t, "a round naming carol's invalid share", func() bool {
		p := src.Progress()
		return len(p.Outcomes) == 3 && p.Outcomes[2].State == StateInvalid && src.Status().Ready
	})
	k, err := src.Key("Client_identity")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k, f.expectedPSK("Client_identity", 1)) {
		t.Fatal("PSK differs from the honest shares' PSK")
	}
	var m dto.Metric
	if err := src.metrics.results.WithLabelValues("carol", StateInvalid, "").Write(&m); err != nil || m.GetCounter().GetValue() == 0 {
		t.Fatal("metrics do not name carol's invalid share")
	}
}

// With fewer than T shareholders reachable the source is not ready and
// says why.
func TestBelowThresholdNotReady(t *testing.T) {
	f := newFixture(t)
	a := f.startServer("alice", f.devPolicy, shareholder.ConsentGranted)
	closed := closedAddr(t)
	cfg := f.sourceConfig(entry("alice", a),
		ShareholderConfig{Name: "bob", URL: "https://" + closed, Pin: a.Pin(), Audience: "mcbn-test-bob"},
		ShareholderConfig{Name: "carol", URL: "https://" + blackHole(t), Pin: a.Pin(), Audience: "mcbn-test-carol"})
	cfg.Timeout = 300 * time.Millisecond
	src, err := NewSharesSource(cfg, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// alice must answer within carol's 300ms timeout, which a loaded
	// machine (or -race) may miss once; wait for a round where she did.
	var st proxy.SourceStatus
	waitFor(t, "a round with alice's share", func() bool {
		st = src.Status()
		return src.Rounds() > 0 && strings.Contains(st.State, "alice ok")
	})
	if st.Ready {
		t.Fatal("ready with one share of two")
	}
	if !strings.HasPrefix(st.State, "1/3 shares (threshold 2): alice ok, bob unreachable: ") || !strings.HasSuffix(st.State, "carol unreachable: timed out after 300ms") {
		t.Fatalf("status %q", st.State)
	}
	_, err = src.Key("Client_identity")
	if !errors.Is(err, proxy.ErrNotReady) || !strings.Contains(err.Error(), "/3 shares (threshold 2)") {
		t.Fatalf("Key: %v", err)
	}
}

// Revoking consent on enough shareholders drops the key within a refresh
// interval; granting it again brings the same key back.
func TestConsentRevocationDropsKey(t *testing.T) {
	f := newFixture(t)
	var entries []ShareholderConfig
	for _, n := range names {
		entries = append(entries, entry(n, f.startServer(n, f.devPolicy, shareholder.ConsentGranted)))
	}
	src, err := NewSharesSource(f.sourceConfig(entries...), nil, f.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitFor(t, "ready", func() bool { return src.Status().Ready })
	want, _ := src.Key("Client_identity")
	drain(src.Changes())

	// One revocation leaves two: still ready.
	if changed, err := shareholder.SetConsent(f.configPath("carol"), shareholder.ConsentRevoked); err != nil || !changed {
		t.Fatalf("SetConsent: %v %v", changed, err)
	}
	waitFor(t, "carol's refusal seen", func() bool {
		p := src.Progress()
		return len(p.Outcomes) == 3 && p.Outcomes[2].String() == "carol refused: consent_revoked"
	})
	if !src.Status().Ready {
		t.Fatal("dropped the key with two of three consenting")
	}

	// A second revocation drops the key.
	if _, err := shareholder.SetConsent(f.configPath("bob"), shareholder.ConsentRevoked); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "key dropped", func() bool { return !src.Status().Ready })
	<-src.Changes()
	st := src.Status().State
	if st != "1/3 shares (threshold 2): alice ok, bob refused: consent_revoked, carol refused: consent_revoked" {
		t.Fatalf("status %q", st)
	}
	if _, err := src.Key("Client_identity"); !errors.Is(err, proxy.ErrNotReady) {
		t.Fatalf("Key after revocation: %v", err)
	}
	// The log says consent is what is missing (and not, say, the network).
	if logs := f.logs.String(); !strings.Contains(logs, `msg="PSK dropped: not enough shareholders consent: 1/3 valid, threshold 2; 2 refused (consent_revoked)"`) {
		t.Fatalf("no consent wording in the log:\n%s", logs)
	}

	// Granting again recovers by itself.
	if _, err := shareholder.SetConsent(f.configPath("bob"), shareholder.ConsentGranted); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "key back", func() bool { return src.Status().Ready })
	got, _ := src.Key("Client_identity")
	if !bytes.Equal(got, want) {
		t.Fatal("a different key came back")
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// Every wait between rounds is jittered within ±20 % of its nominal value,
// by the injected random source: the refresh interval when ready, the
// retry bound when not.
func TestSourceJitteredWaits(t *testing.T) {
	f := newFixture(t)
	var entries []ShareholderConfig
	for _, n := range names {
		entries = append(entries, entry(n, f.startServer(n, f.devPolicy, shareholder.ConsentGranted)))
	}
	draws := []float64{0, 0.5, 0.999, 0.25, 0.75}
	run := func(cfg SharesSourceConfig, rounds int) []time.Duration {
		var mu sync.Mutex
		next := 0
		waits := make(chan time.Duration, 64)
		src, err := newSharesSource(cfg, nil, quietLogger(), sourceOptions{
			rand: func() float64 {
				mu.Lock()
				defer mu.Unlock()
				r := draws[next%len(draws)]
				next++
				return r
			},
			onWait: func(d time.Duration) {
				select {
				case waits <- d:
				default:
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		var got []time.Duration
		for len(got) < rounds {
			select {
			case d := <-waits:
				got = append(got, d)
			case <-time.After(20 * time.Second):
				t.Fatalf("no wait after %d rounds", len(got))
			}
		}
		return got
	}

	cfg := f.sourceConfig(entries...)
	cfg.Refresh = 50 * time.Millisecond
	got := run(cfg, len(draws))
	for i, d := range got {
		if want := jitter(cfg.Refresh, draws[i]); d != want {
			t.Errorf("wait %d = %v, want %v (draw %v)", i, d, want, draws[i])
		}
		if d < 40*time.Millisecond || d >= 60*time.Millisecond {
			t.Errorf("wait %d = %v, outside 40ms..60ms", i, d)
		}
	}
	if got[0] == got[1] || got[1] == got[2] {
		t.Errorf("waits do not vary: %v", got)
	}

	// Not ready (nothing listens): the retry bound, jittered the same way.
	cfg = f.sourceConfig(ShareholderConfig{Name: "alice", URL: "https://" + closedAddr(t), Pin: entries[0].Pin, Audience: "mcbn-test-alice"},
		ShareholderConfig{Name: "bob", URL: "https://" + closedAddr(t), Pin: entries[0].Pin, Audience: "mcbn-test-bob"})
	cfg.Refresh = time.Hour
	if got := run(cfg, 1); got[0] != jitter(maxRetry, draws[0]) || got[0] != 4*time.Second {
		t.Errorf("retry wait %v, want %v", got[0], jitter(maxRetry, draws[0]))
	}
}

// jitter stays within ±20 %, whatever the draw (clamped to [0, 1]), and the
// default random source spreads it.
func TestSourceJitterBounds(t *testing.T) {
	const d = 30 * time.Second
	for _, r := range []float64{-1, 0, 0.5, 0.9999999, 1, 2} {
		if j := jitter(d, r); j < 24*time.Second || j > 36*time.Second {
			t.Errorf("jitter(%v, %v) = %v", d, r, j)
		}
	}
	if jitter(d, 0) != 24*time.Second || jitter(d, 0.5) != d {
		t.Errorf("jitter(0) = %v, jitter(0.5) = %v", jitter(d, 0), jitter(d, 0.5))
	}
	s := &SharesSource{p: &prepared{cfg: SharesSourceConfig{Refresh: d}}, rand: rand.Float64}
	seen := map[time.Duration]bool{}
	for range 1000 {
		w := s.nextWait(true)
		if w < 24*time.Second || w >= 36*time.Second {
			t.Fatalf("nextWait = %v, outside 24s..36s", w)
		}
		seen[w] = true
	}
	if len(seen) < 100 {
		t.Fatalf("1000 waits took only %d values", len(seen))
	}
}

// Withdrawn consent reaches open tunnels unless the route opts out: an
// unset close_tunnels_on_loss means true, also for programs that build the
// source in Go (the demo) rather than from YAML.
func TestCloseTunnelsOnLossDefault(t *testing.T) {
	no, yes := false, true
	for _, c := range []struct {
		set  *bool
		want bool
	}{{nil, true}, {&no, false}, {&yes, true}} {
		src := &SharesSource{p: &prepared{cfg: SharesSourceConfig{CloseTunnelsOnLoss: c.set}}}
		if got := src.CloseTunnelsOnLoss(); got != c.want {
			t.Errorf("close_tunnels_on_loss %v: CloseTunnelsOnLoss() = %v, want %v", c.set, got, c.want)
		}
	}
}

// A daemon that refuses because its config does not load says so to the
// proxy: config_invalid is a protocol reason, not an unknown one.
func TestConfigInvalidReasonKnown(t *testing.T) {
	if got := knownReason(shareholder.ReasonConfigInvalid); got != shareholder.ReasonConfigInvalid {
		t.Fatalf("knownReason(%q) = %q", shareholder.ReasonConfigInvalid, got)
	}
	if got := knownReason("config_invalid\nINJECTED"); got != "unknown_reason" {
		t.Fatalf("a hostile reason passed: %q", got)
	}
}
