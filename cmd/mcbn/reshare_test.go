package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// reshareCeremony is a resharing run through the CLI, each person in a
// directory of their own: old holders in root/old/NAME, new participants
// in root/new/NAME.
type reshareCeremony struct {
	root, oldKeys, params string
	outputs               strings.Builder
}

func (c *reshareCeremony) cli(t *testing.T, args ...string) string {
	t.Helper()
	out := dkgCLI(t, args...)
	c.outputs.WriteString(out)
	return out
}

func (c *reshareCeremony) oldDir(n string) string { return filepath.Join(c.root, "old", n) }
func (c *reshareCeremony) newDir(n string) string { return filepath.Join(c.root, "new", n) }

// reshareStart splits alice,bob,carol 2-of-3, hands each holder its share,
// runs keygen for each new participant and init with extra init flags.
func reshareStart(t *testing.T, newNames []string, initFlags ...string) *reshareCeremony {
	t.Helper()
	c := &reshareCeremony{root: t.TempDir(), oldKeys: pskSplitDemo(t)}
	for _, n := range []string{"alice", "bob", "carol"} {
		if err := os.MkdirAll(c.oldDir(n), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(c.oldKeys, n+".share.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.oldDir(n), n+".share.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var pubs []string
	for _, n := range newNames {
		out := c.cli(t, "psk", "reshare", "keygen", "--me", n, "--dir", c.newDir(n))
		if !strings.Contains(out, "mode 0600") {
			t.Errorf("keygen output %q", out)
		}
		pubs = append(pubs, filepath.Join(c.newDir(n), n+".reshare-pub.json"))
	}
	c.params = filepath.Join(c.root, "reshare.json")
	args := append([]string{"psk", "reshare", "init", "--old", filepath.Join(c.oldKeys, "group.json"), "--out", c.params}, initFlags...)
	out := c.cli(t, append(args, pubs...)...)
	if !strings.HasPrefix(out, "reshare id ") {
		t.Fatalf("init output %q", out)
	}
	return c
}

// deal runs deal for each named old holder and returns the deal files.
func (c *reshareCeremony) deal(t *testing.T, dealers ...string) []string {
	t.Helper()
	var files []string
	for _, n := range dealers {
		c.cli(t, "psk", "reshare", "deal", "--params", c.params, "--share", filepath.Join(c.oldDir(n), n+".share.json"))
		files = append(files, filepath.Join(c.oldDir(n), n+".deal.json"))
	}
	return files
}

// finishAll runs finish for every new participant, checks the group files
// are byte-identical and the modes right, and gathers the new group and
// shares into one directory (as a proxy would hold them).
func (c *reshareCeremony) finishAll(t *testing.T, newNames, deals []string, extra ...string) string {
	t.Helper()
	var group []byte
	keys := t.TempDir()
	for _, n := range newNames {
		args := append([]string{"psk", "reshare", "finish", "--params", c.params, "--key", filepath.Join(c.newDir(n), n+".reshare-key.json")}, extra...)
		out := c.cli(t, append(args, deals...)...)
		if !strings.Contains(out, "complete") || !strings.Contains(out, "the same PSKs") {
			t.Errorf("finish output %q", out)
		}
		g, err := os.ReadFile(filepath.Join(c.newDir(n), "group.json"))
		if err != nil {
			t.Fatal(err)
		}
		if group == nil {
			group = g
		} else if !bytes.Equal(group, g) {
			t.Fatalf("%s's group.json differs", n)
		}
		fi, err := os.Stat(filepath.Join(c.newDir(n), n+".share.json"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s's new share: %v %v", n, fi.Mode(), err)
		}
		b, _ := os.ReadFile(filepath.Join(c.newDir(n), n+".share.json"))
		os.WriteFile(filepath.Join(keys, n+".share.json"), b, 0o600)
	}
	os.WriteFile(filepath.Join(keys, "group.json"), group, 0o644)
	return keys
}

// noValuePrinted checks no share value of dir appears in any output.
func (c *reshareCeremony) noValuePrinted(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		b, _ := os.ReadFile(filepath.Join(dir, n+".share.json"))
		v := regexp.MustCompile(`"value": "([0-9a-f]{64})"`).FindSubmatch(b)
		if v == nil || strings.Contains(c.outputs.String(), string(v[1])) {
			t.Errorf("%s's share value missing or printed", n)
		}
	}
}

// mixedShare writes into dir a share file carrying participant n's value
// from oldDir but the group id of dir's group: an old share relabelled.
func mixedShare(t *testing.T, oldDir, dir, n string) {
	t.Helper()
	oldB, _ := os.ReadFile(filepath.Join(oldDir, n+".share.json"))
	newB, _ := os.ReadFile(filepath.Join(dir, n+".share.json"))
	id := regexp.MustCompile(`"group_id": "[0-9a-f]{64}"`)
	mixed := id.ReplaceAll(oldB, id.Find(newB))
	os.Remove(filepath.Join(dir, n+".share.json"))
	if err := os.WriteFile(filepath.Join(dir, n+".share.json"), mixed, 0o600); err != nil {
		t.Fatal(err)
	}
}

// 2-of-3 -> 3-of-5 through the CLI: every new participant writes the same
// group.json, any 3 new shares give the old PSK, 2 do not, and a mix of an
// old share with new ones is refused.
func TestReshareCLI2of3To3of5(t *testing.T) {
	newNames := []string{"alice", "bob", "carol", "dave", "erin"}
	c := reshareStart(t, newNames, "--threshold", "3", "--participants", strings.Join(newNames, ","))
	keys := c.finishAll(t, newNames, c.deal(t, "alice", "bob", "carol"))
	c.noValuePrinted(t, keys, newNames...)
	c.noValuePrinted(t, c.oldKeys, "alice", "bob", "carol")
	oldPSK := pskCombine(t, c.oldKeys, nil, "alice", "bob")
	for _, set := range [][]string{{"alice", "bob", "carol"}, {"carol", "dave", "erin"}, {"bob", "dave", "erin", "alice"}} {
		if got := pskCombine(t, keys, nil, set...); got != oldPSK {
			t.Errorf("new shares %v give PSK %q, the old %q", set, got, oldPSK)
		}
	}
	g, _ := os.ReadFile(filepath.Join(keys, "group.json"))
	if !bytes.Contains(g, []byte(`"threshold": 3`)) || bytes.Count(g, []byte(`"index"`)) != 5 || !bytes.Contains(g, []byte(`"key_id"`)) {
		t.Fatalf("new group.json:\n%s", g)
	}
	oldG, _ := os.ReadFile(filepath.Join(c.oldKeys, "group.json"))
	oldID := regexp.MustCompile(`"id": "([0-9a-f]{64})"`).FindSubmatch(oldG)
	code, out, errs := pskRunCLI("psk", "inspect", filepath.Join(keys, "group.json"))
	if code != 0 || oldID == nil || !strings.Contains(out, "key id:       "+string(oldID[1])) || !strings.Contains(out, "threshold:    3 of 5") {
		t.Errorf("inspect of the new group: exit %d %q %q", code, out, errs)
	}
	code, out, errs = pskRunCLI("psk", "combine", "--group", filepath.Join(keys, "group.json"), filepath.Join(keys, "dave.share.json"), filepath.Join(keys, "erin.share.json"))
	if code == 0 || out != "" || !strings.Contains(errs, "needs 3 shares") {
		t.Errorf("2 of 3 new shares: exit %d %q %q", code, out, errs)
	}
	// An old share beside new ones: refused as another group's, and
	// relabelled to the new group it fails the Feldman check.
	code, out, errs = pskRunCLI("psk", "combine", "--group", filepath.Join(keys, "group.json"),
		filepath.Join(c.oldKeys, "alice.share.json"), filepath.Join(keys, "dave.share.json"), filepath.Join(keys, "erin.share.json"))
	if code == 0 || out != "" || !strings.Contains(errs, "belongs to another group") {
		t.Errorf("old+new shares: exit %d %q %q", code, out, errs)
	}
	mixedShare(t, c.oldKeys, keys, "alice")
	code, out, errs = pskRunCLI("psk", "combine", "--group", filepath.Join(keys, "group.json"),
		filepath.Join(keys, "alice.share.json"), filepath.Join(keys, "dave.share.json"), filepath.Join(keys, "erin.share.json"))
	if code == 0 || out != "" || !strings.Contains(errs, `participant 1 "alice" fails the Feldman check`) {
		t.Errorf("relabelled old share: exit %d %q %q", code, out, errs)
	}
}

// A refresh through the CLI: the same PSK, new share values, and a share
// stolen before the refresh does not combine with one taken after.
func TestReshareCLIRefresh(t *testing.T) {
	names := []string{"alice", "bob", "carol"}
	c := reshareStart(t, names, "--refresh", "--dealers", "alice,carol")
	keys := c.finishAll(t, names, c.deal(t, "carol", "alice"))
	if !strings.Contains(c.outputs.String(), "refresh complete: dealers alice,carol") {
		t.Errorf("outputs %q", c.outputs.String())
	}
	oldPSK := pskCombine(t, c.oldKeys, nil, "alice", "carol")
	if got := pskCombine(t, keys, nil, "bob", "carol"); got != oldPSK {
		t.Fatalf("refreshed shares give PSK %q, want %q", got, oldPSK)
	}
	for _, n := range names {
		a, _ := os.ReadFile(filepath.Join(keys, n+".share.json"))
		b, _ := os.ReadFile(filepath.Join(c.oldKeys, n+".share.json"))
		va := regexp.MustCompile(`"value": "[0-9a-f]{64}"`)
		if bytes.Equal(va.Find(a), va.Find(b)) {
			t.Errorf("%s's share value did not change", n)
		}
	}
	mixedShare(t, c.oldKeys, keys, "bob")
	code, out, errs := pskRunCLI("psk", "combine", "--group", filepath.Join(keys, "group.json"), filepath.Join(keys, "bob.share.json"), filepath.Join(keys, "carol.share.json"))
	if code == 0 || out != "" || !strings.Contains(errs, `"bob" fails the Feldman check`) {
		t.Errorf("stolen old share with a new one: exit %d %q %q", code, out, errs)
	}
}

// Refusals and the abort path: too few dealers at init, a missing deal
// named with the --exclude way out, the exclusion agreed by all, a share
// file for the wrong group, and overwriting the old group's files.
func TestReshareCLIAbortAndRefusals(t *testing.T) {
	newNames := []string{"dave", "erin"}
	c := reshareStart(t, newNames, "--threshold", "2", "--participants", "dave,erin")
	deals := c.deal(t, "alice", "bob", "carol")
	dave := filepath.Join(c.newDir("dave"), "dave.reshare-key.json")
	code, out, errs := pskRunCLI("psk", "reshare", "finish", "--params", c.params, "--key", dave, deals[0], deals[2])
	if code != 1 || out != "" || !strings.Contains(errs, "bob: no deal file received") || !strings.Contains(errs, "--exclude bob") {
		t.Fatalf("missing deal: exit %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(c.newDir("dave"), "group.json")); err == nil {
		t.Fatal("an aborted finish wrote group.json")
	}
	keys := c.finishAll(t, newNames, []string{deals[0], deals[2]}, "--exclude", "bob")
	if got, want := pskCombine(t, keys, nil, "dave", "erin"), pskCombine(t, c.oldKeys, nil, "alice", "bob"); got != want {
		t.Fatal("reshare without bob lost the PSK")
	}
	pub := filepath.Join(c.newDir("dave"), "dave.reshare-pub.json")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"psk", "reshare", "init", "--old", filepath.Join(c.oldKeys, "group.json"), "--threshold", "2", "--participants", "dave", "--dealers", "alice", "--out", filepath.Join(c.root, "x.json"), pub}, 1, "1 dealer(s) (alice), but the old group \"demo\" needs at least 2"},
		{[]string{"psk", "reshare", "init", "--old", filepath.Join(c.oldKeys, "group.json"), "--threshold", "2", "--participants", "dave,zed", "--out", filepath.Join(c.root, "x.json"), pub}, 1, "no pub file of new participant zed: it would receive nothing"},
		{[]string{"psk", "reshare", "init", "--old", filepath.Join(c.oldKeys, "group.json"), "--refresh", "--participants", "dave", pub}, 2, "either --threshold and --participants, or --refresh"},
		{[]string{"psk", "reshare", "deal", "--params", c.params, "--share", filepath.Join(keys, "dave.share.json")}, 1, "dave is not a dealer"},
		{[]string{"psk", "reshare", "deal", "--params", pub, "--share", filepath.Join(c.oldDir("bob"), "bob.share.json")}, 1, `type is "mcbn-reshare-pub", want "mcbn-reshare-params"`},
		{[]string{"psk", "reshare", "finish", "--params", c.params, "--key", dave, deals[0], deals[2]}, 1, "already exists, refusing to overwrite"},
		{[]string{"psk", "reshare", "finish", "--params", c.params, deals[0]}, 2, "--params, --key and the deal files are required"},
	} {
		code, _, errs := pskRunCLI(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d %q, want %d and %q", tc.args[2:4], code, errs, tc.code, tc.want)
		}
	}
	code, out, _ = pskRunCLI("psk", "reshare", "--help")
	if code != 0 || !strings.Contains(out, "keygen") || !strings.Contains(out, "finish") {
		t.Errorf("help: %d %q", code, out)
	}
}
