package demo

import "path/filepath"

// printHandTry prints the openssl line a person can run against the server
// proxy. The PSK is not printable in the real product: no component ever
// holds all shares. The demo can offer it only because it plays every
// participant and its key directory holds every share; the command substitution keeps
// the key off the screen.
func (n *narrator) printHandTry(in Info, keep bool) {
	n.say("== Try it by hand")
	combine := "mcbn psk combine --group " + filepath.Join(in.Dir, "group.json") + " " +
		filepath.Join(in.Dir, "alice.share.json") + " " + filepath.Join(in.Dir, "bob.share.json")
	n.say("   curl http://%s/   # through the client proxy", in.ClientHTTP)
	n.say("   openssl s_client -tls1_3 -psk_identity %s -psk \"$(%s)\" -connect %s", in.Identity, combine, in.ServerTLS)
	n.say("   The key comes from the demo's own key directory, which exists only because the demo")
	n.say("   plays every participant; in a real deployment no one holds two shares and the key never leaves the proxies.")
	if !keep {
		n.say("   (run 'mcbn demo --keep' to keep the network up while you try these lines)")
	}
}
