package psk

import (
	"bytes"
	"testing"
)

// Fuzz targets for every file parser. Property: no panic, and whatever
// parses re-encodes to something that parses to the same value.

func vectorFiles(t testing.TB) (group, share, key []byte) {
	g, shares, err := Split("vector", 2, []string{"alice", "bob", "carol"}, newSeedReader(shamirSeed))
	if err != nil {
		t.Fatal(err)
	}
	group, _ = g.Marshal()
	share, _ = MarshalShare(shares[0])
	k, err := NewContribKey("vector-team", "alice", newSeedReader(contribSeed))
	if err != nil {
		t.Fatal(err)
	}
	key, _ = MarshalContribKey(k)
	return group, share, key
}

func addCommonSeeds(f *testing.F) {
	for _, s := range []string{"", "{}", "null", "[]", `{"version":1}`, `{"version":2,"type":"mcbn-group"}`, `{"version":1,"type":"mcbn-share","index":-1}`, "\x00\xff"} {
		f.Add([]byte(s))
	}
}

func FuzzParseGroup(f *testing.F) {
	g, s, k := vectorFiles(f)
	f.Add(g)
	f.Add(s)
	f.Add(k)
	f.Add(bytes.Replace(g, []byte(`"threshold": 2`), []byte(`"threshold": 3`), 1))
	if _, r := resharedGroup(f); r != nil {
		rb, _ := r.Marshal()
		f.Add(rb)
	}
	addCommonSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseGroup(data)
		if err != nil {
			return
		}
		b, err := g.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		g2, err := ParseGroup(b)
		if err != nil {
			t.Fatalf("re-encoded group does not parse: %v", err)
		}
		if g2.ID != g.ID || g2.N() != g.N() || g2.Threshold != g.Threshold {
			t.Fatal("round trip changed the group")
		}
	})
}

func FuzzParseShare(f *testing.F) {
	g, s, k := vectorFiles(f)
	f.Add(s)
	f.Add(g)
	f.Add(k)
	addCommonSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseShare(data)
		if err != nil {
			return
		}
		b, err := MarshalShare(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := ParseShare(b)
		if err != nil {
			t.Fatalf("re-encoded share does not parse: %v", err)
		}
		if s2.GroupID != s.GroupID || s2.Index != s.Index || s2.Participant != s.Participant || !bytes.Equal(s2.Value, s.Value) {
			t.Fatal("round trip changed the share")
		}
	})
}

func FuzzParseContribKey(f *testing.F) {
	g, s, k := vectorFiles(f)
	f.Add(k)
	f.Add(g)
	f.Add(s)
	addCommonSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseContribKey(data)
		if err != nil {
			return
		}
		b, err := MarshalContribKey(k)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParseContribKey(b)
		if err != nil {
			t.Fatalf("re-encoded key does not parse: %v", err)
		}
		if k2.Group != k.Group || k2.Participant != k.Participant || !bytes.Equal(k2.Key, k.Key) {
			t.Fatal("round trip changed the key")
		}
	})
}

func FuzzFileType(f *testing.F) {
	g, s, k := vectorFiles(f)
	f.Add(g)
	f.Add(s)
	f.Add(k)
	addCommonSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, err := FileType(data)
		if err == nil && typ != TypeGroup && typ != TypeShare && typ != TypeKey {
			t.Fatalf("FileType returned %q", typ)
		}
	})
}
