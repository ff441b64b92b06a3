package demo

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runVariant runs the demo with o to the end (bounded: a stuck step fails
// the test) and returns the narration. Run checks each step's outcome
// itself and returns an error when one is wrong.
func runVariant(t *testing.T, o Options) string {
	t.Helper()
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	o.Out = &out
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	start := time.Now()
	if err := Run(ctx, o); err != nil {
		t.Fatalf("demo %v: %v\n%s", o.flags(), err, out.String())
	}
	t.Logf("demo %v took %s:\n%s", o.flags(), time.Since(start), out.String())
	return out.String()
}

// inOrder fails unless text holds each of want, in this order.
func inOrder(t *testing.T, text string, want ...string) {
	t.Helper()
	pos := 0
	for _, w := range want {
		i := strings.Index(text[pos:], w)
		if i < 0 {
			t.Fatalf("narration lacks %q after position %d:\n%s", w, pos, text)
		}
		pos += i + len(w)
	}
}

// `mcbn demo --rotate`: the HTTP route moves from epoch 7 to 8, server
// first, while a request loop and a long-lived connection run. Run fails
// on any failed request, on a long-lived connection that stops answering,
// and when Client_identity/7 with epoch 7's right key is still accepted
// afterwards; the narration must show the facts in order. The consent
// steps follow on epoch 8.
func TestDemoRunsWithRotate(t *testing.T) {
	dir := t.TempDir()
	text := runVariant(t, Options{Dir: dir, Rotate: true})
	inOrder(t, text,
		"epochs [7], the client [7]",
		"from epoch 7 (identity Client_identity/7) to epoch 8",
		"long-lived connection is open",
		"Server first", "server /status: epochs.current = 8",
		"the client still uses epoch 7",
		"Then the client", "client /status: epochs.current = 8",
		"Drop epoch 7", "7 retired",
		"failed: 0",
		"long-lived connection opened on epoch 7 still answers",
		"as Client_identity/7, with epoch 7's right key, is refused",
		"as Client_identity/8 with epoch 8's key passes",
		"bob revokes", "carol revokes", "TCP: a new tunnel is refused", "bob grants", "ready again",
		"shares released",
		"-psk_identity Client_identity/8", "--epoch 8", "(run 'mcbn demo --rotate --keep'", "Done in")
	if m := regexp.MustCompile(`requests sent during the rotation: (\d+)`).FindStringSubmatch(text); m == nil || m[1] == "0" {
		t.Fatalf("no requests during the rotation: %v", m)
	}
	checkNoSecret(t, dir, text)
}

// `mcbn demo --tprf`: evaluate-only daemons with window 1..1; traffic on
// epoch 1; the server's epoch 2 pending until the participants raise
// their window; then epoch 2 on the server, then the client, with no
// failed request; revocation still takes the network down; the audit
// logs hold partial evaluations for epoch 2 and not one share release
// (Run checks these; the test reads the audit logs again itself).
func TestDemoRunsWithTPRF(t *testing.T) {
	dir := t.TempDir()
	text := runVariant(t, Options{Dir: dir, TPRF: true})
	inOrder(t, text,
		"evaluate-only", "epochs [1, 2], the client [1]",
		"threshold PRF at epoch 1", "epoch 1 current, epoch 2 pending", "refused",
		"raise evaluate.max_epoch to 2", "epochs.current = 2",
		"Then the client", "client /status: epochs.current = 2",
		"failed: 0",
		"bob revokes", "carol revokes", "TCP: a new tunnel is refused", "bob grants", "ready again",
		"released partial evaluation of participant", "epoch 2",
		"no \"released share\" line anywhere",
		"no openssl line with --tprf", "(run 'mcbn demo --tprf --keep'", "Done in")
	var epoch2 int
	for _, p := range participants {
		c, err := readAudit(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		if c.shares != 0 {
			t.Errorf("%s released its share %d times in --tprf", p, c.shares)
		}
		epoch2 += c.partials[tprfNext]
	}
	if epoch2 == 0 {
		t.Error("no partial evaluation for epoch 2 in any audit log")
	}
	checkNoSecret(t, dir, text)
}

// `mcbn demo --tee mock-tsm`: the whole default story with raw TEE
// evidence from the mock-tsm directory instead of the dev attester's
// tokens: no dev attester runs, every daemon verifies the mock reports
// itself, consent still opens and closes the network, and every release
// in the audit logs went to mock-tsm evidence.
func TestDemoRunsWithMockTSM(t *testing.T) {
	dir := t.TempDir()
	text := runVariant(t, Options{Dir: dir, TEE: TEEMockTSM})
	inOrder(t, text,
		"mock-tsm directory", "measurement "+demoMeasurement[:16],
		"three shareholders", "own TEE evidence (mock-tsm)",
		"TCP: GET /consent", "UDP: 3 datagrams",
		"other code on the same hardware", "every participant refuses it", "policy_denied",
		"bob revokes", "bob refused", "carol revokes", "TCP: a new tunnel is refused", "bob grants", "ready again",
		"released to: "+kindMock, "every release went to a proxy presenting mock-tsm evidence",
		"(run 'mcbn demo --tee mock-tsm --keep'", "Done in")
	if strings.Contains(text, "dev attester") {
		t.Error("--tee mock-tsm started the dev attester")
	}
	releases := 0
	for _, p := range participants {
		c, err := readAudit(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		releases += c.shares
		if c.shares > 0 && (len(c.kinds) != 1 || !c.kinds[kindMock]) {
			t.Errorf("%s released to %v", p, c.kinds)
		}
	}
	if releases == 0 {
		t.Error("no release in any audit log")
	}
	checkNoSecret(t, dir, text)
}

// `mcbn demo --rotate --keep`: the network stays up on epoch 8, and what
// the printed openssl line does (identity Client_identity/8, the key
// 'mcbn psk combine --epoch 8' gives) opens a connection to the printed
// server proxy address.
func TestDemoRotateKeepHandTry(t *testing.T) {
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tried := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Out: &out, Keep: true, Rotate: true, OnKeep: func(in Info) {
			if in.Epoch != rotateTo {
				tried <- fmt.Errorf("Info.Epoch is %d, want %d", in.Epoch, rotateTo)
			} else {
				tried <- byHand(ctx, in.Dir, in.ServerTLS, in.Epoch)
			}
			cancel()
		}})
	}()
	select {
	case err := <-done:
		t.Fatalf("demo ended before keeping: %v\n%s", err, out.String())
	case err := <-tried:
		if err != nil {
			t.Fatalf("by-hand connection on epoch 8: %v\n%s", err, out.String())
		}
	case <-time.After(120 * time.Second):
		t.Fatalf("demo did not reach --keep:\n%s", out.String())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo after Ctrl-C: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop after cancel")
	}
	if !strings.Contains(out.String(), "-psk_identity Client_identity/8 -psk \"$(mcbn psk combine --group ") {
		t.Fatalf("the openssl line does not name epoch 8:\n%s", out.String())
	}
}
