package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/reshare"
)

// The psk reshare command group: move a group's secret to new participants
// or a new threshold, or refresh every share, over files. Logic lives in
// package psk/reshare; this file parses flags, reads and writes files and
// prints. Nothing here prints secret material.

func newReshareCmd() *cobra.Command {
	return group("reshare", "move a group's secret to new participants or threshold, or refresh its shares",
		`mcbn psk reshare moves the secret of a T-of-N group to new participants and a
new threshold T'-of-N' (or, with the same people and threshold, re-randomizes
every share: a proactive refresh) without anyone holding the secret. The new
group derives the same PSKs as the old one. Files go between people by any
channel (mail, a repository):

  keygen  each new participant: NAME.reshare-key.json (0600), NAME.reshare-pub.json
  init    anyone, with the old group.json and the new participants' pub files:
          the public params file (reshare id, dealers, T', new participants)
  deal    each old holder listed as dealer, with its share: NAME.deal.json
  finish  each new participant, with everyone's deals: group.json, NAME.share.json

Compare the reshare id (printed by init, deal and finish) and the new group id
(printed by finish) with every participant by a channel you trust. Then every
old holder deletes its old share. See docs/key-lifecycle.md.`,
		`  # 2-of-3 (alice,bob,carol) -> 3-of-5 (+dave,erin)
  $ mcbn psk reshare keygen --me dave          # each new participant
  $ mcbn psk reshare init --old group.json --threshold 3 --participants alice,bob,carol,dave,erin \
      --out reshare.json alice.reshare-pub.json bob.reshare-pub.json ...
  $ mcbn psk reshare deal --params reshare.json --share alice.share.json    # each dealer
  $ mcbn psk reshare finish --params reshare.json --key dave.reshare-key.json alice.deal.json bob.deal.json carol.deal.json`,
		newReshareKeygenCmd(),
		newReshareInitCmd(),
		newReshareDealCmd(),
		newReshareFinishCmd(),
	)
}

const reshareKeygenLong = `Run by each new participant (old holders who stay are new participants too).
Makes an HPKE (X25519) key pair for one ceremony and writes:

  DIR/NAME.reshare-key.json  private (mode 0600): keep it, send it nowhere
  DIR/NAME.reshare-pub.json  public: send it to whoever runs init

Refuses to overwrite either file.`

func newReshareKeygenCmd() *cobra.Command {
	c := leaf("keygen --me NAME [--dir DIR]", "a new participant's key pair for the ceremony", reshareKeygenLong,
		"  $ mcbn psk reshare keygen --me dave --dir dave", noArgs)
	fs := c.Flags()
	me := fs.String("me", "", "this new participant's `NAME`")
	dir := fs.String("dir", ".", "output `DIR` (created if missing)")
	c.RunE = func(c *cobra.Command, _ []string) error { return runReshareKeygen(*me, *dir, c.OutOrStdout()) }
	return c
}

func runReshareKeygen(me, dir string, stdout io.Writer) error {
	if me == "" {
		return usagef("--me is required")
	}
	k, pub, err := reshare.NewKey(me, nil)
	if err != nil {
		return err
	}
	defer k.Wipe()
	keyPath := filepath.Join(dir, me+".reshare-key.json")
	pubPath := filepath.Join(dir, me+".reshare-pub.json")
	if err := refuseExisting(keyPath, pubPath); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := reshare.WriteKey(keyPath, k); err != nil {
		return err
	}
	if err := reshare.WritePub(pubPath, pub); err != nil {
		os.Remove(keyPath)
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (secret, mode 0600: keep it, send it nowhere)\n", keyPath)
	fmt.Fprintf(stdout, "wrote %s (public: send it to whoever runs 'mcbn psk reshare init')\n", pubPath)
	fmt.Fprintf(stdout, "hpke key %s\n", hex.EncodeToString(pub.HPKEKey))
	return nil
}

const reshareInitLong = `Prepares a ceremony from public files only; anyone may run it. Give the old
group descriptor, the new threshold and participants (in new index order), and
every new participant's pub file. --dealers names the old holders who will
deal (at least the old threshold of them, default every old holder): finish
needs a valid deal from each, so list only holders who are available. With
--refresh the new participants and threshold are the old ones (a proactive
refresh: same secret, same people, every share re-randomized).

Writes FILE (default reshare.json), the public params: the old group, the
dealers, T', the new participants and their keys, and a random nonce; its
digest is the reshare id. Send it to every dealer and new participant, and
have everyone compare the reshare id by a channel they trust: a false params
file could seal new shares to someone else's key.`

func newReshareInitCmd() *cobra.Command {
	c := leaf("init --old GROUP.json (--threshold T --participants A,B,C... | --refresh) [--dealers A,B] [--out FILE] PUB.json...",
		"write the public params of a reshare or refresh ceremony", reshareInitLong,
		"  $ mcbn psk reshare init --old group.json --threshold 3 --participants alice,bob,carol,dave,erin *.reshare-pub.json", cobra.ArbitraryArgs)
	fs := c.Flags()
	old := fs.String("old", "", "the old group descriptor `FILE`")
	threshold := fs.Int("threshold", 0, "new threshold (`T'`)")
	parts := fs.String("participants", "", "comma-separated new participants, in new index order (`A,B,C...`)")
	refresh := fs.Bool("refresh", false, "keep the old participants and threshold (proactive refresh)")
	dealers := fs.String("dealers", "", "comma-separated old holders who deal (`A,B`; default: all)")
	out := fs.String("out", "reshare.json", "params output `FILE`")
	c.RunE = func(c *cobra.Command, files []string) error {
		return runReshareInit(*old, *threshold, *parts, *refresh, *dealers, *out, files, c.OutOrStdout())
	}
	return c
}

func runReshareInit(oldPath string, threshold int, parts string, refresh bool, dealers, out string, files []string, stdout io.Writer) error {
	if oldPath == "" || len(files) == 0 {
		return usagef("--old and every new participant's pub file are required")
	}
	if refresh == (parts != "") || (!refresh && threshold == 0) {
		return usagef("give either --threshold and --participants, or --refresh")
	}
	old, err := psk.LoadGroup(oldPath)
	if err != nil {
		return err
	}
	names := splitNames(parts)
	if refresh {
		if threshold != 0 && threshold != old.Threshold {
			return usagef("--refresh keeps the threshold %d; to change it, give --participants too", old.Threshold)
		}
		threshold = old.Threshold
		for _, p := range old.Participants {
			names = append(names, p.Name)
		}
	}
	var pubs []*reshare.Pub
	for _, f := range files {
		p, err := reshare.LoadPub(f)
		if err != nil {
			return err
		}
		pubs = append(pubs, p)
	}
	if err := refuseExisting(out); err != nil {
		return err
	}
	p, err := reshare.NewParams(old, splitNames(dealers), threshold, names, pubs, nil)
	if err != nil {
		return err
	}
	if err := reshare.WriteParams(out, p); err != nil {
		return err
	}
	kind := "reshare"
	if p.Refresh() {
		kind = "refresh"
	}
	fmt.Fprintf(stdout, "reshare id %s\n", hex.EncodeToString(p.ID()))
	fmt.Fprintf(stdout, "%s of group %s (%d-of-%d, id %s) to %d-of-%d: %s\n", kind, old.Name, old.Threshold, old.N(), old.ID, p.Threshold, p.N(), strings.Join(p.Names(), ","))
	fmt.Fprintf(stdout, "dealers (each must deal): %s\n", strings.Join(p.Dealers, ","))
	fmt.Fprintf(stdout, "wrote %s (public: send it to every dealer and new participant)\n", out)
	fmt.Fprintf(stdout, "everyone compares the reshare id by a channel they trust\n")
	return nil
}

const reshareDealLong = `Run by each old holder listed as a dealer in the params, with its share of
the old group. Checks the share against the old group the params embed, draws
a random polynomial of degree T'-1 whose constant term is the share, and
writes FILE (default NAME.deal.json beside the share): its Feldman
commitments, one sub-share per new participant sealed with HPKE to that
participant's key and bound to the ceremony, and a proof that the deal was
made by the holder of this share. Send the same file to every new
participant. Compare the printed reshare id with everyone first.

Dealing twice makes a different deal: send only one of them.`

func newReshareDealCmd() *cobra.Command {
	c := leaf("deal --params FILE --share NAME.share.json [--out FILE]",
		"an old holder's deal: sub-shares of its share sealed to each new participant", reshareDealLong,
		"  $ mcbn psk reshare deal --params reshare.json --share alice.share.json", noArgs)
	fs := c.Flags()
	params := fs.String("params", "", "the ceremony's params `FILE`")
	share := fs.String("share", "", "this old holder's share `FILE`")
	out := fs.String("out", "", "deal output `FILE` (default NAME.deal.json beside the share)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runReshareDeal(*params, *share, *out, c.OutOrStdout())
	}
	return c
}

func runReshareDeal(paramsPath, sharePath, out string, stdout io.Writer) error {
	if paramsPath == "" || sharePath == "" {
		return usagef("--params and --share are required")
	}
	p, err := reshare.LoadParams(paramsPath)
	if err != nil {
		return err
	}
	s, err := psk.LoadShare(sharePath)
	if err != nil {
		return err
	}
	defer s.Wipe()
	outPath := out
	if outPath == "" {
		outPath = filepath.Join(filepath.Dir(sharePath), s.Participant+".deal.json")
	}
	if err := refuseExisting(outPath); err != nil {
		return err
	}
	d, err := reshare.MakeDeal(p, s, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", sharePath, err)
	}
	if err := reshare.WriteDeal(outPath, d); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reshare id %s\n", hex.EncodeToString(p.ID()))
	fmt.Fprintf(stdout, "dealt %s's share of group %s (id %s) to %d-of-%d: %s\n", s.Participant, p.Old.Name, p.Old.ID, p.Threshold, p.N(), strings.Join(p.Names(), ","))
	fmt.Fprintf(stdout, "wrote %s (public: send the same file to %s)\n", outPath, strings.Join(p.Names(), ", "))
	fmt.Fprintf(stdout, "once every new participant has confirmed the new group id, delete %s\n", sharePath)
	return nil
}

const reshareFinishLong = `Run by each new participant with its key file and the deal of every dealer
the params list. For each deal, checks that it is for this ceremony, the
dealer's proof, that its constant-term commitment is the dealer's public
share in the old group (so it dealt its real share), and that the sub-share
sealed to you decrypts and passes the Feldman check. Then combines the
sub-shares with the Lagrange coefficients of the dealers and writes
DIR/group.json and DIR/NAME.share.json (default DIR: beside the key file), in
the formats of 'mcbn psk split'. The new group keeps the old group's constant
commitment (the secret is unchanged) and its key id (the same PSKs).

If any dealer's deal is missing or wrong, nothing is written and the error
names every such dealer and why. If at least the old threshold of dealers
would remain, the new participants may agree to leave those out: every one
runs finish again with the same --exclude list. Different lists give
different group ids, which the comparison reveals. Afterwards compare the
group id with every new participant, then delete the key file; the old
holders delete their old shares.`

func newReshareFinishCmd() *cobra.Command {
	c := leaf("finish --params FILE --key NAME.reshare-key.json [--exclude A,B] [--out DIR] DEAL.json...",
		"verify the deals sent to you; write the new group.json and your new share", reshareFinishLong,
		"  $ mcbn psk reshare finish --params reshare.json --key dave.reshare-key.json alice.deal.json bob.deal.json carol.deal.json", cobra.ArbitraryArgs)
	fs := c.Flags()
	params := fs.String("params", "", "the ceremony's params `FILE`")
	key := fs.String("key", "", "this new participant's key `FILE`")
	exclude := fs.String("exclude", "", "comma-separated dealers to leave out, agreed by every new participant (`A,B`)")
	out := fs.String("out", "", "output `DIR` (default: the key file's directory)")
	c.RunE = func(c *cobra.Command, files []string) error {
		return runReshareFinish(*params, *key, *exclude, *out, files, c.OutOrStdout())
	}
	return c
}

func runReshareFinish(paramsPath, keyPath, exclude, out string, files []string, stdout io.Writer) error {
	if paramsPath == "" || keyPath == "" || len(files) == 0 {
		return usagef("--params, --key and the deal files are required")
	}
	excl := splitNames(exclude)
	p, err := reshare.LoadParams(paramsPath)
	if err != nil {
		return err
	}
	k, err := reshare.LoadKey(keyPath)
	if err != nil {
		return err
	}
	defer k.Wipe()
	var deals []*reshare.Deal
	for _, f := range files {
		d, err := reshare.LoadDeal(f)
		if err != nil {
			return err
		}
		deals = append(deals, d)
	}
	dir := out
	if dir == "" {
		dir = filepath.Dir(keyPath)
	}
	groupPath := filepath.Join(dir, "group.json")
	sharePath := filepath.Join(dir, k.Participant+".share.json")
	if err := refuseExisting(groupPath, sharePath); err != nil {
		return fmt.Errorf("%v (the old group's files? choose another directory with --out)", err)
	}
	res, err := reshare.Finish(p, k, deals, excl)
	if err != nil {
		return explainAbort(err, excl, "every new participant")
	}
	defer res.Share.Wipe()
	if err := writeCeremonyResult(dir, groupPath, sharePath, res.Group, res.Share); err != nil {
		return err
	}
	g := res.Group
	kind := "reshare"
	if p.Refresh() {
		kind = "refresh"
	}
	fmt.Fprintf(stdout, "reshare id %s\n", hex.EncodeToString(p.ID()))
	if len(res.Excluded) == 0 {
		fmt.Fprintf(stdout, "%s complete: dealers %s\n", kind, strings.Join(res.Dealers, ","))
	} else {
		fmt.Fprintf(stdout, "%s complete WITHOUT dealer(s) %s (excluded by agreement): dealers %s\n", kind, strings.Join(res.Excluded, ", "), strings.Join(res.Dealers, ","))
	}
	fmt.Fprintf(stdout, "group %s: %d-of-%d %s, id %s\n", g.Name, g.Threshold, g.N(), g.Scheme, g.ID)
	fmt.Fprintf(stdout, "key id %s (the old group's: the same secret, the same PSKs)\n", g.KeyID())
	fmt.Fprintf(stdout, "wrote %s (public)\n", groupPath)
	fmt.Fprintf(stdout, "wrote %s (secret, mode 0600: participant %d %s)\n", sharePath, res.Share.Index, res.Share.Participant)
	fmt.Fprintf(stdout, "compare the group id with every new participant by a channel you trust, then delete %s;\n", keyPath)
	fmt.Fprintf(stdout, "old holders then delete their old shares (old group %s)\n", p.Old.ID)
	return nil
}
