package psk

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShareFileRoundTripAndMode(t *testing.T) {
	g, shares := split(t, "g", 2, "alice", "bob", "carol")
	dir := t.TempDir()
	p := filepath.Join(dir, "bob.share.json")
	if err := WriteShare(p, shares[1]); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, err %v", fi.Mode(), err)
	}
	s, err := LoadShare(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.GroupID != g.ID || s.Index != 2 || s.Participant != "bob" || !bytes.Equal(s.Value, shares[1].Value) {
		t.Errorf("round trip changed the share: %v", s)
	}
	if err := WriteShare(p, shares[1]); err == nil || !strings.Contains(err.Error(), "already exists, refusing to overwrite") {
		t.Errorf("overwrite: err %v", err)
	}
	gp := filepath.Join(dir, "group.json")
	if err := WriteGroup(gp, g); err != nil {
		t.Fatal(err)
	}
	g2, err := LoadGroup(gp)
	if err != nil || g2.ID != g.ID {
		t.Fatalf("group round trip: %v", err)
	}
	if err := VerifyShare(g2, s); err != nil {
		t.Errorf("loaded share does not verify against loaded group: %v", err)
	}
}

func TestLoadShareRefusesReadableFile(t *testing.T) {
	_, shares := split(t, "g", 2, "alice", "bob")
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		p := filepath.Join(t.TempDir(), "alice.share.json")
		if err := WriteShare(p, shares[0]); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadShare(p)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+p) || !strings.HasPrefix(err.Error(), p+": ") {
			t.Errorf("mode %04o: err %v", mode, err)
		}
		if _, _, err := LoadShareOrKey(p); err == nil {
			t.Errorf("LoadShareOrKey accepted mode %04o", mode)
		}
	}
}

func TestParseErrors(t *testing.T) {
	g, shares := split(t, "g", 2, "alice", "bob", "carol")
	gj, _ := g.Marshal()
	sj, _ := MarshalShare(shares[0])
	k, _ := NewContribKey("team", "alice", nil)
	kj, _ := MarshalContribKey(k)
	repl := func(b []byte, old, new string) []byte {
		if !bytes.Contains(b, []byte(old)) {
			t.Fatalf("test setup: %q not in %s", old, b)
		}
		return bytes.Replace(b, []byte(old), []byte(new), 1)
	}
	c1 := g.Commitments[1]
	cases := []struct {
		name  string
		parse func([]byte) error
		data  []byte
		want  string
	}{
		{"group malformed", pg, []byte(`{"version":1,`), "malformed JSON"},
		{"group not object", pg, []byte(`[]`), "malformed JSON"},
		{"group version", pg, repl(gj, `"version": 1`, `"version": 2`), "unsupported version 2"},
		{"group no version", pg, repl(gj, `"version": 1,`, ``), `missing "version"`},
		{"group wrong type", pg, sj, `type is "mcbn-share", want "mcbn-group"`},
		{"group unknown field", pg, repl(gj, `"threshold"`, `"extra": 1, "threshold"`), `unknown field "extra"`},
		{"group trailing", pg, append(bytes.Clone(gj), `{}`...), "after top-level value"},
		{"group t>n", pg, repl(gj, `"threshold": 2`, `"threshold": 4`), "threshold 4 is greater"},
		{"group t<2", pg, repl(gj, `"threshold": 2`, `"threshold": 1`), "threshold 1 is below 2"},
		{"group altered commitment", pg, repl(gj, c1, g.Commitments[0]), "does not match the descriptor's contents"},
		{"group altered name", pg, repl(gj, `"name": "alice"`, `"name": "alicia"`), "does not match"},
		{"group bad element", pg, repl(gj, c1, strings.Repeat("f", 64)), "not a valid ristretto255 element"},
		{"group bad scheme", pg, repl(gj, SchemeShamir, "rot13"), `unknown scheme "rot13"`},
		{"group index order", pg, repl(gj, `"index": 2`, `"index": 3`), "has index 3, want 2"},
		{"share malformed", ps, []byte(`{"version":`), "malformed JSON"},
		{"share version", ps, repl(sj, `"version": 1`, `"version": 7`), "unsupported version 7"},
		{"share value short", ps, repl(sj, `"value": "`, `"value": "00`), "value of participant \"alice\" must be 64 hex"},
		{"share value not scalar", ps, replValue(t, sj, strings.Repeat("f", 64)), "not a canonical ristretto255 scalar"},
		{"share value upper", ps, replValue(t, sj, strings.Repeat("A", 64)), "must be lowercase hex"},
		{"share index 0", ps, repl(sj, `"index": 1`, `"index": 0`), "index 0 out of range"},
		{"share bad group id", ps, repl(sj, g.ID, "zz"), "group_id must be 64 hex"},
		{"key version", pk, repl(kj, `"version": 1`, `"version": 0`), "unsupported version 0"},
		{"key short", pk, repl(kj, `"key": "`, `"key": "0`), "must be 64 hex"},
		{"key bad participant", pk, repl(kj, `"participant": "alice"`, `"participant": ""`), "not a valid name"},
		{"key missing type", pk, []byte(`{"version":1}`), `missing "type"`},
	}
	for _, c := range cases {
		err := c.parse(c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", c.name, err)
		}
	}
	// The unmodified files parse.
	for _, e := range []error{pg(gj), ps(sj), pk(kj)} {
		if e != nil {
			t.Errorf("good file rejected: %v", e)
		}
	}
}

func replValue(t *testing.T, sj []byte, v string) []byte {
	i := bytes.Index(sj, []byte(`"value": "`))
	if i < 0 {
		t.Fatal("no value")
	}
	i += len(`"value": "`)
	out := bytes.Clone(sj)
	copy(out[i:i+64], v)
	return out
}

func pg(b []byte) error { _, err := ParseGroup(b); return err }
func ps(b []byte) error { _, err := ParseShare(b); return err }
func pk(b []byte) error { _, err := ParseContribKey(b); return err }
