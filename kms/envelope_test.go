package kms

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const vectorGroupID = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// The AAD test vector of docs/key-derivation.md, "Sealed shares".
func TestAADVector(t *testing.T) {
	aad, err := AAD(vectorGroupID, 1, "alice")
	if err != nil {
		t.Fatal(err)
	}
	const want = "6d63626e207365616c656420736861726520763100" + vectorGroupID + "0105616c696365"
	if got := hex.EncodeToString(aad); got != want {
		t.Fatalf("AAD = %s, want %s", got, want)
	}
}

func TestAADBindsEveryField(t *testing.T) {
	base, _ := AAD(vectorGroupID, 1, "alice")
	other := strings.Replace(vectorGroupID, "00", "ff", 1)
	for _, c := range []struct {
		id    string
		index int
		name  string
	}{{other, 1, "alice"}, {vectorGroupID, 2, "alice"}, {vectorGroupID, 1, "bob"}, {vectorGroupID, 1, "alice1"}} {
		a, err := AAD(c.id, c.index, c.name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a, base) {
			t.Errorf("AAD(%s, %d, %s) equals alice's", c.id[:4], c.index, c.name)
		}
	}
	for _, c := range []struct {
		id    string
		index int
		name  string
	}{{"00", 1, "a"}, {strings.ToUpper(vectorGroupID), 1, "a"}, {vectorGroupID, 0, "a"}, {vectorGroupID, 256, "a"}, {vectorGroupID, 1, ""}, {vectorGroupID, 1, "a b"}, {vectorGroupID, 1, strings.Repeat("a", 65)}} {
		if _, err := AAD(c.id, c.index, c.name); err == nil {
			t.Errorf("AAD(%q, %d, %q) accepted", c.id, c.index, c.name)
		}
	}
}

func validSealed() *SealedShare {
	return &SealedShare{
		Version: SealedVersion, Type: TypeSealedShare, GroupID: vectorGroupID, Index: 1, Participant: "alice",
		KMSKey: testKey, KeyVersion: testKey + "/cryptoKeyVersions/3",
		Ciphertext: base64.StdEncoding.EncodeToString([]byte("not really a ciphertext")),
	}
}

func TestSealedRoundTrip(t *testing.T) {
	b, err := validSealed().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSealed(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(s.CiphertextBytes()) != "not really a ciphertext" || s.KeyVersion != testKey+"/cryptoKeyVersions/3" {
		t.Errorf("round trip: %+v", s)
	}
	again, _ := s.Marshal()
	if !bytes.Equal(b, again) {
		t.Errorf("marshal is not stable:\n%s\n%s", b, again)
	}
	if strings.Contains(s.String(), s.Ciphertext) {
		t.Error("String shows the ciphertext")
	}
	path := filepath.Join(t.TempDir(), "s.kms.json")
	if err := WriteSealed(path, s); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 (not secret)", fi.Mode().Perm())
	}
	if err := WriteSealed(path, s); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("overwrite: %v", err)
	}
	if _, err := LoadSealed(path); err != nil {
		t.Error(err)
	}
	if _, err := LoadSealed(filepath.Dir(path)); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

func TestParseSealedRefusesBadInput(t *testing.T) {
	good, _ := validSealed().Marshal()
	edit := func(old, new string) string { return strings.Replace(string(good), old, new, 1) }
	cases := []struct {
		name, data, want string
	}{
		{"not JSON", "{", "malformed JSON"},
		{"array", "[]", "malformed JSON"},
		{"no type", `{"version":1}`, "missing \"type\""},
		{"share file", `{"version":1,"type":"mcbn-share"}`, "want \"mcbn-sealed-share\""},
		{"no version", `{"type":"mcbn-sealed-share"}`, "missing \"version\""},
		{"version 2", edit(`"version": 1`, `"version": 2`), "unsupported version 2"},
		{"unknown field", edit(`"index": 1,`, `"index": 1, "extra": true,`), "unknown field"},
		{"trailing data", string(good) + "{}", "malformed JSON"},
		{"upper-case group id", edit(vectorGroupID, strings.ToUpper(vectorGroupID)), "lowercase hex"},
		{"short group id", edit(vectorGroupID, "00"), "64 lowercase hex"},
		{"index 0", edit(`"index": 1`, `"index": 0`), "index 0"},
		{"index 256", edit(`"index": 1`, `"index": 256`), "index 256"},
		{"bad name", edit(`"alice"`, `"al ice"`), "not a valid name"},
		{"bad key", edit(`"kms_key": "projects/`, `"kms_key": "x/`), "kms_key"},
		{"version of another key", edit(`cryptoKeys/share/cryptoKeyVersions`, `cryptoKeys/other/cryptoKeyVersions`), "not a version of kms_key"},
		{"version 0", edit(`cryptoKeyVersions/3`, `cryptoKeyVersions/0`), "not a version of kms_key"},
		{"empty ciphertext", rawSealed(func(s *SealedShare) { s.Ciphertext = "" }), "missing \"ciphertext\""},
		{"url base64", edit(`"ciphertext": "`, `"ciphertext": "-_`), "not standard base64"},
		{"huge ciphertext", edit(`"ciphertext": "`, `"ciphertext": "`+strings.Repeat("A", 12000)), "longer than"},
		{"too large", string(good) + strings.Repeat(" ", MaxSealedFileSize), "at most"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSealed([]byte(c.data))
			if err == nil {
				t.Fatalf("accepted %q", c.data)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %q does not mention %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
		})
	}
}

// rawSealed marshals an edited valid envelope without validating it.
func rawSealed(f func(s *SealedShare)) string {
	s := validSealed()
	f(s)
	b, _ := jsonMarshalRaw(s)
	return string(b)
}

func FuzzParseSealed(f *testing.F) {
	good, _ := validSealed().Marshal()
	f.Add(good)
	f.Add([]byte(`{"version":1,"type":"mcbn-sealed-share","group_id":"` + vectorGroupID + `","index":255,"participant":"z","kms_key":"` + testKey + `","ciphertext":"AA=="}`))
	f.Add([]byte(`{"version":1,"type":"mcbn-sealed-share"}`))
	f.Add([]byte(`{"type":"mcbn-sealed-share","version":1,"ciphertext":"===="}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSealed(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		// Whatever parses re-marshals to something that parses the same.
		b, err := s.Marshal()
		if err != nil {
			t.Fatalf("parsed but does not marshal: %v", err)
		}
		s2, err := ParseSealed(b)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if s2.GroupID != s.GroupID || s2.Index != s.Index || s2.Participant != s.Participant || s2.KMSKey != s.KMSKey || !bytes.Equal(s2.ct, s.ct) {
			t.Fatalf("re-parse differs")
		}
		if _, err := AAD(s.GroupID, s.Index, s.Participant); err != nil {
			t.Fatalf("parsed share has no AAD: %v", err)
		}
	})
}

// The vector is in the specification.
func TestAADVectorIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/key-derivation.md")
	if err != nil {
		t.Fatal(err)
	}
	aad, _ := AAD(vectorGroupID, 1, "alice")
	if !strings.Contains(string(doc), "AAD = "+hex.EncodeToString(aad)) {
		t.Error("docs/key-derivation.md lacks the AAD test vector")
	}
}

func FuzzParseErrorBody(f *testing.F) {
	f.Add([]byte(`{"error":"invalid_grant","error_description":"ID Token has expired."}`))
	f.Add([]byte(`{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}`))
	f.Add([]byte(`{"error":7}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		code, desc := parseErrorBody(body)
		// Whatever the body, the classified message stays one line.
		err := classifyExchange(context.Background(), exchangeConfig{name: "alice", stsURL: "https://sts.example/v1/token"},
			&exchangeResult{stage: stageSTS, status: 400, code: code, desc: desc}, errors.New("x"), "secret-token")
		if strings.ContainsAny(err.Error(), "\n\r") || !errors.Is(err, ErrSTSRejected) {
			t.Fatalf("%q", err)
		}
	})
}

func FuzzWIFCondition(f *testing.F) {
	f.Add("// c\nassertion.a == 'x' &&\n  assertion.b in ['y', 'z']\n")
	f.Add("assertion.a == \"x\"")
	f.Add("")
	f.Fuzz(func(t *testing.T, policy string) {
		c, err := WIFCondition(policy)
		if err != nil {
			return
		}
		if checkCondition(c) != nil || strings.ContainsAny(c, "\n\r\"\\$`") || len(c) > MaxConditionLen {
			t.Fatalf("WIFCondition returned an unusable condition %q", c)
		}
	})
}
