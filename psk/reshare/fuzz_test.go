package reshare

import (
	"bytes"
	"testing"
)

// Fuzz targets for every file format of the ceremony. Property: no panic,
// and whatever parses re-encodes to something that parses to the same value.

var fuzzSeeds = []string{"", "{}", "null", "[]", `{"version":1}`, `{"version":2,"type":"mcbn-reshare-deal"}`,
	`{"version":1,"type":"mcbn-reshare-params","old_group":null}`, `{"version":1,"type":"mcbn-reshare-deal","commitments":[]}`, "\x00\xff"}

// seedFiles runs a small ceremony and returns its params, a deal, a key
// and a pub file.
func seedFiles(f *testing.F) (params, deal, key, pub []byte) {
	c := setup(f, 2, "alice,bob,carol", 2, "alice,dave", nil)
	params, _ = c.p.Marshal()
	deal, _ = c.deals[0].Marshal()
	key, _ = c.keys["dave"].Marshal()
	pub, _ = c.keys["dave"].Pub().Marshal()
	if params == nil || deal == nil || key == nil || pub == nil {
		f.Fatal("seed ceremony failed")
	}
	return
}

func addSeeds(f *testing.F, files ...[]byte) {
	for _, b := range files {
		f.Add(b)
	}
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
}

func FuzzParseParams(f *testing.F) {
	p, d, k, pub := seedFiles(f)
	addSeeds(f, p, d, k, pub, bytes.Replace(p, []byte(`"threshold": 2`), []byte(`"threshold": 1`), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseParams(data)
		if err != nil {
			return
		}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		p2, err := ParseParams(b)
		if err != nil {
			t.Fatalf("re-encoded params do not parse: %v", err)
		}
		if !bytes.Equal(p2.ID(), p.ID()) || p2.Old.ID != p.Old.ID {
			t.Fatal("round trip changed the params")
		}
	})
}

func FuzzParseDeal(f *testing.F) {
	p, d, k, pub := seedFiles(f)
	addSeeds(f, d, p, k, pub)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDeal(data)
		if err != nil {
			return
		}
		b, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		d2, err := ParseDeal(b)
		if err != nil {
			t.Fatalf("re-encoded deal does not parse: %v", err)
		}
		b2, _ := d2.Marshal()
		if !bytes.Equal(b, b2) {
			t.Fatal("round trip changed the deal")
		}
	})
}

func FuzzParseKey(f *testing.F) {
	p, d, k, pub := seedFiles(f)
	addSeeds(f, k, pub, p, d)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKey(data)
		if err != nil {
			return
		}
		b, err := k.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParseKey(b)
		if err != nil {
			t.Fatalf("re-encoded key does not parse: %v", err)
		}
		if k2.Participant != k.Participant || !bytes.Equal(k2.priv, k.priv) || !bytes.Equal(k2.pub, k.pub) {
			t.Fatal("round trip changed the key")
		}
	})
}

func FuzzParsePub(f *testing.F) {
	p, d, k, pub := seedFiles(f)
	addSeeds(f, pub, k, p, d)
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := ParsePub(data)
		if err != nil {
			return
		}
		b, err := q.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		q2, err := ParsePub(b)
		if err != nil {
			t.Fatalf("re-encoded pub does not parse: %v", err)
		}
		if q2.Participant != q.Participant || !bytes.Equal(q2.HPKEKey, q.HPKEKey) {
			t.Fatal("round trip changed the pub")
		}
	})
}
