package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcbn/mcbn/psk/dkg"
)

// The psk dkg command group: the dealer-free ceremony over files. Logic
// lives in package psk/dkg; this file parses flags, reads and writes files
// and prints. Nothing here prints secret material.

func newDkgCmd() *cobra.Command {
	return group("dkg", "create a T-of-N group with no dealer: a key generation ceremony over files",
		`mcbn psk dkg creates a T-of-N group like 'mcbn psk split', but with no dealer:
each participant deals a random sharing of its own to the others, and the group
secret is the sum, which nobody ever holds. It runs as three steps in which
participants exchange public files by any channel (mail, a repository):

  init    each participant: private state (0600) and a public NAME.pub.json
  deal    each participant, with everyone's pub files: NAME.round1.json
  finish  each participant, with everyone's round1 files: group.json and
          NAME.share.json, the same formats as 'mcbn psk split' writes

Compare the ceremony id (printed by deal) and the group id (printed by finish)
with every participant by a channel you trust. See docs/dkg.md.`,
		`  # alice's side of a 2-of-3 ceremony
  $ mcbn psk dkg init --group team --threshold 2 --participants alice,bob,carol --me alice
  $ mcbn psk dkg deal --state alice.dkg.json alice.pub.json bob.pub.json carol.pub.json
  $ mcbn psk dkg finish --state alice.dkg.json bob.round1.json carol.round1.json`,
		newDkgInitCmd(),
		newDkgDealCmd(),
		newDkgFinishCmd(),
	)
}

const dkgInitLong = `Starts this participant's side of a ceremony. Every participant runs it with
the same --group, --threshold and --participants (the list order gives the
share indices, as in 'mcbn psk split'). Draws this participant's random
polynomial, an HPKE (X25519) key and an Ed25519 signing key, and writes:

  DIR/NAME.dkg.json  the private state (mode 0600): keep it, send it nowhere
  DIR/NAME.pub.json  public: send it to every other participant

Refuses to overwrite either file.`

func newDkgInitCmd() *cobra.Command {
	c := leaf("init --group NAME --threshold T --participants A,B,C... --me NAME [--dir DIR]",
		"start a ceremony: private state and a public pub file", dkgInitLong,
		"  $ mcbn psk dkg init --group demo --threshold 2 --participants alice,bob,carol --me alice", noArgs)
	fs := c.Flags()
	name := fs.String("group", "", "group `NAME`")
	threshold := fs.Int("threshold", 0, "shares needed to reconstruct (`T`)")
	parts := fs.String("participants", "", "comma-separated participant names, in index order (`A,B,C...`)")
	me := fs.String("me", "", "this participant's `NAME`")
	dir := fs.String("dir", ".", "output `DIR` (created if missing)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runDkgInit(*name, *threshold, *parts, *me, *dir, c.OutOrStdout())
	}
	return c
}

func runDkgInit(name string, threshold int, parts, me, dir string, stdout io.Writer) error {
	if name == "" || threshold == 0 || parts == "" || me == "" {
		return usagef("--group, --threshold, --participants and --me are required")
	}
	names := strings.Split(parts, ",")
	for i := range names {
		names[i] = strings.TrimSpace(names[i])
	}
	st, pub, err := dkg.Init(dkg.Params{Group: name, Threshold: threshold, Participants: names}, me, nil)
	if err != nil {
		return err
	}
	defer st.Wipe()
	statePath := filepath.Join(dir, me+".dkg.json")
	pubPath := filepath.Join(dir, me+".pub.json")
	if err := refuseExisting(statePath, pubPath); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := dkg.WriteState(statePath, st); err != nil {
		return err
	}
	if err := dkg.WritePub(pubPath, pub); err != nil {
		os.Remove(statePath)
		return err
	}
	fmt.Fprintf(stdout, "ceremony for group %s: %d-of-%d, participants %s; you are %s (index %d)\n", st.Group, st.Threshold, st.N(), strings.Join(st.Participants, ","), st.Me, st.Index(st.Me))
	fmt.Fprintf(stdout, "wrote %s (secret, mode 0600: keep it, send it nowhere)\n", statePath)
	fmt.Fprintf(stdout, "wrote %s (public: send it to %s)\n", pubPath, strings.Join(others(st.Participants, st.Me), ", "))
	fmt.Fprintf(stdout, "pub fingerprint %s\n", hex.EncodeToString(pub.Fingerprint()))
	return nil
}

const dkgDealLong = `Round 1. Give every participant's pub file, your own included. Checks that
they are exactly one per participant, all for the same group, threshold and
participant list, and that yours is unchanged; computes the ceremony id (a
digest of all pub files), records it in the state, and writes FILE (default
NAME.round1.json beside the state): your Feldman commitments and one sub-share
per participant, each sealed with HPKE to that participant's key and bound to
the ceremony, the round, you and the recipient; the whole file is signed.
Send it to every participant. Compare the printed ceremony id with everyone.

Running deal again with the same pub files writes a new round 1 with the same
commitments (e.g. if a file was lost); with other pub files it is refused.`

func newDkgDealCmd() *cobra.Command {
	c := leaf("deal --state NAME.dkg.json [--out FILE] PUB.json...",
		"round 1: commitments and sub-shares sealed to each participant", dkgDealLong,
		"  $ mcbn psk dkg deal --state alice.dkg.json alice.pub.json bob.pub.json carol.pub.json", cobra.ArbitraryArgs)
	fs := c.Flags()
	statePath := fs.String("state", "", "this participant's state `FILE`")
	out := fs.String("out", "", "round 1 output `FILE` (default NAME.round1.json beside the state)")
	c.RunE = func(c *cobra.Command, files []string) error {
		return runDkgDeal(*statePath, *out, files, c.OutOrStdout())
	}
	return c
}

func runDkgDeal(statePath, out string, files []string, stdout io.Writer) error {
	if statePath == "" || len(files) == 0 {
		return usagef("--state and every participant's pub file are required")
	}
	st, err := dkg.LoadState(statePath)
	if err != nil {
		return err
	}
	defer st.Wipe()
	var pubs []*dkg.Pub
	for _, f := range files {
		p, err := dkg.LoadPub(f)
		if err != nil {
			return err
		}
		pubs = append(pubs, p)
	}
	outPath := out
	if outPath == "" {
		outPath = filepath.Join(filepath.Dir(statePath), st.Me+".round1.json")
	}
	if err := refuseExisting(outPath); err != nil {
		return err
	}
	r, err := dkg.Deal(st, pubs)
	if err != nil {
		return err
	}
	if err := dkg.SaveState(statePath, st); err != nil {
		return fmt.Errorf("%s: recording the ceremony: %v", statePath, err)
	}
	if err := dkg.WriteRound1(outPath, r); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ceremony %s\n", hex.EncodeToString(st.Ceremony))
	for _, p := range st.Pubs {
		fmt.Fprintf(stdout, "  pub of %-12s %s\n", p.Participant, hex.EncodeToString(p.Fingerprint()))
	}
	fmt.Fprintf(stdout, "recorded the ceremony in %s\n", statePath)
	fmt.Fprintf(stdout, "wrote %s (public: send it to %s)\n", outPath, strings.Join(others(st.Participants, st.Me), ", "))
	fmt.Fprintf(stdout, "compare the ceremony id with every participant by a channel you trust\n")
	return nil
}

const dkgFinishLong = `Give every participant's round 1 file (yours may be included; it is not
needed). For each dealer, checks the signature, that the commitments are the
ones its pub file committed to, and that the sub-share sealed to you decrypts
and passes the Feldman check. Then writes DIR/group.json and DIR/NAME.share.json
(default DIR: beside the state), in exactly the formats of 'mcbn psk split',
and prints the group id: compare it with every participant by a channel you
trust before using the group. Then delete the state file.

If any dealer's round 1 is missing or wrong, nothing is written: the ceremony
aborts and the error names every such participant and why. If at least T
dealers would remain, the others may agree to leave those dealers out: every
participant then runs finish again with the same --exclude list. The group is
still T-of-N among all N participants (an excluded dealer keeps its index and
receives a share); only its contribution to the secret is left out. Different
--exclude lists give different group ids, which the comparison reveals.`

func newDkgFinishCmd() *cobra.Command {
	c := leaf("finish --state NAME.dkg.json [--exclude A,B] [--out DIR] ROUND1.json...",
		"verify what was sent to you; write group.json and your share", dkgFinishLong,
		"  $ mcbn psk dkg finish --state alice.dkg.json bob.round1.json carol.round1.json", cobra.ArbitraryArgs)
	fs := c.Flags()
	statePath := fs.String("state", "", "this participant's state `FILE`")
	exclude := fs.String("exclude", "", "comma-separated dealers to leave out, agreed by every participant (`A,B`)")
	out := fs.String("out", "", "output `DIR` (default: the state's directory)")
	c.RunE = func(c *cobra.Command, files []string) error {
		return runDkgFinish(*statePath, *exclude, *out, files, c.OutOrStdout())
	}
	return c
}

func runDkgFinish(statePath, exclude, out string, files []string, stdout io.Writer) error {
	if statePath == "" || len(files) == 0 {
		return usagef("--state and the round 1 files are required")
	}
	excl := splitNames(exclude)
	st, err := dkg.LoadState(statePath)
	if err != nil {
		return err
	}
	defer st.Wipe()
	var rounds []*dkg.Round1
	for _, f := range files {
		r, err := dkg.LoadRound1(f)
		if err != nil {
			return err
		}
		rounds = append(rounds, r)
	}
	dir := out
	if dir == "" {
		dir = filepath.Dir(statePath)
	}
	groupPath := filepath.Join(dir, "group.json")
	sharePath := filepath.Join(dir, st.Me+".share.json")
	if err := refuseExisting(groupPath, sharePath); err != nil {
		return err
	}
	res, err := dkg.Finish(st, rounds, excl)
	if err != nil {
		return explainAbort(err, excl, "every participant")
	}
	defer res.Share.Wipe()
	if err := writeCeremonyResult(dir, groupPath, sharePath, res.Group, res.Share); err != nil {
		return err
	}
	g := res.Group
	if len(res.Excluded) == 0 {
		fmt.Fprintf(stdout, "ceremony complete: all %d dealers contributed\n", g.N())
	} else {
		fmt.Fprintf(stdout, "ceremony complete WITHOUT dealer(s) %s (excluded by agreement): their contribution is left out;\n", strings.Join(res.Excluded, ", "))
		fmt.Fprintf(stdout, "the group is still %d-of-%d among all participants (%s each keep an index and a share)\n", g.Threshold, g.N(), strings.Join(res.Excluded, ", "))
	}
	fmt.Fprintf(stdout, "group %s: %d-of-%d %s, id %s\n", g.Name, g.Threshold, g.N(), g.Scheme, g.ID)
	fmt.Fprintf(stdout, "wrote %s (public)\n", groupPath)
	fmt.Fprintf(stdout, "wrote %s (secret, mode 0600: participant %d %s)\n", sharePath, res.Share.Index, res.Share.Participant)
	fmt.Fprintf(stdout, "compare the group id with every participant by a channel you trust, then delete %s\n", statePath)
	return nil
}

// refuseExisting fails if any of the paths exists, before anything is written.
func refuseExisting(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s: already exists, refusing to overwrite", p)
		}
	}
	return nil
}

func others(names []string, me string) []string {
	var out []string
	for _, n := range names {
		if n != me {
			out = append(out, n)
		}
	}
	return out
}
