package kms

import (
	"context"
	"testing"

	"golang.org/x/oauth2"
)

func TestSealRefusals(t *testing.T) {
	e := newEnv(t)
	_, err := Seal(context.Background(), e.kmsOpts(), "projects/p/keys/k", e.shares[0])
	e.wantClass(err, ErrLocal, "--kms")

	// Someone without the encrypter role.
	o := e.kmsOpts()
	o.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: e.fake.UserToken("mallory@example.com")})
	_, err = Seal(context.Background(), o, testKey, e.shares[0])
	e.wantClass(err, ErrPermissionDenied, "useToEncrypt")

	// A token the fake never issued.
	o.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "ya29.forged"})
	_, err = Seal(context.Background(), o, testKey, e.shares[0])
	e.wantClass(err, ErrPermissionDenied, "Unauthenticated")

	// A disabled primary version cannot seal.
	if err := e.fake.DisableVersion(testKey + "/cryptoKeyVersions/1"); err != nil {
		t.Fatal(err)
	}
	_, err = Seal(context.Background(), e.kmsOpts(), testKey, e.shares[0])
	e.wantClass(err, ErrKeyDisabled)

	// Plaintext gRPC only to loopback, and only with explicit credentials.
	_, err = Seal(context.Background(), ClientOptions{Endpoint: "192.0.2.1:443", Insecure: true, TokenSource: e.userTS}, testKey, e.shares[0])
	e.wantClass(err, ErrLocal, "not a loopback")
	_, err = Seal(context.Background(), ClientOptions{Endpoint: e.fake.KMSEndpoint(), Insecure: true}, testKey, e.shares[0])
	e.wantClass(err, ErrLocal, "explicit token source")
}

func TestSealRecordsTheKeyVersion(t *testing.T) {
	e := newEnv(t)
	v2, err := e.fake.AddVersion(testKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Seal(context.Background(), e.kmsOpts(), testKey, e.shares[2])
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyVersion != v2 || s.Participant != "carol" || s.Index != 3 || s.GroupID != e.group.ID {
		t.Errorf("sealed %+v, want carol's share under %s", s, v2)
	}
}
