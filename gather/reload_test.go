package gather

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/reshare"
	"github.com/mcbn/mcbn/shareholder"
)

// reshareFixture runs a resharing ceremony of f's group (every old holder
// deals) to newT-of-newNames through psk/reshare's API, and returns a
// fixture for the new group in a directory of its own, sharing f's dev
// attester (the proxies attest to both sets of daemons with it).
func reshareFixture(t *testing.T, f *fixture, newT int, newNames []string) *fixture {
	t.Helper()
	var pubs []*reshare.Pub
	keys := map[string]*reshare.Key{}
	for _, n := range newNames {
		k, pub, err := reshare.NewKey(n, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[n], pubs = k, append(pubs, pub)
	}
	params, err := reshare.NewParams(f.group, nil, newT, newNames, pubs, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var deals []*reshare.Deal
	for _, d := range params.Dealers {
		deal, err := reshare.MakeDeal(params, f.shares[d], rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		deals = append(deals, deal)
	}
	dir := filepath.Join(f.dir, "reshared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	nf := &fixture{t: t, dir: dir, groupPath: filepath.Join(dir, "group.json"), shares: map[string]*psk.Share{}, att: f.att, devPolicy: f.devPolicy}
	for _, n := range newNames {
		res, err := reshare.Finish(params, keys[n], deals, nil)
		if err != nil {
			t.Fatal(err)
		}
		if nf.group == nil {
			nf.group = res.Group
		} else if res.Group.ID != nf.group.ID {
			t.Fatal("new participants computed different groups")
		}
		nf.shares[n] = res.Share
		if err := psk.WriteShare(filepath.Join(dir, n+".share.json"), res.Share); err != nil {
			t.Fatal(err)
		}
	}
	if err := psk.WriteGroup(nf.groupPath, nf.group); err != nil {
		t.Fatal(err)
	}
	if nf.group.KeyID() != f.group.KeyID() || nf.group.ID == f.group.ID || nf.group.Threshold != newT {
		t.Fatalf("reshared group: key id kept %v, new id %v, threshold %d", nf.group.KeyID() == f.group.KeyID(), nf.group.ID != f.group.ID, nf.group.Threshold)
	}
	return nf
}

// specOf is a proxy.SourceSpec whose options decode to cfg.
func specOf(cfg SharesSourceConfig) proxy.SourceSpec {
	return proxy.SourceSpec{Identity: cfg.Identity, Logger: quietLogger(), Decode: func(v any) error {
		*v.(*SharesSourceConfig) = cfg
		return nil
	}}
}

// configField is the field a ConfigError names ("" for another error).
func configField(err error) string {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return ce.Field
	}
	return ""
}

var newNames = []string{"alice", "bob", "carol", "dave", "erin"}

// A reload re-reads the group descriptor and the shareholders list. A bad
// group file, a group with another key id (a rotation) or a shareholders
// list that does not fit the group is refused, naming the field, and the
// source keeps its group, participants and key: the next round still
// gathers the old shares. The reshared 3-of-5 group (same key id) is
// accepted and the next round gathers from its five daemons the same PSK.
// A daemon still holding an old share is refused (its group differs), and
// an old share presented as a new participant's fails verification, named.
func TestSourceReloadGroupAndShareholders(t *testing.T) {
	f := newFixture(t)
	var entries []ShareholderConfig
	for _, n := range names {
		entries = append(entries, entry(n, f.startServer(n, f.devPolicy, shareholder.ConsentGranted)))
	}
	cfg := f.sourceConfig(entries...)
	cfg.Refresh = time.Hour // rounds only when a reload (or kickRound) asks
	src, err := NewSharesSource(cfg, nil, f.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitFor(t, "ready", func() bool { return src.Status().Ready })
	want := f.expectedPSK("Client_identity", 1)
	keyIs := func(what string) {
		t.Helper()
		k, err := src.Key("Client_identity")
		if err != nil || !bytes.Equal(k, want) {
			t.Fatalf("%s: key %v (err %v), want the group's PSK", what, k != nil, err)
		}
	}
	gatherAgain := func(what string) Progress {
		t.Helper()
		n := src.Rounds()
		src.kickRound()
		waitFor(t, what, func() bool { return src.Rounds() > n })
		return src.Progress()
	}
	// reloadAndGather reloads and returns the first round's progress with
	// the new config (a reload clears the progress; only a round of the
	// new participants sets it again).
	reloadAndGather := func(what string, c SharesSourceConfig) Progress {
		t.Helper()
		if err := src.ReloadSpec(specOf(c)); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		waitFor(t, what, func() bool { return src.Progress().N > 0 })
		return src.Progress()
	}

	// The group file rewritten with garbage (an operator's half-written
	// copy): refused, nothing changes, the old group keeps gathering.
	good, _ := os.ReadFile(f.groupPath)
	if err := os.WriteFile(f.groupPath, []byte(`{"version": 1, "type": "mcbn-gr`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); configField(err) != "group" {
		t.Fatalf("reload of a broken group file: %v", err)
	}
	keyIs("after a failed reload")
	if p := gatherAgain("a round after the failed reload"); !p.Enough() || p.N != 3 {
		t.Fatalf("the old group no longer gathers: %s", p)
	}
	keyIs("a round after the failed reload")
	if err := os.WriteFile(f.groupPath, good, 0o644); err != nil {
		t.Fatal(err)
	}

	// A new secret at the same path or another: a rotation, refused.
	other, _, err := psk.Split("demo", 2, names, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPath := filepath.Join(f.dir, "other-group.json")
	if err := psk.WriteGroup(otherPath, other); err != nil {
		t.Fatal(err)
	}
	rot := cfg
	rot.Group = otherPath
	err = src.ReloadSpec(specOf(rot))
	if configField(err) != "psk.options.group" || !strings.Contains(err.Error(), "key id") || !strings.Contains(err.Error(), "rotation") {
		t.Fatalf("reload to another key id: %v", err)
	}
	keyIs("after a refused rotation")

	// Other changes of the key, each named.
	for field, mut := range map[string]func(c *SharesSourceConfig){
		"psk.options.epoch":      func(c *SharesSourceConfig) { c.Epoch = 2 },
		"psk.options.key_length": func(c *SharesSourceConfig) { c.KeyLength = 48 },
		"psk.options.mode":       func(c *SharesSourceConfig) { c.Mode = ModeEvaluate },
		"psk.options.shareholders[0].name": func(c *SharesSourceConfig) {
			c.Shareholders = append([]ShareholderConfig{{Name: "mallory", URL: "https://127.0.0.1:1", Pin: entries[0].Pin}}, c.Shareholders...)
		},
	} {
		c := cfg
		c.Shareholders = append([]ShareholderConfig(nil), cfg.Shareholders...)
		mut(&c)
		if err := src.ReloadSpec(specOf(c)); configField(err) != field {
			t.Errorf("reload changing %s: %v", field, err)
		}
	}
	keyIs("after the refused reloads")
	if p := gatherAgain("a round after the refused reloads"); !p.Enough() || p.N != 3 || p.Threshold != 2 {
		t.Fatalf("refused reloads changed the source: %s", p)
	}

	// The reshare: 3-of-5, same key id, five new daemons.
	nf := reshareFixture(t, f, 3, newNames)
	var newEntries []ShareholderConfig
	for _, n := range newNames {
		newEntries = append(newEntries, entry(n, nf.startServer(n, f.devPolicy, shareholder.ConsentGranted)))
	}
	rs := cfg
	rs.Group, rs.Shareholders = nf.groupPath, newEntries
	p := reloadAndGather("reload to the reshared group", rs)
	if !p.Enough() || p.N != 5 || p.Threshold != 3 {
		t.Fatalf("after the reshare: %s", p)
	}
	keyIs("gathered from the reshared group")

	// Old shares against the new group: the old alice daemon refuses (its
	// share is of another group), and a participant handing out the old
	// share under its new name fails verification, named.
	mixed := rs
	mixed.Shareholders = []ShareholderConfig{entries[0], newEntries[1], newEntries[2]}
	p = reloadAndGather("a round with the old alice daemon", mixed)
	if p.Enough() || p.Outcomes[0].State != StateRefused || p.Outcomes[0].Reason != shareholder.ReasonBadRequest {
		t.Fatalf("an old daemon in the new group: %s", p)
	}
	mixed.Shareholders[0] = startFakeShareholder(t, "alice", f.shares["alice"])
	p = reloadAndGather("a round with an old share", mixed)
	if p.Enough() || p.Outcomes[0].State != StateInvalid || !strings.Contains(p.Outcomes[0].String(), "alice invalid: share fails verification") {
		t.Fatalf("an old share in the new group: %s", p)
	}
	if src.Status().Ready {
		t.Fatal("ready from 2 new shares and an old one")
	}
	f.checkLogsClean()
}

// Resharing keeps the PSK: any T old shares and any T' new shares give
// the same key (derived for the key id both groups carry), and a mix of
// old and new shares is refused by verification against the new group,
// naming the old share's holder.
func TestReshareSamePSKMixRefused(t *testing.T) {
	f := newFixture(t)
	nf := reshareFixture(t, f, 3, newNames)
	derive := func(g *psk.Group, shares ...*psk.Share) []byte {
		t.Helper()
		secret, err := psk.Combine(g, shares)
		if err != nil {
			t.Fatal(err)
		}
		defer psk.Wipe(secret)
		k, err := psk.DerivePSK(secret, g.KeyID(), "Client_identity", 1, 32)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	old := derive(f.group, f.shares["bob"], f.shares["carol"])
	neu := derive(nf.group, nf.shares["carol"], nf.shares["dave"], nf.shares["erin"])
	if !bytes.Equal(old, neu) || !bytes.Equal(old, f.expectedPSK("Client_identity", 1)) {
		t.Fatal("the reshared group derives another PSK")
	}
	_, bad, err := psk.CombineValid(nf.group, []*psk.Share{f.shares["alice"], nf.shares["bob"], nf.shares["carol"]})
	if err == nil || len(bad) != 1 || !strings.Contains(bad[0].Error(), "alice") {
		t.Fatalf("old alice with new bob and carol: err %v, bad %v", err, bad)
	}
}
