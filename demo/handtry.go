package demo

import (
	"path/filepath"
	"strconv"
	"strings"
)

// printHandTry prints the openssl line a person can run against the server
// proxy. The PSK is not printable in the real product: no component ever
// holds all shares. The demo can offer it only because it plays every
// participant and its key directory holds every share; the command substitution keeps
// the key off the screen. mcbn is how to run mcbn from a shell ("" is
// "mcbn"): after 'go run' no mcbn need be on PATH. flags are the demo's
// own flags (--dkg, --kms), repeated in the --keep hint so that it runs
// the same demo.
func (n *narrator) printHandTry(in Info, keep bool, mcbn string, flags ...string) {
	for _, l := range handTryLines(in, keep, mcbn, flags...) {
		n.say("%s", l)
	}
}

// handTryLines are the lines printHandTry prints.
func handTryLines(in Info, keep bool, mcbn string, flags ...string) []string {
	if mcbn == "" {
		mcbn = "mcbn"
	}
	combine := mcbn + " psk combine --group " + filepath.Join(in.Dir, "group.json") + " "
	id := in.Identity
	if in.Epoch != 0 {
		// With epochs the identity on the wire carries the epoch, and the
		// key is derived for it.
		e := strconv.FormatUint(in.Epoch, 10)
		id += "/" + e
		combine += "--epoch " + e + " "
	}
	combine += filepath.Join(in.Dir, "alice.share.json") + " " + filepath.Join(in.Dir, "bob.share.json")
	lines := []string{
		"== Try it by hand",
		"   curl http://" + in.ClientHTTP + "/   # through the client proxy",
	}
	if in.TPRF {
		lines = append(lines,
			"   There is no openssl line with --tprf: each epoch's key is combined from partial evaluations",
			"   inside the proxies, and no share ever left a daemon, so no command can give it by hand.")
	} else {
		lines = append(lines,
			"   openssl s_client -tls1_3 -psk_identity "+id+" -psk \"$("+combine+")\" -connect "+in.ServerTLS,
			"   The key comes from the demo's own key directory, which exists only because the demo",
			"   plays every participant; in a real deployment no one holds two shares and the key never leaves the proxies.")
	}
	if !keep {
		demo := strings.Join(append(append([]string{mcbn, "demo"}, flags...), "--keep"), " ")
		lines = append(lines, "   (run '"+demo+"' to keep the network up while you try these lines)")
	}
	return lines
}
