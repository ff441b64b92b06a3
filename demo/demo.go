// Package demo runs mcbn's local walkthrough: the whole consent network on
// one machine, with no external service and nothing left behind.
//
// It starts, in this process and on loopback ports chosen by the system, the
// dev attester (standing in for Confidential Space), three shareholder
// daemons for alice, bob and carol (2-of-3), a server proxy in front of a
// built-in HTTP and UDP echo backend, and a client proxy. Then it shows what
// consent means: traffic flows over TCP and UDP, still flows when one
// participant revokes, stops for new tunnels when a second revokes, and comes
// back by itself when one grants again.
//
// Why in-process rather than subprocesses: the demo must work from
// `go run ./cmd/mcbn demo` on a fresh machine with no binary installed, clean
// up everything on Ctrl-C, and let its test observe each step's outcome. The
// packages it drives are the same the real daemons run.
//
// With Options.KMS (`mcbn demo --kms`), carol is a Cloud KMS participant
// instead of a daemon: her share is sealed under her key in local fakes of
// STS and Cloud KMS (package kms/kmsfake), the proxies exchange their
// attestation token for access and decrypt it, and she withdraws consent by
// disabling the key version that sealed it.
//
// With Options.Rotate (`--rotate`) the proxies are started from config
// files whose TCP route lists key epochs, and the route rotates from epoch
// 7 to 8 under continuous traffic (rotate.go). With Options.TPRF (`--tprf`)
// the daemons answer threshold PRF partial evaluations only and epoch 2
// opens when they consent to it (tprf.go). With Options.TEE "mock-tsm"
// (`--tee mock-tsm`) the proxies present raw TEE evidence from a mock
// configfs-tsm directory instead of the dev attester's tokens (tee.go).
// Options.Check lists the combinations that are refused.
//
// Every step checks its outcome and Run returns an error when one is wrong,
// so the demo doubles as an end-to-end test. It never prints a share or the
// PSK; the one place a key can be obtained is the demo's own key directory,
// which exists only because the demo plays every participant.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// Options controls a demo run.
type Options struct {
	Out  io.Writer    // where the narration goes (nil: discarded)
	Log  *slog.Logger // the daemons' logs (nil: discarded)
	Dir  string       // key and config directory; "" = a temporary one, removed at the end
	Keep bool         // after the steps, keep everything running until ctx ends
	// DKG makes the group with the dealer-free ceremony (psk/dkg) instead
	// of a dealer's split: each participant deals a sharing of its own
	// random secret and nobody, the demo included, ever holds the sum.
	DKG bool
	// KMS makes carol a Cloud KMS participant instead of a daemon: her
	// share is sealed under her key in local STS/KMS fakes, the proxies
	// unseal it with their attestation, and she withdraws consent by
	// disabling the key version.
	KMS bool
	// Rotate adds the key rotation story (`mcbn demo --rotate`): the TCP
	// route's key moves from epoch 7 to epoch 8, servers first, while a
	// request loop and one long-lived connection run (rotate.go).
	Rotate bool
	// TPRF makes the daemons answer with threshold PRF partial
	// evaluations only (`mcbn demo --tprf`): no share ever leaves them,
	// and the participants admit epoch 2 while traffic flows (tprf.go).
	TPRF bool
	// TEE is the proxies' evidence: "dev" (default: the dev attester's
	// tokens) or "mock-tsm" (raw TEE evidence from a configfs-tsm
	// lookalike, verified by each shareholder itself; tee.go).
	TEE string

	// Refresh is how often the proxies gather shares again (default
	// 200ms, so each consent change shows within a second).
	Refresh time.Duration
	// OnKeep, when set, is called once everything is kept running (tests).
	OnKeep func(Info)
	// Command is how a person runs mcbn from a shell, for the lines printed
	// to try by hand: "mcbn" (the default), "go run ./cmd/mcbn", or the
	// full path of a binary.
	Command string
}

// Info describes a running demo network.
type Info struct {
	Dir        string // where group.json and the shares are
	ServerTLS  string // the server proxy's TLS-PSK address
	ServerDTLS string // the server proxy's DTLS-PSK address
	ClientHTTP string // the client proxy's plain TCP address (HTTP)
	ClientUDP  string // the client proxy's plain UDP address
	Identity   string // the PSK identity
	// Epoch is the TCP route's key epoch after --rotate (0: no epochs):
	// the identity on the wire is then Identity/Epoch.
	Epoch uint64
	// TPRF: the key is a threshold PRF evaluation no command gives by hand.
	TPRF        bool
	Shareholder map[string]string
}

// stepTimeout bounds each wait for a consent change to show.
const stepTimeout = 15 * time.Second

// Run runs the walkthrough and returns the first step whose outcome is not
// the expected one. Cancelling ctx (Ctrl-C) stops it and cleans up.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Refresh <= 0 {
		o.Refresh = 200 * time.Millisecond
	}
	if err := o.Check(); err != nil {
		return err
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "mcbn-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	n := &narrator{w: o.Out, start: time.Now()}

	setup := setupKeys
	if o.DKG {
		setup = setupKeysDKG
	}
	keys, err := setup(n, dir)
	if err != nil {
		return err
	}
	net, err := startNetwork(ctx, n, dir, keys, o)
	defer net.close(n)
	if err != nil {
		return err
	}
	if err := consentSteps(ctx, n, net); err != nil {
		return err
	}
	if err := auditStep(n, net); err != nil {
		return err
	}
	n.printHandTry(net.info(dir), o.Keep, o.Command, o.flags()...)
	if !o.Keep {
		n.say("== Done in %s. Everything is stopped and removed on the way out.", n.elapsed())
		return nil
	}
	n.say("== Kept running (--keep). Press Ctrl-C to stop and clean up.")
	if o.OnKeep != nil {
		o.OnKeep(net.info(dir))
	}
	<-ctx.Done()
	n.say("== Stopping.")
	return nil
}

// narrator prints the steps in plain words.
type narrator struct {
	w     io.Writer
	start time.Time
}

func (n *narrator) say(format string, a ...any) { fmt.Fprintf(n.w, format+"\n", a...) }

func (n *narrator) elapsed() time.Duration { return time.Since(n.start).Round(100 * time.Millisecond) }
