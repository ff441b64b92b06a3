// Package demo runs mcbn's local walkthrough: everything a newcomer needs to
// see the product work, on one machine, with no external service and nothing
// left behind. It prints each step in plain words and never prints a secret.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mcbn/mcbn/psk"
)

// Options controls a demo run.
type Options struct {
	Out io.Writer // where the narration goes
	Dir string    // working directory for generated files; "" = a temporary one, removed at the end
}

// Run runs the walkthrough and returns the first step that did not turn out
// as expected.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = io.Discard
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
	say := func(format string, a ...any) { fmt.Fprintf(o.Out, format+"\n", a...) }

	say("== Key setup: a 2-of-3 group for alice, bob and carol")
	g, shares, err := psk.Split("demo", 2, []string{"alice", "bob", "carol"}, nil)
	if err != nil {
		return fmt.Errorf("split: %w", err)
	}
	if err := psk.WriteGroup(filepath.Join(dir, "group.json"), g); err != nil {
		return err
	}
	for _, s := range shares {
		if err := psk.WriteShare(filepath.Join(dir, s.Participant+".share.json"), s); err != nil {
			return err
		}
	}
	say("   group %s: threshold %d of %d; each share written 0600 in %s", g.ID[:16], g.Threshold, g.N(), dir)

	say("== Every pair of participants yields the same PSK")
	var first []byte
	pairs := [][2]int{{0, 1}, {0, 2}, {1, 2}}
	for _, p := range pairs {
		a, b := shares[p[0]], shares[p[1]]
		secret, err := psk.Combine(g, []*psk.Share{a, b})
		if err != nil {
			return fmt.Errorf("combine %s+%s: %w", a.Participant, b.Participant, err)
		}
		key, err := psk.DerivePSK(secret, g.ID, psk.DefaultIdentity, 0, 0)
		psk.Wipe(secret)
		if err != nil {
			return err
		}
		if first == nil {
			first = key
		} else if !bytes.Equal(first, key) {
			return errors.New("two pairs of shares gave different PSKs")
		}
		say("   %s + %s: PSK derived (same as the others; not shown)", a.Participant, b.Participant)
	}
	psk.Wipe(first)

	say("== One share alone is not consent")
	if _, err := psk.Combine(g, shares[:1]); err == nil {
		return errors.New("a single share reconstructed the secret")
	} else {
		say("   alice alone: refused (%v)", err)
	}

	say("== A corrupted share is named, the others still reach the threshold")
	bad := *shares[2]
	bad.Value = append([]byte(nil), bad.Value...)
	bad.Value[0] ^= 1
	secret, badErrs, err := psk.CombineValid(g, []*psk.Share{shares[0], &bad, shares[1]})
	if err != nil {
		return fmt.Errorf("combine with one bad share: %w", err)
	}
	psk.Wipe(secret)
	for _, e := range badErrs {
		say("   set aside: %v", e)
	}
	say("done: try 'mcbn psk split --help' and docs/key-derivation.md")
	return ctx.Err()
}
