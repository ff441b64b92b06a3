package gather

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// stagedHolder is a fake shareholder that counts the requests it gets and
// answers with its share, a refusal, or not at all (until the client gives
// up).
type stagedHolder struct {
	cfg      ShareholderConfig
	requests atomic.Int32
	mode     atomic.Value // "ok", "refuse" or "hang"
	// open counts the server's connections not yet closed. A round that
	// stops at T leaves requests in flight that the server may still read
	// and count after the round returned; requestCounts waits for them.
	open atomic.Int32
}

func startStagedHolder(t *testing.T, share *psk.Share) *stagedHolder {
	t.Helper()
	h := &stagedHolder{}
	h.mode.Store("ok")
	file := marshalShare(t, share)
	track := func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			h.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			h.open.Add(-1)
		}
	}
	h.cfg = serveFakeWith(t, share.Participant, func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		switch h.mode.Load() {
		case "refuse":
			writeJSON(w, http.StatusForbidden, shareholder.Refusal{Error: "refused", Reason: ReasonConsentRevoked})
		case "hang":
			<-r.Context().Done()
		default:
			writeJSON(w, http.StatusOK, shareholder.ReleaseResponse{Version: shareholder.ProtocolVersion, Share: file})
		}
	}, track)
	return h
}

// wideGroup is a 3-of-5 group on disk with a staged fake per participant.
func wideGroup(t *testing.T, f *fixture) (*prepared, []*stagedHolder) {
	t.Helper()
	g, shares, err := psk.Split("wide", 3, []string{"a", "b", "c", "d", "e"}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "group.json")
	if err := psk.WriteGroup(path, g); err != nil {
		t.Fatal(err)
	}
	cfg := f.sourceConfig()
	cfg.Group = path
	var hs []*stagedHolder
	for _, s := range shares {
		h := startStagedHolder(t, s)
		hs = append(hs, h)
		cfg.Shareholders = append(cfg.Shareholders, h.cfg)
	}
	cfg.Timeout = 10 * time.Minute
	p, err := prepare(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, hs
}

// requestCounts returns and resets the request counts of the last round,
// once every connection of that round is closed on the server side: a
// request the client sent before it gave up is counted in its own round,
// never in the next. (Every connection that carried a request completed its
// TLS handshake, so the server had accepted it, and counted it open, before
// the round returned.)
func requestCounts(t *testing.T, hs []*stagedHolder) []int32 {
	t.Helper()
	waitFor(t, "the last round's connections to close", func() bool {
		for _, h := range hs {
			if h.open.Load() != 0 {
				return false
			}
		}
		return true
	})
	out := make([]int32, len(hs))
	for i, h := range hs {
		out[i] = h.requests.Load()
		h.requests.Store(0)
	}
	return out
}

// gatherOnce runs one round bounded by 30s, far below the shareholders'
// timeout, so that a round that would wait for a hanging shareholder's
// timeout comes back short of T instead of passing late.
func gatherOnce(t *testing.T, f *fixture, p *prepared, prefer []int) Progress {
	t.Helper()
	provider, err := p.provider()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prog, shares := gather(ctx, p, provider, true, prefer)
	wipeShares(shares)
	return prog
}

// A round that stops at T asks T+1 shareholders when all are healthy and
// one more for each that refuses (the hedge delay is set out of reach
// here, so only that rule can bring in the fifth); the next round prefers
// those that released; and when some hang, the hedge delay brings in the
// rest. Each round is bounded by gatherOnce's 30s, far below the
// shareholders' 10-minute timeout, so a broken rule shows as a round short
// of T rather than as a slow pass.
func TestGatherStaged(t *testing.T) {
	f := newFixture(t)
	p, hs := wideGroup(t, f)
	p.hedgeAfter = time.Hour

	prog := gatherOnce(t, f, p, nil)
	if !prog.Enough() || prog.Outcomes[4].State != StateNotNeeded {
		t.Fatalf("healthy round: %s", prog)
	}
	if c := requestCounts(t, hs); c[4] != 0 {
		t.Fatalf("healthy round asked e (%v): want a..d only", c)
	}

	// a and b refuse: the first refusal brings in the next (e) at once. The
	// round stops when c, d and e have released, which may be before the
	// other refusal arrives: that one then stays "not needed" (a round
	// stopping at T does not wait for answers it no longer needs).
	hs[0].mode.Store("refuse")
	hs[1].mode.Store("refuse")
	prog = gatherOnce(t, f, p, nil)
	refused := 0
	for _, o := range prog.Outcomes[:2] {
		switch o.State {
		case StateRefused:
			refused++
		case StateNotNeeded:
		default:
			t.Fatalf("refusals: %s", prog)
		}
	}
	if !prog.Enough() || refused == 0 || prog.Outcomes[4].State != StateOK {
		t.Fatalf("refusals: %s", prog)
	}
	if c := requestCounts(t, hs); c[4] != 1 {
		t.Fatalf("refusal round asked e %d times (%v), want once", c[4], c)
	}

	// The next round asks c, d, e (which released) first, then a as the
	// spare; b, last in that order, is never asked.
	hs[0].mode.Store("ok")
	hs[1].mode.Store("ok")
	prog = gatherOnce(t, f, p, releasedLast(prog))
	if !prog.Enough() {
		t.Fatalf("preferred round: %s", prog)
	}
	if c := requestCounts(t, hs); c[1] != 0 {
		t.Fatalf("preferred round asked b (%v)", c)
	}

	// c and d hang and nobody refuses: only the hedge delay brings in e.
	p.hedgeAfter = 50 * time.Millisecond
	hs[2].mode.Store("hang")
	hs[3].mode.Store("hang")
	prog = gatherOnce(t, f, p, nil)
	if !prog.Enough() || prog.Outcomes[4].State != StateOK {
		t.Fatalf("hanging round: %s", prog)
	}
}

func TestGatherOrder(t *testing.T) {
	for _, c := range []struct {
		prefer []int
		want   []int
	}{
		{nil, []int{0, 1, 2, 3}},
		{[]int{2, 3}, []int{2, 3, 0, 1}},
		{[]int{3, 3, 9, -1, 1}, []int{3, 1, 0, 2}},
	} {
		if got := gatherOrder(4, c.prefer); !slices.Equal(got, c.want) {
			t.Errorf("gatherOrder(4, %v) = %v, want %v", c.prefer, got, c.want)
		}
	}
}

// The dry run asks every shareholder, whatever the threshold.
func TestCheckAsksEveryone(t *testing.T) {
	f := newFixture(t)
	p, hs := wideGroup(t, f)
	provider, err := p.provider()
	if err != nil {
		t.Fatal(err)
	}
	prog, shares := gather(context.Background(), p, provider, false, nil)
	wipeShares(shares)
	if prog.Valid != 5 {
		t.Fatalf("dry run: %s", prog)
	}
	for i, c := range requestCounts(t, hs) {
		if c != 1 {
			t.Fatalf("dry run asked %s %d times", hs[i].cfg.Name, c)
		}
	}
}

// The dry run finds every route that uses the shares source, also one
// whose psk block is a YAML alias of another's.
func TestCheckTargetsFollowAliases(t *testing.T) {
	targets, err := ParseCheckTargets([]byte(`routes:
  - name: web
    identity: web-id
    psk: &shares
      source: shares
      options: {group: g.json, shareholders: [{name: a, url: "https://127.0.0.1:1", pin: "sha256:00"}]}
  - name: dns
    psk: *shares
  - name: other
    psk: {hex: "00"}
`))
	if err != nil {
		t.Fatal(err)
	}
	var where []string
	for _, tg := range targets {
		where = append(where, tg.Where)
	}
	if !slices.Equal(where, []string{"routes[0] (web)", "routes[1] (dns)"}) {
		t.Fatalf("targets %v", where)
	}
}

// An alias inside a route's options resolves too, and an alias bomb is
// refused instead of expanded.
func TestCheckTargetsNestedAliasesAndBomb(t *testing.T) {
	targets, err := ParseCheckTargets([]byte(`holders: &hs [{name: a, url: "https://127.0.0.1:1", pin: "sha256:00"}]
routes:
  - name: web
    psk:
      source: shares
      options: {group: g.json, shareholders: *hs}
`))
	if err != nil || len(targets) != 1 || len(targets[0].Config.Shareholders) != 1 || targets[0].Config.Shareholders[0].Name != "a" {
		t.Fatalf("nested alias: %+v, %v", targets, err)
	}
	bomb := "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 1; i < 9; i++ {
		bomb += fmt.Sprintf("a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	bomb += "routes:\n  - name: web\n    psk:\n      source: shares\n      options: {group: g.json, extra: *a8}\n"
	if _, err := ParseCheckTargets([]byte(bomb)); err == nil || !strings.Contains(err.Error(), "too many YAML aliases") {
		t.Fatalf("alias bomb: %v", err)
	}
}
