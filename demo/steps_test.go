package demo

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The checks can fail: with full consent, expecting refusal is an error,
// and with consent withdrawn, expecting traffic is an error. So a demo
// whose consent changes did nothing would not pass as a success.
func TestStepChecksCanFail(t *testing.T) {
	dir := t.TempDir()
	n := &narrator{w: io.Discard, start: time.Now()}
	keys, err := setupKeys(n, dir)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Refresh: 100 * time.Millisecond}
	net, err := startNetwork(context.Background(), n, dir, keys, o)
	defer net.close(n)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := waitUntil(ctx, "ready", net.ready); err != nil {
		t.Fatal(err)
	}
	if err := expectRefused(ctx, n, net); err == nil || !strings.Contains(err.Error(), "without consent") {
		t.Fatalf("expectRefused with full consent: %v", err)
	}
	for _, p := range []string{"alice", "bob"} {
		if err := setConsent(net, p, "revoked"); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitUntil(ctx, "refused", net.refused); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := expectFlow(short, n, net); err == nil {
		t.Fatal("expectFlow passed with 1 of 3 consenting")
	}
}
