package gather

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/shareholder"
)

// Three shareholders, T=2: two gathering sources (the client-side and the
// server-side proxy) reach ready with the PSK psk.Combine + DerivePSK give.
func TestReleaseEndToEnd(t *testing.T) {
	f := newFixture(t)
	var entries []ShareholderConfig
	servers := map[string]*shareholder.Server{}
	for _, n := range names {
		servers[n] = f.startServer(n, f.devPolicy, shareholder.ConsentGranted)
		entries = append(entries, entry(n, servers[n]))
	}
	want := f.expectedPSK("Client_identity", 1)

	var keys [][]byte
	for _, side := range []string{"client proxy", "server proxy"} {
		src, err := NewSharesSource(f.sourceConfig(entries...), nil, f.logger())
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if _, err := src.Key("Client_identity"); !errors.Is(err, proxy.ErrNotReady) && err != nil {
			t.Fatalf("%s: before gathering: %v", side, err)
		}
		waitFor(t, side+" ready", func() bool { return src.Status().Ready })
		k, err := src.Key("Client_identity")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k, want) {
			t.Fatalf("%s: gathered PSK differs from psk.Combine + DerivePSK", side)
		}
		if _, err := src.Key("someone_else"); !errors.Is(err, proxy.ErrUnknownIdentity) {
			t.Fatalf("%s: unknown identity: %v", side, err)
		}
		st := src.Status().State
		if !regexp.MustCompile(`^[23]/3 shares \(threshold 2\): alice \w`).MatchString(st) {
			t.Fatalf("%s: status %q", side, st)
		}
		if strings.Contains(st, hex.EncodeToString(k)) {
			t.Fatal("status holds the key")
		}
		keys = append(keys, k)
	}
	if !bytes.Equal(keys[0], keys[1]) {
		t.Fatal("the two proxies derived different keys")
	}

	// The audit log recorded releases; metrics count them and hold no share.
	rec := lastAudit(t, f.auditPath("alice"))
	if rec.Decision != shareholder.DecisionRelease || rec.ImageDigest != testDigest || rec.Subject == "" {
		t.Fatalf("audit record %+v", rec)
	}
	body := metricsGet(t, servers["alice"])
	if !strings.Contains(body, "mcbn_shareholder_releases_total") {
		t.Fatalf("metrics lack the release counter:\n%s", body)
	}
	share := hex.EncodeToString(f.shares["alice"].Value)
	if strings.Contains(body, share) {
		t.Fatal("metrics hold the share")
	}
	audit, _ := readFile(f.auditPath("alice"))
	if strings.Contains(audit, share) {
		t.Fatal("audit log holds the share")
	}
	if got := httpsGet(t, servers["alice"], "/healthz"); got != "ok\n" {
		t.Fatalf("healthz: %q", got)
	}
	if !strings.Contains(f.logs.String(), "msg=\"share released\"") {
		t.Fatal("no release in the daemons' logs")
	}
	f.checkLogsClean()
}

// The dry run reports each shareholder and keeps nothing.
func TestCheck(t *testing.T) {
	f := newFixture(t)
	a := f.startServer("alice", f.devPolicy, shareholder.ConsentGranted)
	b := f.startServer("bob", f.devPolicy, shareholder.ConsentRevoked)
	prog, err := Check(context.Background(), f.sourceConfig(entry("alice", a), entry("bob", b),
		ShareholderConfig{Name: "carol", URL: "https://127.0.0.1:1", Pin: a.Pin()}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if prog.Enough() {
		t.Fatal("check says enough with one share")
	}
	got := prog.String()
	if !strings.HasPrefix(got, "1/3 shares (threshold 2): alice ok, bob refused: consent_revoked, carol unreachable: ") {
		t.Fatalf("progress %q", got)
	}
}
