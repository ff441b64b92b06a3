package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// The image's creation time is part of its digest, so everyone who builds a
// commit must arrive at the same value by the same rule:
//
//  1. --epoch SECONDS, when given;
//  2. else $SOURCE_DATE_EPOCH (reproducible-builds.org), when set;
//  3. else the commit time of HEAD (git log -1 --format=%ct), in a git
//     checkout;
//  4. else the value recorded in build/image/source-date-epoch, which git
//     fills with the commit time when it exports an archive (export-subst
//     in .gitattributes): a `git archive` tarball has no .git but carries it;
//  5. else an error. There is no silent fallback: a guessed time gives a
//     digest nobody else can reproduce.
//
// When the flag or the variable disagrees with the commit time of a clean
// checkout, a warning says so: the result is valid but will not match what
// a participant rebuilding the commit by this rule gets.

const epochFile = "build/image/source-date-epoch"

// epochSource is how the creation time was found, for the log.
type epochSource string

func resolveEpoch(flagValue int64, root string) (int64, epochSource, string, error) {
	commit, commitErr := gitCommitTime(root)
	warn := func(v int64) string {
		if commitErr == nil && v != commit {
			return fmt.Sprintf("the creation time %d is not the commit time %d: a participant who rebuilds this commit by the documented rule gets another digest", v, commit)
		}
		return ""
	}
	if flagValue >= 0 {
		return flagValue, "--epoch", warn(flagValue), nil
	}
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return 0, "", "", fmt.Errorf("SOURCE_DATE_EPOCH=%q: want Unix seconds", v)
		}
		return n, "SOURCE_DATE_EPOCH", warn(n), nil
	}
	if commitErr == nil {
		return commit, "git commit time", "", nil
	}
	b, err := os.ReadFile(filepath.Join(root, epochFile))
	if err == nil {
		s := strings.TrimSpace(string(b))
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
			return n, epochSource(epochFile + " (git archive)"), "", nil
		}
	}
	return 0, "", "", fmt.Errorf("no creation time: not a git checkout (%v) and %s was not filled by git archive; set SOURCE_DATE_EPOCH to the commit time (git log -1 --format=%%ct) or pass --epoch", commitErr, epochFile)
}

// gitCommitTime is HEAD's committer time in the checkout at root.
func gitCommitTime(root string) (int64, error) {
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		return 0, fmt.Errorf("no .git in %s", root)
	}
	cmd := exec.Command("git", "log", "-1", "--format=%ct")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("git log: %v", err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}
