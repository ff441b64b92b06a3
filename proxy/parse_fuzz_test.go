package proxy

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// FuzzParseEndpoint: no panic; an accepted endpoint prints back to
// something that parses to the same endpoint.
func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"tcp://127.0.0.1:8080", "tls://:8443", "udp://[::1]:53", "dtls://host.example:8853",
		"127.0.0.1:80", "ftp://h:1", "tcp://h:99999", "tcp://h h:1", "tcp://[::1", "tls://h:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEndpoint(s)
		if err != nil {
			return
		}
		again, err := ParseEndpoint(e.String())
		if err != nil || again != e {
			t.Fatalf("%q parsed to %+v, which prints as %q and parses back to %+v, %v", s, e, e.String(), again, err)
		}
	})
}

// FuzzParseHexKey: no panic, accepted keys are within the length bounds,
// and an error never quotes the input (it may be a key with a typo).
func FuzzParseHexKey(f *testing.F) {
	for _, s := range []string{"00112233445566778899aabbccddeeff", "0x" + strings.Repeat("ab", 32), " " + strings.Repeat("cd", 20) + "\n",
		"", "0x", "abc", "zz" + strings.Repeat("00", 16), strings.Repeat("00", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseHexKey(s)
		if err != nil {
			if trimmed := strings.TrimSpace(s); len(trimmed) >= 8 && strings.Contains(err.Error(), trimmed) {
				t.Fatalf("error quotes the input: %v", err)
			}
			return
		}
		if len(k) < minKeyLen || len(k) > maxKeyLen {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
	})
}

// FuzzSourceOptions: decoding psk.options (checkKnownKeys, then the node
// decoded where it is) never panics, accepts what yaml.v3's own strict
// decoder accepts with the same result, refuses nothing it accepts, and
// its errors name no Go type.
func FuzzSourceOptions(f *testing.F) {
	for _, s := range []string{
		"group: g.json\nrefresh: 2s\nshareholders:\n  - {name: a, url: b}\n",
		"group: g\nattestation: {provider: dev}\nkey_length: 32\n",
		"shareholders: [{name: a, ulr: b}]\n",
		"refresh: soon\n", "key_length: [1]\n", "shareholders: x\n",
		"<<: {group: g}\nrefresh: 1s\n", "a: &x {group: g}\n", "&a {group: *a}\n", "- 1\n- 2\n", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var doc yaml.Node
		if yaml.Unmarshal([]byte(s), &doc) != nil || len(doc.Content) == 0 {
			return
		}
		n := doc.Content[0]
		var ours optsKindOptions
		errOurs := nodeDecoder(n)(&ours)
		var theirs optsKindOptions
		dec := yaml.NewDecoder(strings.NewReader(s))
		dec.KnownFields(true)
		errTheirs := dec.Decode(&theirs)
		if errTheirs == nil && errOurs != nil {
			t.Fatalf("refused what yaml.v3 accepts strictly: %v", errOurs)
		}
		if errTheirs == nil && !reflect.DeepEqual(ours, theirs) {
			t.Fatalf("decoded %+v, yaml.v3 %+v", ours, theirs)
		}
		if errOurs != nil {
			for _, goName := range []string{"proxy.", "time.Duration", "[]struct", "optsKindOptions", "!!"} {
				if strings.Contains(errOurs.Error(), goName) && !strings.Contains(s, goName) { // a key may hold anything
					t.Fatalf("error %q names a Go type (%s)", errOurs, goName)
				}
			}
		}
	})
}

// TestSourceOptionsAliasBomb: aliases that expand to a huge tree are
// walked once per node, not once per expansion.
func TestSourceOptionsAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("shareholders:\n  - &m0 {name: x}\n")
	for i := 1; i < 40; i++ {
		fmt.Fprintf(&b, "  - &m%d {<<: [*m%d, *m%d]}\n", i, i-1, i-1)
	}
	b.WriteString("  - {<<: *m39, ulr: y}\n")
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(b.String()), &doc); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- checkKnownKeys(doc.Content[0], reflect.TypeOf(&optsKindOptions{})) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), `line 42: unknown key "ulr"`) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the key check expanded the aliases")
	}
}
