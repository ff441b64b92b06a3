package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mcbn/mcbn/demo"
)

const demoLong = `Starts, in this process and on loopback ports, the dev attester, three
shareholders (alice, bob, carol; 2-of-3), a server proxy in front of a
built-in HTTP and UDP echo app, and a client proxy. Then it sends an HTTP
request and UDP datagrams through the tunnel, revokes one consent (traffic
still flows), revokes a second (new tunnels are refused), and grants again
(the network comes back by itself). Each step is printed as it happens and
checked; the command fails if a step's outcome is wrong. No share or key is
ever printed. It takes a few seconds.

--dkg makes the group with the dealer-free ceremony of 'mcbn psk dkg' instead
of a dealer's split: nobody ever holds the group secret.

--kms makes carol a Cloud KMS participant instead of a daemon: local fakes of
STS and Cloud KMS stand in for Google's, carol's share is sealed under her key
(decrypt granted only to attested proxies of the demo image), and she
withdraws consent by disabling the key version, then enables it again.

--rotate adds a key rotation while traffic flows: the HTTP route's key moves
from epoch 7 to epoch 8 (the PSK identity on the wire is Client_identity/7,
then Client_identity/8). The server proxy's config lists 7 and 8 and is
reloaded first, then the client's, then both drop 7; a client app sends a
request every 10 ms and one long-lived connection stays open. It prints the
requests sent and failed (0), shows the long-lived connection still answering,
and that Client_identity/7 is refused afterwards even with its right key.

--tprf makes the daemons evaluate-only: they never release a share, they
answer threshold PRF partial evaluations for the epochs their config admits
(1..1 at first). Traffic flows on epoch 1, the server proxy's epoch 2 stays
pending until the participants raise evaluate.max_epoch to 2; then the server,
then the client, move to epoch 2 with no failed request. The audit logs show
partial evaluations for epoch 2 and no share release.

--tee mock-tsm runs everything with raw TEE evidence from a mock configfs-tsm
directory (a test key, a fake chain) instead of the dev attester's tokens:
each daemon verifies the evidence itself, under a TEST-ONLY mock policy.

Refused combinations: --rotate with --tprf (--tprf already changes epoch), and
--kms with --rotate, --tprf or --tee mock-tsm.

The demo plays every participant, so its key directory holds every share;
that is the only reason it can show an openssl line that works against its
server proxy. With --keep the network stays up until Ctrl-C so you can try it.
Ctrl-C stops everything; a temporary directory is removed (not --dir).

The lines it prints to try by hand run mcbn the way it was started: 'mcbn'
when that is this program on PATH, 'go run ./cmd/mcbn' after go run, else the
full path of this program.`

func newDemoCmd() *cobra.Command {
	c := leaf("demo [--keep] [--dkg] [--kms] [--rotate] [--tprf] [--tee dev|mock-tsm] [--dir DIR] [--verbose]",
		"run the whole consent network on this machine and watch consent open and close it",
		demoLong,
		`  $ mcbn demo
  $ mcbn demo --dkg --keep
  $ mcbn demo --kms                 # carol seals her share with Cloud KMS (local fakes)
  $ mcbn demo --rotate              # rotate epoch 7 -> 8 while traffic flows
  $ mcbn demo --tprf --tee mock-tsm # partial evaluations only, raw (mock) TEE evidence
  $ go run ./cmd/mcbn demo          # from a checkout, nothing installed`, noArgs)
	fs := c.Flags()
	dir := fs.String("dir", "", "keep the key material and configs in `DIR` (must exist) instead of a temporary directory")
	keep := fs.Bool("keep", false, "keep the network running after the steps, until Ctrl-C")
	verbose := fs.Bool("verbose", false, "also print the daemons' logs on stderr")
	useDKG := fs.Bool("dkg", false, "make the group with the dealer-free ceremony (mcbn psk dkg) instead of a dealer's split")
	useKMS := fs.Bool("kms", false, "make carol a Cloud KMS participant (local STS/KMS fakes) instead of a daemon")
	rotate := fs.Bool("rotate", false, "rotate the HTTP route's key from epoch 7 to 8 while traffic flows")
	useTPRF := fs.Bool("tprf", false, "daemons release threshold PRF partial evaluations only, never a share; epoch 1 to 2 while traffic flows")
	tee := fs.String("tee", demo.TEEDev, "the proxies' attestation `KIND`: dev (dev attester tokens) or mock-tsm (raw TEE evidence from mock hardware)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		var log *slog.Logger
		if *verbose {
			log = slog.New(slog.NewTextHandler(c.ErrOrStderr(), nil))
		}
		if *dir != "" {
			if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
				return usagef("--dir %s: not an existing directory", *dir)
			}
		}
		o := demo.Options{Out: c.OutOrStdout(), Log: log, Dir: *dir, Keep: *keep, DKG: *useDKG, KMS: *useKMS,
			Rotate: *rotate, TPRF: *useTPRF, TEE: *tee, Command: selfCommand()}
		if err := o.Check(); err != nil {
			return usagef("%v", err)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return demo.Run(ctx, o)
	}
	return c
}

// selfCommand is how a person runs this very mcbn from a shell, for the
// lines the demo prints to try by hand.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "mcbn"
	}
	wd, _ := os.Getwd()
	pkg := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		pkg = bi.Path
	}
	return runnableCommand(exe, exec.LookPath, wd, pkg)
}

// runnableCommand chooses how to run the executable exe from a shell in
// directory wd: "mcbn" when that name on PATH is exe; under 'go run' (exe
// is in a go-build temporary directory, removed when go run ends) the go
// run line from wd: ./cmd/mcbn in a checkout, else the package path pkg;
// otherwise exe's absolute path, which works from any directory.
func runnableCommand(exe string, lookPath func(string) (string, error), wd, pkg string) string {
	if p, err := lookPath("mcbn"); err == nil && sameFile(p, exe) {
		return "mcbn"
	}
	if goRunBinary(exe) {
		if wd != "" {
			if st, err := os.Stat(filepath.Join(wd, "cmd", "mcbn")); err == nil && st.IsDir() {
				return "go run ./cmd/mcbn"
			}
		}
		if pkg == "" {
			pkg = "github.com/mcbn/mcbn/cmd/mcbn"
		}
		return "go run " + pkg
	}
	if !filepath.IsAbs(exe) && wd != "" {
		exe = filepath.Join(wd, exe)
	}
	return shellQuote(exe)
}

// goRunBinary reports whether exe is what 'go run' builds: DIR/exe/NAME
// under a go-build temporary directory.
func goRunBinary(exe string) bool {
	dir := filepath.Dir(exe)
	if filepath.Base(dir) != "exe" {
		return false
	}
	for d := filepath.Dir(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
		if strings.HasPrefix(filepath.Base(d), "go-build") {
			return true
		}
	}
	return false
}

func sameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}

// shellQuote quotes s for a POSIX shell when it holds anything but plain
// path characters.
func shellQuote(s string) string {
	plain := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,@%=", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
