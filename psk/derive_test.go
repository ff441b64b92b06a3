package psk

import (
	"bytes"
	"strings"
	"testing"
)

func TestDerivePSKSeparatesIdentityEpochGroup(t *testing.T) {
	g, shares := split(t, "g", 2, "a", "b")
	secret, err := Combine(g, shares)
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := split(t, "g", 2, "a", "b")
	type in struct {
		group, id string
		epoch     uint64
	}
	inputs := []in{{g.ID, "Client_identity", 0}, {g.ID, "Client_identity", 1}, {g.ID, "client2", 0}, {g2.ID, "Client_identity", 0}}
	seen := map[string]in{}
	for _, x := range inputs {
		k, err := DerivePSK(secret, x.group, x.id, x.epoch, 0)
		if err != nil {
			t.Fatal(err)
		}
		if prev, dup := seen[string(k)]; dup {
			t.Errorf("%+v and %+v give the same PSK", prev, x)
		}
		seen[string(k)] = x
		again, _ := DerivePSK(secret, x.group, x.id, x.epoch, 32)
		if !bytes.Equal(k, again) {
			t.Errorf("%+v: not deterministic", x)
		}
	}
	k48, err := DerivePSK(secret, g.ID, "Client_identity", 0, 48)
	if err != nil || len(k48) != 48 {
		t.Fatalf("48-byte PSK: %v", err)
	}
}

func TestDerivePSKRejects(t *testing.T) {
	g, _ := split(t, "g", 2, "a", "b")
	s := make([]byte, 32)
	cases := []struct {
		secret   []byte
		group    string
		identity string
		length   int
		want     string
	}{
		{s, g.ID, "id", 8, "length 8 out of range"},
		{s, g.ID, "id", 65, "length 65 out of range"},
		{s[:31], g.ID, "id", 0, "must be 32 bytes"},
		{s, "abc", "id", 0, "group id must be 64 hex"},
		{s, g.ID, "", 0, "identity must be 1..65535"},
	}
	for _, c := range cases {
		if _, err := DerivePSK(c.secret, c.group, c.identity, 0, c.length); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v", c.want, err)
		}
	}
}

func TestLegacyConcat(t *testing.T) {
	// The original demo's vector (its README; checked with sha256sum).
	got, err := LegacyConcat(
		"2c6f63f8c0f53a565db041b91c0a95add8913fc102670589db3982228dbfed90",
		"b15244faf36e5e4b178d3891701d245f2e45e881d913b6c35c0ea0ac14224cc2",
		"3e2078d5cd04beabfa4a7a1486bc626d679184df2e0a2b9942d913d4b835516c")
	if err != nil {
		t.Fatal(err)
	}
	if got != "6d1bbd1e6235c9d9ec8cdbdf9b32d4d08304a7f305f7c6c67775130d914f4dc4" {
		t.Errorf("legacy = %s", got)
	}
	for _, bad := range [][]string{nil, {""}, {"xyz1"}, {"abc"}} {
		if _, err := LegacyConcat(bad...); err == nil {
			t.Errorf("LegacyConcat(%q) accepted", bad)
		}
	}
}

func TestWipe(t *testing.T) {
	b := []byte{1, 2, 3}
	Wipe(b)
	if !bytes.Equal(b, []byte{0, 0, 0}) {
		t.Errorf("Wipe left %v", b)
	}
	s := &Share{Value: []byte{9, 9}}
	s.Wipe()
	if !bytes.Equal(s.Value, []byte{0, 0}) {
		t.Errorf("Share.Wipe left %v", s.Value)
	}
}
