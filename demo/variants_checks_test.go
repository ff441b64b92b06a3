package demo

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The new stories' checks can fail: the by-hand connection used to show
// Client_identity/7 refused does pass while the server lists epoch 7 (and
// fails for an epoch it does not list), the request loop counts failures
// when consent is withdrawn, and the audit check of --tprf fails on a
// network whose daemons released shares. So a rotation that left epoch 7
// accepted, a loop that could not fail, or a --tprf that released shares
// would not pass as a success; nor would releases to dev attester tokens
// under --tee mock-tsm.
func TestVariantChecksCanFail(t *testing.T) {
	dir := t.TempDir()
	n := &narrator{w: io.Discard, start: time.Now()}
	keys, err := setupKeys(n, dir)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Refresh: 100 * time.Millisecond, Rotate: true}
	if err := o.Check(); err != nil {
		t.Fatal(err)
	}
	net, err := startNetwork(context.Background(), n, dir, keys, o)
	defer net.close(n)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitUntil(ctx, "ready", net.ready); err != nil {
		t.Fatal(err)
	}
	server := net.server.Addr("web").String()
	if err := byHand(ctx, dir, server, rotateFrom); err != nil {
		t.Fatalf("by hand on epoch 7 while the server lists it: %v", err)
	}
	if err := byHand(ctx, dir, server, rotateTo); err == nil || !strings.Contains(err.Error(), "unknown_psk_identity") {
		t.Fatalf("by hand on epoch 8, which the server does not list: %v", err)
	}

	loop := startLoop(ctx, net.client.Addr("web").String())
	defer loop.halt()
	if err := loop.more(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"alice", "bob"} {
		if err := setConsent(net, p, "revoked"); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitUntil(ctx, "refused", net.refused); err != nil {
		t.Fatal(err)
	}
	if err := loop.more(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if sent, failed, _ := loop.halt(); failed == 0 {
		t.Fatalf("the request loop counted no failure without consent (%d sent)", sent)
	}

	net.o.TPRF = true // judge this share-mode network's audit logs as --tprf would
	if err := auditStep(n, net); err == nil || !strings.Contains(err.Error(), "released its share") {
		t.Fatalf("the --tprf audit check passed on daemons that released shares: %v", err)
	}
	net.o.TPRF, net.o.TEE = false, TEEMockTSM // and as --tee mock-tsm would: these releases went to dev tokens
	if err := auditStep(n, net); err == nil || !strings.Contains(err.Error(), "not only to mock-tsm evidence") {
		t.Fatalf("the --tee mock-tsm audit check passed on releases to dev attester tokens: %v", err)
	}
}
