package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcbn/mcbn/psk"
)

// The psk command group: key ceremonies and PSK derivation. Logic lives in
// package psk; this file only parses flags, reads and writes files, and
// prints. Only combine and legacy-concat print secret material (a PSK), and
// only on success.

func newPskCmd() *cobra.Command {
	return group("psk", "split, verify and combine threshold key material into a TLS PSK",
		`mcbn psk manages the key material of a group of participants whose consent
opens the tunnel: a t-of-n Shamir sharing with Feldman commitments (split), or
a contributory n-of-n group where each participant makes its own key
(contribute). combine verifies shares or keys, reconstructs the group secret
and prints the PSK (HKDF-SHA256) as hex for 'openssl -psk'.`,
		`  # a 2-of-3 group
  $ mcbn psk split --group demo --threshold 2 --participants alice,bob,carol --out keys
  $ mcbn psk combine --group keys/group.json keys/alice.share.json keys/carol.share.json`,
		newPskSplitCmd(),
		newPskVerifyCmd(),
		newPskCombineCmd(),
		newPskContributeCmd(),
		newPskLegacyCmd(),
		newPskInspectCmd(),
		newPskSealCmd(),
		newDkgCmd(),
		newReshareCmd(),
	)
}

const pskSplitLong = `Deals a fresh random group secret as a T-of-N Shamir sharing over ristretto255
with Feldman commitments (2 <= T <= N <= 255). Writes the public descriptor
DIR/group.json (0644) and one secret share per participant,
DIR/<participant>.share.json (0600). Refuses to overwrite any of them; on
failure nothing is left behind. Give each participant only its own share file.`

func newPskSplitCmd() *cobra.Command {
	c := leaf("split --group NAME --threshold T --participants A,B,C... [--out DIR]",
		"deal a T-of-N Shamir sharing: group.json and one 0600 share file each", pskSplitLong,
		"  $ mcbn psk split --group demo --threshold 2 --participants alice,bob,carol --out keys", noArgs)
	fs := c.Flags()
	name := fs.String("group", "", "group `NAME`")
	threshold := fs.Int("threshold", 0, "shares needed to reconstruct (`T`)")
	parts := fs.String("participants", "", "comma-separated participant names, in index order (`A,B,C...`)")
	out := fs.String("out", ".", "output `DIR` (created if missing)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runSplit(*name, *threshold, *parts, *out, c.OutOrStdout())
	}
	return c
}

func runSplit(name string, threshold int, parts, out string, stdout io.Writer) error {
	if name == "" || threshold == 0 || parts == "" {
		return usagef("--group, --threshold and --participants are required")
	}
	names := strings.Split(parts, ",")
	for i := range names {
		names[i] = strings.TrimSpace(names[i])
	}
	g, shares, err := psk.Split(name, threshold, names, nil)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range shares {
			s.Wipe()
		}
	}()
	groupPath := filepath.Join(out, "group.json")
	targets := []string{groupPath}
	for _, s := range shares {
		targets = append(targets, sharePath(out, s.Participant))
	}
	for _, t := range targets {
		if _, err := os.Lstat(t); err == nil {
			return fmt.Errorf("%s: already exists, refusing to overwrite", t)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var written []string
	cleanup := func() {
		for _, w := range written {
			os.Remove(w)
		}
	}
	if err := psk.WriteGroup(groupPath, g); err != nil {
		return err
	}
	written = append(written, groupPath)
	for _, s := range shares {
		p := sharePath(out, s.Participant)
		if err := psk.WriteShare(p, s); err != nil {
			cleanup()
			return err
		}
		written = append(written, p)
	}
	fmt.Fprintf(stdout, "group %s: %d-of-%d %s, id %s\n", g.Name, g.Threshold, g.N(), g.Scheme, g.ID)
	fmt.Fprintf(stdout, "wrote %s (public)\n", groupPath)
	for _, s := range shares {
		fmt.Fprintf(stdout, "wrote %s (secret, mode 0600: give it to %s only)\n", sharePath(out, s.Participant), s.Participant)
	}
	return nil
}

func sharePath(dir, participant string) string {
	return filepath.Join(dir, participant+".share.json")
}

const pskVerifyLong = `Checks each share file against the group's Feldman commitments (or each
contributory key file against its commitment) without reconstructing
anything. Prints one "ok" line per file when all pass; otherwise exits 1 with
one line naming every bad file and participant. Prints no secret.`

func newPskVerifyCmd() *cobra.Command {
	c := leaf("verify --group group.json FILE...", "check share or key files against a group descriptor (Feldman)", pskVerifyLong,
		`  $ mcbn psk verify --group keys/group.json keys/bob.share.json
  keys/bob.share.json: ok, participant 2 bob`, cobra.ArbitraryArgs)
	groupFile := c.Flags().String("group", "", "group descriptor `FILE`")
	c.RunE = func(c *cobra.Command, files []string) error {
		return runVerify(*groupFile, files, c.OutOrStdout())
	}
	return c
}

func runVerify(groupFile string, files []string, stdout io.Writer) error {
	if groupFile == "" || len(files) == 0 {
		return usagef("--group and at least one share or key file are required")
	}
	g, err := psk.LoadGroup(groupFile)
	if err != nil {
		return err
	}
	m, err := loadMaterial(g, files)
	if err != nil {
		return err
	}
	defer m.wipe()
	var bad []string
	for _, e := range m.errs {
		if e != nil {
			bad = append(bad, e.Error())
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	for i, f := range files {
		fmt.Fprintf(stdout, "%s: ok, participant %d %s\n", f, m.index[i], m.names[i])
	}
	return nil
}

// material is what loadMaterial read: shares or keys, one per file, with a
// per-file verification error (already prefixed by the file name).
type material struct {
	shares []*psk.Share
	keys   []*psk.ContribKey
	errs   []error
	index  []int
	names  []string
}

func (m *material) wipe() {
	for _, s := range m.shares {
		s.Wipe()
	}
	for _, k := range m.keys {
		k.Wipe()
	}
}

// loadMaterial loads every file (a load error aborts: unreadable, malformed
// or world-readable), then verifies each against g, recording per-file errors
// including duplicates.
func loadMaterial(g *psk.Group, files []string) (*material, error) {
	m := &material{errs: make([]error, len(files)), index: make([]int, len(files)), names: make([]string, len(files))}
	seen := map[int]string{}
	for i, f := range files {
		s, k, err := psk.LoadShareOrKey(f)
		if err != nil {
			m.wipe()
			return nil, err
		}
		var verr error
		switch {
		case s != nil && g.Scheme == psk.SchemeShamir:
			m.shares = append(m.shares, s)
			m.index[i], m.names[i] = s.Index, s.Participant
			verr = psk.VerifyShare(g, s)
		case k != nil && g.Scheme == psk.SchemeContributory:
			m.keys = append(m.keys, k)
			m.names[i] = k.Participant
			if p := g.ParticipantByName(k.Participant); p != nil {
				m.index[i] = p.Index
			}
			verr = psk.VerifyKey(g, k)
		case s != nil:
			s.Wipe()
			verr = fmt.Errorf("is a share file, but group %q is %s", g.Name, g.Scheme)
		default:
			k.Wipe()
			verr = fmt.Errorf("is a contributory key file, but group %q is %s", g.Name, g.Scheme)
		}
		if verr == nil {
			if prev, dup := seen[m.index[i]]; dup {
				verr = fmt.Errorf("duplicate of %s (participant %d %s)", prev, m.index[i], m.names[i])
			} else {
				seen[m.index[i]] = f
			}
		}
		if verr != nil {
			m.errs[i] = fmt.Errorf("%s: %v", f, verr)
		}
	}
	return m, nil
}

const pskCombineLong = `Verifies the share files (Shamir group: at least T of them) or the key files
(contributory group: all N), reconstructs the group secret, derives the PSK
with HKDF-SHA256 bound to the group id, the PSK identity and the epoch, and
prints it as lowercase hex on one line, ready for 'openssl -psk'. On any
error nothing is printed on standard output and the error names every bad
file and participant. The identity defaults to OpenSSL's "Client_identity".

--create is for contributory groups: it builds group.json from the N key
files given (participants ordered by name), writes it (refusing to
overwrite) and prints the PSK. Later runs check keys against it.`

const pskCombineExample = `  $ mcbn psk combine --group keys/group.json keys/alice.share.json keys/carol.share.json
  $ openssl s_server -nocert -accept 8081 -tls1_3 \
      -psk "$(mcbn psk combine --group keys/group.json keys/alice.share.json keys/bob.share.json)"
  $ mcbn psk combine --group team.json --create alice.key.json bob.key.json carol.key.json`

type combineFlags struct {
	groupFile, identity string
	epoch               uint64
	length              int
	create              bool
}

func newPskCombineCmd() *cobra.Command {
	c := leaf(`combine --group group.json [--identity ID] [--epoch N] [--length L] FILE...
  mcbn psk combine --group group.json --create KEY.json...`,
		"verify, reconstruct and print the PSK as hex for openssl -psk", pskCombineLong, pskCombineExample, cobra.ArbitraryArgs)
	var f combineFlags
	fs := c.Flags()
	fs.StringVar(&f.groupFile, "group", "", "group descriptor `FILE`")
	fs.StringVar(&f.identity, "identity", psk.DefaultIdentity, "PSK `ID` the key is derived for (as given to openssl -psk_identity)")
	fs.Uint64Var(&f.epoch, "epoch", 0, "key rotation epoch `N`")
	fs.IntVar(&f.length, "length", psk.DefaultPSKLength, "PSK length in bytes, `L` from 16 to 64")
	fs.BoolVar(&f.create, "create", false, "contributory: build and write the group descriptor from the key files")
	c.RunE = func(c *cobra.Command, files []string) error {
		return runCombine(f, files, c.OutOrStdout())
	}
	return c
}

func runCombine(f combineFlags, files []string, stdout io.Writer) error {
	if f.groupFile == "" || len(files) == 0 {
		return usagef("--group and at least one share or key file are required")
	}
	var (
		g   *psk.Group
		err error
	)
	if f.create {
		if g, err = contributoryGroupFromKeys(files); err != nil {
			return err
		}
	} else if g, err = psk.LoadGroup(f.groupFile); err != nil {
		return err
	}
	m, err := loadMaterial(g, files)
	if err != nil {
		return err
	}
	defer m.wipe()
	var bad []string
	for _, e := range m.errs {
		if e != nil {
			bad = append(bad, e.Error())
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	var secret []byte
	if g.Scheme == psk.SchemeShamir {
		secret, err = psk.Combine(g, m.shares)
	} else {
		secret, err = psk.CombineKeys(g, m.keys)
	}
	if err != nil {
		return err
	}
	defer psk.Wipe(secret)
	key, err := psk.DerivePSK(secret, g.KeyID(), f.identity, f.epoch, f.length)
	if err != nil {
		return err
	}
	defer psk.Wipe(key)
	if f.create {
		if err := psk.WriteGroup(f.groupFile, g); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintln(stdout, hex.EncodeToString(key))
	return err
}

// contributoryGroupFromKeys builds a contributory descriptor from key files,
// which must all name the same group.
func contributoryGroupFromKeys(files []string) (*psk.Group, error) {
	var members []psk.Member
	name := ""
	for _, f := range files {
		s, k, err := psk.LoadShareOrKey(f)
		if err != nil {
			return nil, err
		}
		if s != nil {
			s.Wipe()
			return nil, fmt.Errorf("%s: --create needs contributory key files, this is a share file", f)
		}
		if name == "" {
			name = k.Group
		} else if k.Group != name {
			k.Wipe()
			return nil, fmt.Errorf("%s: key of group %q, but %s is of group %q", f, k.Group, files[0], name)
		}
		members = append(members, psk.Member{Name: k.Participant, Commitment: k.Commitment()})
		k.Wipe()
	}
	return psk.NewContributoryGroup(name, members)
}

const pskContributeLong = `Generates this participant's random 32-byte key for a contributory n-of-n
group and writes it to FILE (default <participant>.key.json, mode 0600,
never overwritten). Prints the key's public commitment. All N participants'
keys are needed to derive the PSK; see 'mcbn psk combine --create'.`

func newPskContributeCmd() *cobra.Command {
	c := leaf("contribute --group NAME --participant NAME [--out FILE]",
		"generate this participant's key of a contributory n-of-n group", pskContributeLong,
		`  $ mcbn psk contribute --group team --participant alice
  wrote alice.key.json (group team, participant alice, commitment 3f1c...)`, noArgs)
	fs := c.Flags()
	name := fs.String("group", "", "group `NAME`")
	participant := fs.String("participant", "", "this participant's `NAME`")
	out := fs.String("out", "", "output `FILE` (default <participant>.key.json)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runContribute(*name, *participant, *out, c.OutOrStdout())
	}
	return c
}

func runContribute(name, participant, out string, stdout io.Writer) error {
	if name == "" || participant == "" {
		return usagef("--group and --participant are required")
	}
	k, err := psk.NewContribKey(name, participant, nil)
	if err != nil {
		return err
	}
	defer k.Wipe()
	file := out
	if file == "" {
		file = participant + ".key.json"
	}
	if err := psk.WriteContribKey(file, k); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (group %s, participant %s, commitment %s)\n", file, k.Group, k.Participant, k.Commitment())
	return nil
}

const pskLegacyLong = `Reproduces the original mcbn demo's key derivation exactly: the lowercase hex
SHA-256 of the participants' hex keys concatenated as strings, in the order
given and as typed. It is weak (no threshold, no domain separation); use it
only to check a migration from the demo.

The demo's OpenSSL walkthrough then fed the digest's ASCII text, not its bytes,
to 'openssl -psk' (PSK_HEX=$(echo -n $PSK | xxd -p -c 64)). With --ascii this
command prints that form: the hex encoding of the 64 ASCII characters, the key
a peer of such a demo deployment really uses.`

const pskLegacyExample = `  $ mcbn psk legacy-concat \
      2c6f63f8c0f53a565db041b91c0a95add8913fc102670589db3982228dbfed90 \
      b15244faf36e5e4b178d3891701d245f2e45e881d913b6c35c0ea0ac14224cc2 \
      3e2078d5cd04beabfa4a7a1486bc626d679184df2e0a2b9942d913d4b835516c
  6d1bbd1e6235c9d9ec8cdbdf9b32d4d08304a7f305f7c6c67775130d914f4dc4`

func newPskLegacyCmd() *cobra.Command {
	c := leaf("legacy-concat [--ascii] HEX HEX...", "the original demo's derivation: sha256 over the hex keys",
		pskLegacyLong, pskLegacyExample, cobra.ArbitraryArgs)
	ascii := c.Flags().Bool("ascii", false, "print hex of the digest's ASCII text (the demo's 'xxd -p' PSK) instead of the digest")
	c.RunE = func(c *cobra.Command, keys []string) error {
		return runLegacy(*ascii, keys, c.OutOrStdout())
	}
	return c
}

func runLegacy(ascii bool, keys []string, stdout io.Writer) error {
	if len(keys) == 0 {
		return usagef("give the participants' hex keys")
	}
	out, err := psk.LegacyConcat(keys...)
	if err != nil {
		return err
	}
	if ascii {
		out = hex.EncodeToString([]byte(out))
	}
	_, err = fmt.Fprintln(stdout, out)
	return err
}

const pskInspectLong = `Prints the public facts of a group descriptor, share file or contributory key
file: group, scheme, threshold, participants, commitments. Never prints a
share value or key. Secret files must be mode 0600.`

func newPskInspectCmd() *cobra.Command {
	c := leaf("inspect FILE", "print the public facts of a group, share or key file", pskInspectLong,
		"  $ mcbn psk inspect keys/bob.share.json", exactArgs(1, "give exactly one file"))
	c.RunE = func(c *cobra.Command, args []string) error { return runInspect(args[0], c.OutOrStdout()) }
	return c
}

func runInspect(file string, stdout io.Writer) error {
	t, err := psk.FileTypeOf(file)
	if err != nil {
		return err
	}
	var b strings.Builder
	switch t {
	case psk.TypeGroup:
		g, err := psk.LoadGroup(file)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "file:         %s (group descriptor, version %d)\n", file, g.Version)
		fmt.Fprintf(&b, "group:        %s\nid:           %s\nscheme:       %s\n", g.Name, g.ID, g.Scheme)
		if g.InheritedKeyID != "" {
			fmt.Fprintf(&b, "key id:       %s (inherited by resharing: PSKs are derived with it)\n", g.InheritedKeyID)
		}
		fmt.Fprintf(&b, "threshold:    %d of %d\n", g.Threshold, g.N())
		for _, p := range g.Participants {
			fmt.Fprintf(&b, "participant:  %d %s", p.Index, p.Name)
			if p.Commitment != "" {
				fmt.Fprintf(&b, " (key commitment %s)", p.Commitment)
			}
			b.WriteString("\n")
		}
		for i, cm := range g.Commitments {
			fmt.Fprintf(&b, "commitment:   a%d·G %s\n", i, cm)
		}
	default:
		s, k, err := psk.LoadShareOrKey(file)
		if err != nil {
			return err
		}
		if s != nil {
			defer s.Wipe()
			fmt.Fprintf(&b, "file:         %s (share, version %d)\n", file, psk.ShareVersion)
			fmt.Fprintf(&b, "group id:     %s\nparticipant:  %d %s\nvalue:        (secret, not shown)\n", s.GroupID, s.Index, s.Participant)
		} else {
			defer k.Wipe()
			fmt.Fprintf(&b, "file:         %s (contributory key, version %d)\n", file, psk.KeyVersion)
			fmt.Fprintf(&b, "group:        %s\nparticipant:  %s\ncommitment:   %s\nkey:          (secret, not shown)\n", k.Group, k.Participant, k.Commitment())
		}
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}
