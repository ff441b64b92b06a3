package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/dkg"
)

// explainAbort adds to a ceremony's AbortError the --exclude rerun that
// every participant (who) must agree on; other errors pass unchanged.
func explainAbort(err error, excl []string, who string) error {
	var ab *dkg.AbortError
	if errors.As(err, &ab) && ab.CanExclude {
		return fmt.Errorf("%v; to do so, %s runs finish again with --exclude %s", err, who, strings.Join(append(excl, ab.Names()...), ","))
	}
	return err
}

// writeCeremonyResult writes what a ceremony's finish produced: the group
// descriptor, then the share (0600). A failed share write removes the
// group file, so a rerun does not trip over a half result.
func writeCeremonyResult(dir, groupPath, sharePath string, g *psk.Group, s *psk.Share) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := psk.WriteGroup(groupPath, g); err != nil {
		return err
	}
	if err := psk.WriteShare(sharePath, s); err != nil {
		os.Remove(groupPath)
		return err
	}
	return nil
}

// splitNames splits a comma-separated list of participant names.
func splitNames(s string) []string {
	if s == "" {
		return nil
	}
	out := strings.Split(s, ",")
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}
