package dkg

import (
	"bytes"
	"testing"
)

// Fuzz targets for the three ceremony file formats. Property: no panic, and
// whatever parses re-encodes to bytes that parse to the same value.

var commonSeeds = []string{"", "{}", "null", "[]", `{"version":1}`, `{"version":2,"type":"mcbn-dkg-pub"}`,
	`{"version":1,"type":"mcbn-dkg-round1","commitments":[]}`, `{"version":1,"type":"mcbn-dkg-state","threshold":-1}`, "\x00\xff"}

func seedFiles(f *testing.F) (pub, state, round1 []byte) {
	p := params(2, "alice", "bob", "carol")
	var ps []*party
	for _, name := range p.Participants {
		st, pub, err := Init(p, name, nil)
		if err != nil {
			f.Fatal(err)
		}
		ps = append(ps, &party{st: st, pub: pub})
	}
	r, err := Deal(ps[0].st, pubsOf(ps))
	if err != nil {
		f.Fatal(err)
	}
	pub, _ = ps[0].pub.Marshal()
	state, _ = ps[0].st.Marshal()
	round1, _ = r.Marshal()
	return
}

func addSeeds(f *testing.F, files ...[]byte) {
	for _, s := range commonSeeds {
		f.Add([]byte(s))
	}
	for _, b := range files {
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(bytes.Replace(b, []byte(`"version": 1`), []byte(`"version": 1, "x": 1`), 1))
	}
}

func FuzzDkgParsePub(f *testing.F) {
	pub, state, round1 := seedFiles(f)
	addSeeds(f, pub, state, round1)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePub(data)
		if err != nil {
			return
		}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		q, err := ParsePub(b)
		if err != nil || !bytes.Equal(p.Fingerprint(), q.Fingerprint()) {
			t.Fatalf("re-encoded pub differs: %v", err)
		}
	})
}

func FuzzDkgParseState(f *testing.F) {
	pub, state, round1 := seedFiles(f)
	addSeeds(f, state, pub, round1)
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseState(data)
		if err != nil {
			return
		}
		defer st.Wipe()
		b, err := st.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseState(b)
		if err != nil {
			t.Fatalf("re-encoded state does not parse: %v", err)
		}
		b2, _ := again.Marshal()
		if !bytes.Equal(b, b2) {
			t.Fatal("state re-encoding is not stable")
		}
	})
}

func FuzzDkgParseRound1(f *testing.F) {
	pub, state, round1 := seedFiles(f)
	addSeeds(f, round1, pub, state)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRound1(data)
		if err != nil {
			return
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		q, err := ParseRound1(b)
		if err != nil || !bytes.Equal(r.signedMessage(), q.signedMessage()) || !bytes.Equal(r.Signature, q.Signature) {
			t.Fatalf("re-encoded round 1 differs: %v", err)
		}
	})
}
