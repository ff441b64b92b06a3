package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dkgCLI runs one ceremony step in-process and fails the test on error.
func dkgCLI(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := pskRunCLI(args...)
	if code != 0 || errs != "" {
		t.Fatalf("%v: exit %d: %s", args, code, errs)
	}
	return out
}

// dkgSetup runs init and deal for alice, bob and carol, each in a directory
// of its own, and returns the directories.
func dkgSetup(t *testing.T) map[string]string {
	t.Helper()
	root := t.TempDir()
	names := []string{"alice", "bob", "carol"}
	dirs := map[string]string{}
	var pubs []string
	for _, n := range names {
		dirs[n] = filepath.Join(root, n)
		out := dkgCLI(t, "psk", "dkg", "init", "--group", "demo", "--threshold", "2", "--participants", "alice,bob,carol", "--me", n, "--dir", dirs[n])
		if !strings.Contains(out, "mode 0600") || !strings.Contains(out, "pub fingerprint ") {
			t.Errorf("init output: %q", out)
		}
		pubs = append(pubs, filepath.Join(dirs[n], n+".pub.json"))
	}
	var ceremony string
	for _, n := range names {
		out := dkgCLI(t, append([]string{"psk", "dkg", "deal", "--state", filepath.Join(dirs[n], n+".dkg.json")}, pubs...)...)
		line := strings.SplitN(out, "\n", 2)[0]
		if ceremony == "" {
			ceremony = line
		} else if line != ceremony {
			t.Errorf("%s sees %q, alice %q", n, line, ceremony)
		}
	}
	return dirs
}

func dkgRounds(dirs map[string]string, names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, filepath.Join(dirs[n], n+".round1.json"))
	}
	return out
}

// Three people create a 2-of-3 group by exchanging files; the groups are
// byte-identical and 'mcbn psk combine' takes any two shares.
func TestDkgCLIWalkthrough(t *testing.T) {
	dirs := dkgSetup(t)
	rounds := dkgRounds(dirs, "alice", "bob", "carol")
	var group []byte
	var outputs strings.Builder
	for _, n := range []string{"alice", "bob", "carol"} {
		out := dkgCLI(t, append([]string{"psk", "dkg", "finish", "--state", filepath.Join(dirs[n], n+".dkg.json")}, rounds...)...)
		outputs.WriteString(out)
		if !strings.Contains(out, "ceremony complete: all 3 dealers contributed") {
			t.Errorf("finish output: %q", out)
		}
		g, err := os.ReadFile(filepath.Join(dirs[n], "group.json"))
		if err != nil {
			t.Fatal(err)
		}
		if group == nil {
			group = g
		} else if !bytes.Equal(g, group) {
			t.Fatalf("%s's group.json differs", n)
		}
		for file, mode := range map[string]os.FileMode{n + ".dkg.json": 0o600, n + ".share.json": 0o600, "group.json": 0o644} {
			fi, err := os.Stat(filepath.Join(dirs[n], file))
			if err != nil || fi.Mode().Perm() != mode {
				t.Errorf("%s: %v %v, want %04o", file, fi.Mode(), err, mode)
			}
		}
	}
	// Collect shares in one place, as the proxy would, and combine by CLI.
	keys := t.TempDir()
	os.WriteFile(filepath.Join(keys, "group.json"), group, 0o644)
	for _, n := range []string{"alice", "bob", "carol"} {
		b, err := os.ReadFile(filepath.Join(dirs[n], n+".share.json"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(keys, n+".share.json"), b, 0o600)
		// No command printed a share value.
		v := regexp.MustCompile(`"value": "([0-9a-f]{64})"`).FindSubmatch(b)
		if v == nil || strings.Contains(outputs.String(), string(v[1])) {
			t.Errorf("%s's share value missing or printed", n)
		}
	}
	first := pskCombine(t, keys, nil, "alice", "bob")
	for _, pair := range [][]string{{"bob", "carol"}, {"carol", "alice"}} {
		if got := pskCombine(t, keys, nil, pair...); got != first {
			t.Errorf("%v gives %q, want %q", pair, got, first)
		}
	}
	code, out, _ := pskRunCLI("psk", "combine", "--group", filepath.Join(keys, "group.json"), filepath.Join(keys, "bob.share.json"))
	if code == 0 || out != "" {
		t.Errorf("one share combined: exit %d %q", code, out)
	}
	code, out, _ = pskRunCLI("psk", "verify", "--group", filepath.Join(keys, "group.json"), filepath.Join(keys, "carol.share.json"))
	if code != 0 || !strings.Contains(out, "ok, participant 3 carol") {
		t.Errorf("verify: exit %d %q", code, out)
	}
}

// A missing round 1 aborts naming the participant and the --exclude way
// out; everyone excluding carol completes the same group, carol included.
func TestDkgCLIAbortAndExclude(t *testing.T) {
	dirs := dkgSetup(t)
	state := func(n string) string { return filepath.Join(dirs[n], n+".dkg.json") }
	code, out, errs := pskRunCLI(append([]string{"psk", "dkg", "finish", "--state", state("alice")}, dkgRounds(dirs, "bob")...)...)
	if code != 1 || out != "" || !strings.Contains(errs, "carol: no round 1 file received") || !strings.Contains(errs, "--exclude carol") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dirs["alice"], "group.json")); err == nil {
		t.Error("an aborted finish wrote group.json")
	}
	var group []byte
	for _, n := range []string{"alice", "bob", "carol"} {
		out := dkgCLI(t, append([]string{"psk", "dkg", "finish", "--state", state(n), "--exclude", "carol"}, dkgRounds(dirs, "alice", "bob")...)...)
		if !strings.Contains(out, "WITHOUT dealer(s) carol") || !strings.Contains(out, "still 2-of-3") {
			t.Errorf("finish output: %q", out)
		}
		g, _ := os.ReadFile(filepath.Join(dirs[n], "group.json"))
		if group == nil {
			group = g
		} else if !bytes.Equal(g, group) {
			t.Fatalf("%s's group.json differs", n)
		}
	}
	keys := t.TempDir()
	os.WriteFile(filepath.Join(keys, "group.json"), group, 0o644)
	for _, n := range []string{"alice", "carol"} {
		b, _ := os.ReadFile(filepath.Join(dirs[n], n+".share.json"))
		os.WriteFile(filepath.Join(keys, n+".share.json"), b, 0o600)
	}
	pskCombine(t, keys, nil, "alice", "carol")
}

// The CLI refuses: a readable state, a pub file given as a round 1, usage
// mistakes, and overwriting.
func TestDkgCLIRefusals(t *testing.T) {
	dirs := dkgSetup(t)
	alice := filepath.Join(dirs["alice"], "alice.dkg.json")
	rounds := dkgRounds(dirs, "alice", "bob", "carol")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"psk", "dkg", "finish", "--state", alice, filepath.Join(dirs["bob"], "bob.pub.json")}, 1, `bob.pub.json: type is "mcbn-dkg-pub", want "mcbn-dkg-round1"`},
		{[]string{"psk", "dkg", "finish", rounds[0]}, 2, "--state and the round 1 files are required"},
		{[]string{"psk", "dkg", "init", "--group", "demo"}, 2, "are required"},
		{[]string{"psk", "dkg", "init", "--group", "demo", "--threshold", "2", "--participants", "alice,bob,carol", "--me", "alice", "--dir", dirs["alice"]}, 1, "already exists, refusing to overwrite"},
		{[]string{"psk", "dkg", "deal", "--state", alice, filepath.Join(dirs["alice"], "alice.pub.json")}, 1, "already exists"},
		{[]string{"psk", "dkg", "finish", "--state", alice, "--exclude", "bob,carol", rounds[0]}, 1, "fewer than the threshold 2"},
	} {
		code, _, errs := pskRunCLI(c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d %q, want %d and %q", c.args, code, errs, c.code, c.want)
		}
	}
	if err := os.Chmod(alice, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := pskRunCLI(append([]string{"psk", "dkg", "finish", "--state", alice}, rounds...)...)
	if code != 1 || !strings.Contains(errs, "chmod 600") {
		t.Errorf("readable state: exit %d %q", code, errs)
	}
	code, out, _ := pskRunCLI("psk", "dkg", "--help")
	if code != 0 || !strings.Contains(out, "finish") || !strings.Contains(out, "no dealer") {
		t.Errorf("help: %d %q", code, out)
	}
}
