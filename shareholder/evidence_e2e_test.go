package shareholder_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// TestMockTSMEndToEnd: three real shareholder daemons (2 of 3) in-process,
// each accepting mock-tsm evidence under the mock preset policy, and the
// proxy's gatherer with the mock-tsm provider: it reaches ready with the
// PSK psk.Combine + DerivePSK give. A gatherer whose mock hardware reports
// another measurement gets nothing.
func TestMockTSMEndToEnd(t *testing.T) {
	dir := t.TempDir()
	names := []string{"alice", "bob", "carol"}
	g, shares, err := psk.Split("tee-demo", 2, names, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	groupPath := filepath.Join(dir, "group.json")
	if err := psk.WriteGroup(groupPath, g); err != nil {
		t.Fatal(err)
	}
	meas := strings.Repeat("3c", 48)
	mock, err := attest.CreateMockTSM(filepath.Join(dir, "mock-tsm"), attest.MockConfig{Measurement: meas})
	if err != nil {
		t.Fatal(err)
	}
	policy, err := shareholder.MockPolicy([]string{meas})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var entries []gather.ShareholderConfig
	for _, s := range shares {
		name := s.Participant
		if err := psk.WriteShare(filepath.Join(dir, name+".share.json"), s); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "name: %s\nlisten: 127.0.0.1:0\nshare_store: file://%s\ngroup: group.json\n", name, filepath.Join(dir, name+".share.json"))
		fmt.Fprintf(&b, "verifier:\n  issuer: https://confidentialcomputing.googleapis.com\n  audience: aud-%s\n", name)
		fmt.Fprintf(&b, "  tee:\n    accept: [mock-tsm]\n    mock_root: %s\n", filepath.Join(mock.Dir, attest.MockRootFile))
		fmt.Fprintf(&b, "policy: |\n")
		for _, l := range strings.Split(strings.TrimSpace(policy), "\n") {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		fmt.Fprintf(&b, "consent: granted # participant's decision\naudit_log: %s.audit.jsonl\nmetrics:\n  listen: \"\"\n", name)
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := shareholder.LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := shareholder.NewServer(context.Background(), cfg, shareholder.ServerOptions{ConfigPath: path, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		entries = append(entries, gather.ShareholderConfig{Name: name, URL: "https://" + srv.Addr().String(), Pin: srv.Pin(), Audience: "aud-" + name})
	}
	srcCfg := gather.SharesSourceConfig{
		Group: groupPath, Shareholders: entries,
		Attestation: gather.AttestationConfig{Provider: attest.KindMockTSM, Socket: mock.Dir},
		Identity:    "Client_identity", Epoch: 1,
		Refresh: 100 * time.Millisecond, Timeout: 5 * time.Second,
	}
	// The provider comes from the config (nil here), as in the proxy.
	src, err := gather.NewSharesSource(srcCfg, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitReady(t, src)
	key, err := src.Key("Client_identity")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := psk.Combine(g, shares[:2])
	if err != nil {
		t.Fatal(err)
	}
	want, err := psk.DerivePSK(secret, g.ID, "Client_identity", 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, want) {
		t.Fatal("gathered PSK differs from psk.Combine + DerivePSK")
	}

	// Another workload (another measurement) on the same mock hardware:
	// every shareholder refuses it, so it never gets ready.
	if err := mock.SetConfig(attest.MockConfig{Measurement: strings.Repeat("00", 48)}); err != nil {
		t.Fatal(err)
	}
	prog, _ := gather.Check(context.Background(), srcCfg, nil)
	if prog.Enough() || prog.Count(gather.StateRefused) != 3 || !strings.Contains(prog.String(), "policy_denied") {
		t.Fatalf("a gatherer with another measurement got shares: %+v", prog)
	}
}

func waitReady(t *testing.T, src *gather.SharesSource) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !src.Status().Ready {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %s", src.Status().State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
