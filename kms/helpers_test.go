package kms

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/kms/kmsfake"
	"github.com/mcbn/mcbn/psk"
)

const (
	testDigest   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testKey      = "projects/alice-project/locations/global/keyRings/mcbn/cryptoKeys/share"
	testPool     = "mcbn-proxies"
	testProvider = "attestation"
	testSA       = "share-reader@alice-project.iam.gserviceaccount.com"
	testUser     = "alice@example.com"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is a dev attester, the STS/KMS fakes with one provider and one key,
// a 2-of-3 group and alice's share sealed under the key.
type env struct {
	t        *testing.T
	dev      *attest.DevAttester
	fake     *kmsfake.Server
	provider kmsfake.Provider
	aud      string
	group    *psk.Group
	shares   []*psk.Share
	dir      string
	sealed   string // alice's sealed-share file
	token    string // the token in the token file
	tokFile  string
	userTS   oauth2.TokenSource // alice herself, may encrypt
}

// devCondition is the attribute condition of the test provider: the dev
// attester's tokens for the test digest.
const devCondition = "assertion.swname == 'MCBN_DEV_ATTESTER' && assertion.submods.container.image_digest == '" + testDigest + "'"

func newEnv(t *testing.T) *env {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "kmst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	dev, err := attest.StartDevAttester(attest.DevAttesterConfig{
		Socket: filepath.Join(sockDir, "s"), ImageDigest: testDigest, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	fake, err := kmsfake.Start(kmsfake.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	e := &env{t: t, dev: dev, fake: fake, dir: t.TempDir()}
	e.provider = kmsfake.Provider{
		ProjectNumber: "123456789012", Pool: testPool, ID: testProvider, Issuer: dev.Issuer(),
		AttributeMapping: map[string]string{
			"google.subject":         "assertion.sub",
			"attribute.image_digest": "assertion.submods.container.image_digest",
		},
		Condition: devCondition,
	}
	if e.aud, err = fake.AddProvider(e.provider); err != nil {
		t.Fatal(err)
	}
	if err := fake.CreateKey(testKey); err != nil {
		t.Fatal(err)
	}
	fake.Grant(testKey, kmsfake.RoleDecrypter, e.provider.PrincipalSet())
	fake.Grant(testKey, kmsfake.RoleEncrypter, "user:"+testUser)
	e.userTS = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: fake.UserToken(testUser), TokenType: "Bearer"})
	e.group, e.shares, err = psk.Split("kmsgroup", 2, []string{"alice", "bob", "carol"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.sealed = e.seal(e.shares[0], "alice.share.kms.json")
	e.tokFile = filepath.Join(e.dir, "attestation_verifier_claims_token")
	e.refreshToken(AttestationAudience)
	return e
}

// seal seals share under testKey into dir/file and returns the path.
func (e *env) seal(s *psk.Share, file string) string {
	e.t.Helper()
	sealed, err := Seal(context.Background(), e.kmsOpts(), testKey, s)
	if err != nil {
		e.t.Fatalf("seal: %v", err)
	}
	path := filepath.Join(e.dir, file)
	if err := WriteSealed(path, sealed); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func (e *env) kmsOpts() ClientOptions {
	return ClientOptions{Endpoint: e.fake.KMSEndpoint(), Insecure: true, TokenSource: e.userTS}
}

// refreshToken mints a token for audience (with the attester's current
// mutate hooks) into the token file, as the launcher does.
func (e *env) refreshToken(audience string) {
	e.t.Helper()
	tok, err := e.dev.Mint(audience, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.token = tok
	if err := os.WriteFile(e.tokFile, []byte(tok+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// opts are alice's participant options against the fakes.
func (e *env) opts() Options {
	return Options{
		SealedShare: e.sealed, KMSKey: testKey, WIFAudience: e.aud, TokenFile: e.tokFile,
		STSEndpoint: e.fake.STSURL(), IAMCredentialsEndpoint: e.fake.IAMCredentialsURL(),
		KMSEndpoint: e.fake.KMSEndpoint(), KMSInsecure: true, Timeout: 20 * time.Second,
	}
}

func (e *env) participant(o Options) *Participant {
	e.t.Helper()
	p, err := NewParticipant("alice", o)
	if err != nil {
		e.t.Fatalf("NewParticipant: %v", err)
	}
	return p
}

// fetch runs alice's Fetch with o against the group.
func (e *env) fetch(o Options) (*psk.Share, error) {
	e.t.Helper()
	return e.participant(o).Fetch(context.Background(), e.dev.Provider(), e.group)
}

// wantClass checks err is of class, names alice, and leaks neither the
// attestation token nor any share value.
func (e *env) wantClass(err, class error, contains ...string) {
	e.t.Helper()
	if err == nil {
		e.t.Fatalf("no error, want %v", class)
	}
	if !errors.Is(err, class) {
		e.t.Fatalf("error %q is not %v (reason %s)", err, class, Reason(err))
	}
	msg := err.Error()
	e.t.Logf("%s: %s", Reason(err), msg)
	if strings.Contains(msg, "\n") {
		e.t.Errorf("error is not one line: %q", msg)
	}
	if e.token != "" && strings.Contains(msg, e.token) {
		e.t.Errorf("error contains the attestation token: %q", msg)
	}
	for _, s := range e.shares {
		if strings.Contains(msg, hex.EncodeToString(s.Value)) {
			e.t.Errorf("error contains a share value")
		}
	}
	for _, c := range contains {
		if !strings.Contains(msg, c) {
			e.t.Errorf("error %q does not mention %q", msg, c)
		}
	}
}

// wantShare checks share is alice's and passes the Feldman check.
func (e *env) wantShare(s *psk.Share, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("Fetch: %v", err)
	}
	defer s.Wipe()
	if s.Participant != "alice" || s.Index != 1 || s.GroupID != e.group.ID || hex.EncodeToString(s.Value) != hex.EncodeToString(e.shares[0].Value) {
		e.t.Fatalf("Fetch returned %v, want alice's share", s)
	}
	if err := psk.VerifyShare(e.group, s); err != nil {
		e.t.Fatalf("VerifyShare: %v", err)
	}
}

// editSealed rewrites a sealed-share file through f and writes it to a new
// file, returning its path.
func (e *env) editSealed(path, file string, f func(s *SealedShare)) string {
	e.t.Helper()
	s, err := LoadSealed(path)
	if err != nil {
		e.t.Fatal(err)
	}
	f(s)
	out := filepath.Join(e.dir, file)
	b, err := jsonMarshalRaw(s)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return out
}
