package kms

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/kms/kmsfake"
	"github.com/mcbn/mcbn/psk"
)

func jsonMarshalRaw(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }

func TestFetchReleasesTheShare(t *testing.T) {
	e := newEnv(t)
	e.wantShare(e.fetch(e.opts()))
	if n := e.fake.Decrypts(testKey); n != 1 {
		t.Errorf("fake KMS logged %d successful decrypts, want 1", n)
	}
	// The federated principal KMS saw is the token's subject in the pool.
	var principal string
	for _, a := range e.fake.Audit() {
		if a.Method == "Decrypt" {
			principal = a.Principal
		}
	}
	if want := "principal://iam.googleapis.com/" + e.provider.PoolName() + "/subject/" + attest.DevSubject; principal != want {
		t.Errorf("Decrypt by %q, want %q", principal, want)
	}
}

func TestFetchWithTokenFromLauncher(t *testing.T) {
	e := newEnv(t)
	o := e.opts()
	o.TokenFile, o.TokenSource = "", TokenFromLauncher
	e.wantShare(e.fetch(o))
	p := e.participant(o)
	_, err := p.Fetch(context.Background(), nil, e.group)
	e.wantClass(err, ErrLocal, "no attestation provider")
}

func TestFetchImpersonatingAServiceAccount(t *testing.T) {
	e := newEnv(t)
	// Only the service account may decrypt; the pool may impersonate it.
	e.fake.Revoke(testKey, kmsfake.RoleDecrypter, e.provider.PrincipalSet())
	e.fake.Grant(testKey, kmsfake.RoleDecrypter, "serviceAccount:"+testSA)
	o := e.opts()
	o.ServiceAccount = testSA
	_, err := e.fetch(o)
	e.wantClass(err, ErrPermissionDenied, "impersonating "+testSA)

	e.fake.Grant("projects/-/serviceAccounts/"+testSA, kmsfake.RoleWorkloadIdentity, e.provider.PrincipalSet())
	e.wantShare(e.fetch(o))
	// Without impersonation the federated identity itself has no binding.
	_, err = e.fetch(e.opts())
	e.wantClass(err, ErrPermissionDenied, "cloudkms.cryptoKeyVersions.useToDecrypt")
}

func TestConsentWithdrawnByRemovingTheBinding(t *testing.T) {
	e := newEnv(t)
	e.wantShare(e.fetch(e.opts()))
	e.fake.Revoke(testKey, kmsfake.RoleDecrypter, e.provider.PrincipalSet())
	_, err := e.fetch(e.opts())
	e.wantClass(err, ErrPermissionDenied, "Decrypt with "+testKey)
	if Reason(err) != "permission_denied" {
		t.Errorf("Reason = %s", Reason(err))
	}
}

func TestKeyVersionDisabledThenReenabled(t *testing.T) {
	e := newEnv(t)
	version := testKey + "/cryptoKeyVersions/1"
	if err := e.fake.DisableVersion(version); err != nil {
		t.Fatal(err)
	}
	_, err := e.fetch(e.opts())
	e.wantClass(err, ErrKeyDisabled, "DISABLED")
	if Reason(err) != "key_disabled" {
		t.Errorf("Reason = %s", Reason(err))
	}
	if err := e.fake.EnableVersion(version); err != nil {
		t.Fatal(err)
	}
	e.wantShare(e.fetch(e.opts()))
	// A new primary version does not revoke: the sealed share names v1.
	if _, err := e.fake.AddVersion(testKey); err != nil {
		t.Fatal(err)
	}
	e.wantShare(e.fetch(e.opts()))
	if err := e.fake.DestroyVersion(version); err != nil {
		t.Fatal(err)
	}
	_, err = e.fetch(e.opts())
	e.wantClass(err, ErrKeyDisabled, "DESTROYED")
}

func TestAttributeConditionUnmet(t *testing.T) {
	e := newEnv(t)
	other := "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	if err := e.fake.SetCondition(e.aud, "assertion.submods.container.image_digest == '"+other+"'"); err != nil {
		t.Fatal(err)
	}
	_, err := e.fetch(e.opts())
	e.wantClass(err, ErrSTSRejected, "unauthorized_client", "attribute condition")
	if e.fake.Decrypts(testKey) != 0 {
		t.Error("KMS decrypted although STS refused")
	}
}

func TestTokenForTheWrongAudience(t *testing.T) {
	e := newEnv(t)
	e.refreshToken("https://shareholder.example.com")
	_, err := e.fetch(e.opts())
	e.wantClass(err, ErrSTSRejected, "invalid_grant", "audience")
}

func TestExpiredToken(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.dev.SetMutate(attest.SetTimes(now.Add(-2*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)))
	e.refreshToken(AttestationAudience)
	_, err := e.fetch(e.opts())
	e.wantClass(err, ErrSTSRejected, "expired")
}

func TestTokenFromAnotherIssuer(t *testing.T) {
	e := newEnv(t)
	sockDir, err := os.MkdirTemp("", "kmst")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	forger, err := attest.StartDevAttester(attest.DevAttesterConfig{Socket: filepath.Join(sockDir, "s"), ImageDigest: testDigest, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	// Same claims, including the trusted issuer's name, signed by another key.
	forger.SetMutate(attest.SetClaim(e.dev.Issuer(), "iss"))
	tok, err := forger.Mint(AttestationAudience, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.token = tok
	if err := os.WriteFile(e.tokFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = e.fetch(e.opts())
	e.wantClass(err, ErrSTSRejected, "invalid_grant")
}

func TestTokenFileMissingOrNotAToken(t *testing.T) {
	e := newEnv(t)
	o := e.opts()
	o.TokenFile = filepath.Join(e.dir, "no-such-token")
	_, err := e.fetch(o)
	e.wantClass(err, ErrLocal, o.TokenFile, "does not exist")

	if err := os.WriteFile(o.TokenFile, []byte("not a token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = e.fetch(o)
	e.wantClass(err, ErrLocal, o.TokenFile, "does not hold a JWT")
}

func TestSTSDown(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/v1/token"
	ln.Close()
	o := e.opts()
	o.STSEndpoint = dead
	_, err = e.fetch(o)
	e.wantClass(err, ErrUnreachable, "STS "+dead)

	e.fake.SetSTSStatus(503)
	_, err = e.fetch(e.opts())
	e.wantClass(err, ErrUnreachable, "HTTP 503")
	e.fake.SetSTSStatus(0)
	e.wantShare(e.fetch(e.opts()))
}

func TestKMSSlowIsBoundedByTheTimeout(t *testing.T) {
	e := newEnv(t)
	e.fake.SetKMSDelay(time.Hour)
	o := e.opts()
	o.Timeout = 300 * time.Millisecond
	done := make(chan error, 1)
	go func() { _, err := e.fetch(o); done <- err }()
	select {
	case err := <-done:
		e.wantClass(err, ErrUnreachable, "no answer within")
	case <-time.After(30 * time.Second):
		t.Fatal("Fetch did not return: the timeout does not bound a slow KMS")
	}
	// The caller's deadline bounds it too, with no timeout of its own.
	o.Timeout = 0
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := e.participant(o).Fetch(ctx, nil, e.group)
	e.wantClass(err, ErrUnreachable, "no answer within the round's deadline")
}

func TestKMSUnreachable(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	o := e.opts()
	o.KMSEndpoint, o.Timeout = dead, 500*time.Millisecond
	_, err = e.fetch(o)
	e.wantClass(err, ErrUnreachable, "Decrypt with")
}

func TestSealedShareOfAnotherGroup(t *testing.T) {
	e := newEnv(t)
	g2, shares2, err := psk.Split("othergroup", 2, []string{"alice", "bob", "carol"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = g2
	other := e.seal(shares2[0], "alice.other.kms.json")
	o := e.opts()
	o.SealedShare = other
	_, err = e.fetch(o)
	e.wantClass(err, ErrInvalidShare, "is for group")

	// Relabelled as this group's: the local checks pass, but the AAD KMS
	// is asked with is this group's, so KMS refuses to decrypt.
	o.SealedShare = e.editSealed(other, "relabelled.kms.json", func(s *SealedShare) { s.GroupID = e.group.ID })
	_, err = e.fetch(o)
	e.wantClass(err, ErrInvalidShare, "additional authenticated data")
	if last := e.fake.Audit(); last[len(last)-1].Code != "InvalidArgument" {
		t.Errorf("KMS's last decision is %+v, want an InvalidArgument refusal", last[len(last)-1])
	}
}

func TestSealedShareOfAnotherParticipant(t *testing.T) {
	e := newEnv(t)
	bob := e.seal(e.shares[1], "bob.share.kms.json")
	o := e.opts()
	o.SealedShare = bob
	_, err := NewParticipant("alice", o)
	e.wantClass(err, ErrInvalidShare, `participant "bob"'s, not "alice"'s`)

	// Relabelled as alice's, index 1: KMS refuses (the AAD binds bob, 2).
	o.SealedShare = e.editSealed(bob, "bob-as-alice.kms.json", func(s *SealedShare) { s.Participant, s.Index = "alice", 1 })
	_, err = e.fetch(o)
	e.wantClass(err, ErrInvalidShare, "additional authenticated data")

	// Relabelled with alice's name but bob's index: the group disagrees.
	o.SealedShare = e.editSealed(bob, "bob-name-only.kms.json", func(s *SealedShare) { s.Participant = "alice" })
	_, err = e.fetch(o)
	e.wantClass(err, ErrInvalidShare, "index 2")
}

func TestTamperedCiphertext(t *testing.T) {
	e := newEnv(t)
	o := e.opts()
	o.SealedShare = e.editSealed(e.sealed, "tampered.kms.json", func(s *SealedShare) {
		ct := s.CiphertextBytes()
		ct[len(ct)-5] ^= 0x01
		s.Ciphertext = base64.StdEncoding.EncodeToString(ct)
	})
	_, err := e.fetch(o)
	e.wantClass(err, ErrInvalidShare, "tampered")
}

func TestSealedWithAnotherKey(t *testing.T) {
	e := newEnv(t)
	o := e.opts()
	o.KMSKey = "projects/alice-project/locations/global/keyRings/mcbn/cryptoKeys/other"
	_, err := NewParticipant("alice", o)
	e.wantClass(err, ErrInvalidShare, "was sealed with "+testKey)
}

// A participant (or whoever holds its encrypter role) seals bob's share
// under alice's key and AAD: KMS decrypts it, and the binding check
// refuses it.
func TestKMSReturnsAnotherParticipantsShare(t *testing.T) {
	e := newEnv(t)
	c, err := newClient(context.Background(), e.kmsOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pt, err := psk.MarshalShare(e.shares[1])
	if err != nil {
		t.Fatal(err)
	}
	aad, _ := AAD(e.group.ID, 1, "alice")
	ct, version, err := c.encrypt(context.Background(), testKey, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	o := e.opts()
	o.SealedShare = filepath.Join(e.dir, "swapped.kms.json")
	if err := WriteSealed(o.SealedShare, &SealedShare{
		Version: SealedVersion, Type: TypeSealedShare, GroupID: e.group.ID, Index: 1, Participant: "alice",
		KMSKey: testKey, KeyVersion: version, Ciphertext: base64.StdEncoding.EncodeToString(ct),
	}); err != nil {
		t.Fatal(err)
	}
	_, err = e.fetch(o)
	e.wantClass(err, ErrInvalidShare, `KMS returned the share of participant "bob"`)

	// And a plaintext that is no share file at all.
	ct, version, err = c.encrypt(context.Background(), testKey, []byte(`{"hello":"world"}`), aad)
	if err != nil {
		t.Fatal(err)
	}
	o.SealedShare = filepath.Join(e.dir, "garbage.kms.json")
	if err := WriteSealed(o.SealedShare, &SealedShare{
		Version: SealedVersion, Type: TypeSealedShare, GroupID: e.group.ID, Index: 1, Participant: "alice",
		KMSKey: testKey, KeyVersion: version, Ciphertext: base64.StdEncoding.EncodeToString(ct),
	}); err != nil {
		t.Fatal(err)
	}
	_, err = e.fetch(o)
	e.wantClass(err, ErrInvalidShare, "not a share file")
}

// A share that decrypts and is bound correctly but fails Feldman (a
// participant sealing a wrong value) is for the gatherer to refuse;
// VerifyShare does it for callers without one.
func TestVerifyShareRefusesAForgedValue(t *testing.T) {
	e := newEnv(t)
	forged := *e.shares[0]
	forged.Value = append([]byte(nil), e.shares[1].Value...)
	o := e.opts()
	o.SealedShare = e.seal(&forged, "forged.kms.json")
	p := e.participant(o)
	s, err := p.Fetch(context.Background(), nil, e.group)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	defer s.Wipe()
	e.wantClass(p.VerifyShare(e.group, s), ErrInvalidShare, "alice")
}

func TestCheckGroup(t *testing.T) {
	e := newEnv(t)
	p := e.participant(e.opts())
	if err := p.CheckGroup(e.group); err != nil {
		t.Fatal(err)
	}
	g, _, err := psk.Split("kmsgroup", 2, []string{"bob", "alice", "carol"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.wantClass(p.CheckGroup(g), ErrInvalidShare)
	g, _, err = psk.Split("nogroup", 2, []string{"bob", "carol"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.wantClass(p.CheckGroup(g), ErrLocal, `no participant "alice"`)
	e.wantClass(p.CheckGroup(nil), ErrLocal)
	e.wantClass(p.Check(context.Background(), nil, g), ErrLocal)
	if err := p.Check(context.Background(), nil, e.group); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestConcurrentFetches(t *testing.T) {
	e := newEnv(t)
	p := e.participant(e.opts())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := p.Fetch(context.Background(), nil, e.group)
			s.Wipe()
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.participant(e.opts()).Fetch(ctx, nil, e.group)
	if Reason(err) != "canceled" {
		t.Fatalf("canceled fetch: %v (reason %s)", err, Reason(err))
	}
}

func TestNewParticipantRefusesBadOptions(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		edit func(o *Options)
		want string
	}{
		{"no sealed share", func(o *Options) { o.SealedShare = "" }, "sealed_share is required"},
		{"missing sealed share", func(o *Options) { o.SealedShare = filepath.Join(e.dir, "nope") }, "no such file"},
		{"bad key", func(o *Options) { o.KMSKey = "projects/p/keyRings/r" }, "kms_key"},
		{"bad audience", func(o *Options) { o.WIFAudience = "https://sts.googleapis.com" }, "wif_audience"},
		{"bad token source", func(o *Options) { o.TokenSource = "env" }, "token_source"},
		{"token file with launcher", func(o *Options) { o.TokenSource = TokenFromLauncher }, "token_file is for"},
		{"bad service account", func(o *Options) { o.ServiceAccount = "not an email" }, "service_account"},
		{"http STS off loopback", func(o *Options) { o.STSEndpoint = "http://sts.example.com/v1/token" }, "loopback"},
		{"ftp STS", func(o *Options) { o.STSEndpoint = "ftp://127.0.0.1/v1/token" }, "https"},
		{"http IAM off loopback", func(o *Options) { o.IAMCredentialsEndpoint = "http://10.0.0.1" }, "loopback"},
		{"plaintext KMS off loopback", func(o *Options) { o.KMSEndpoint = "10.1.2.3:443" }, "not a loopback"},
		{"plaintext KMS without endpoint", func(o *Options) { o.KMSEndpoint = "" }, "kms_insecure needs"},
		{"bad KMS endpoint", func(o *Options) { o.KMSEndpoint = "http://x" }, "host:port"},
		{"negative timeout", func(o *Options) { o.Timeout = -1 }, "timeout"},
		{"huge timeout", func(o *Options) { o.Timeout = time.Hour }, "timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := e.opts()
			c.edit(&o)
			_, err := NewParticipant("alice", o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, c.want)
			}
			if Reason(err) != "local" {
				t.Errorf("reason %s, want local", Reason(err))
			}
		})
	}
	if _, err := NewParticipant("not a name", e.opts()); Reason(err) != "local" {
		t.Errorf("bad name: %v", err)
	}
	// A malformed sealed file is an invalid share, not a local error.
	bad := filepath.Join(e.dir, "bad.kms.json")
	os.WriteFile(bad, []byte(`{"version":1,"type":"mcbn-sealed-share"}`), 0o644)
	o := e.opts()
	o.SealedShare = bad
	_, err := NewParticipant("alice", o)
	e.wantClass(err, ErrInvalidShare, bad)
}

func TestOptionsDefaults(t *testing.T) {
	e := newEnv(t)
	o := e.opts()
	o.TokenFile, o.STSEndpoint, o.IAMCredentialsEndpoint = "", "", ""
	p := e.participant(o)
	got := p.Options()
	if got.TokenFile != DefaultTokenFile || got.TokenSource != TokenFromFile || got.STSEndpoint != DefaultSTSURL || got.IAMCredentialsEndpoint != DefaultIAMCredentialsURL {
		t.Errorf("defaults: %+v", got)
	}
	if !strings.Contains(p.String(), testKey) || p.Name() != "alice" || p.Sealed().Participant != "alice" {
		t.Errorf("String/Name/Sealed: %s", p)
	}
}

func TestOptionsDecodeFromYAML(t *testing.T) {
	src := `
sealed_share: alice.share.kms.json
kms_key: ` + testKey + `
wif_audience: //iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov
token_file: /tmp/token
service_account: ` + testSA + `
sts_endpoint: http://127.0.0.1:1/v1/token
kms_endpoint: 127.0.0.1:2
kms_insecure: true
timeout: 15s
`
	var o Options
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&o); err != nil {
		t.Fatal(err)
	}
	if o.Timeout != 15*time.Second || !o.KMSInsecure || o.ServiceAccount != testSA || o.KMSEndpoint != "127.0.0.1:2" || o.TokenFile != "/tmp/token" {
		t.Errorf("decoded %+v", o)
	}
}

// A hostile or buggy STS that echoes the subject token in its error, and a
// KMS that echoes the access token: neither token reaches the error.
func TestEchoedTokensAreRedacted(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": "bad token " + r.PostForm.Get("subject_token")})
	}))
	defer srv.Close()
	o := e.opts()
	o.STSEndpoint = srv.URL + "/v1/token"
	_, err := e.fetch(o)
	e.wantClass(err, ErrSTSRejected, "[REDACTED]")

	access := "ya29.some-access-token-value"
	err = classifyKMS(context.Background(), "alice", "Decrypt with", testKey,
		status.Error(codes.PermissionDenied, "token "+access+" denied"), "1s", access)
	if strings.Contains(err.Error(), access) || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("KMS message not redacted: %v", err)
	}
}

func TestSTSSlowIsBoundedByTheTimeout(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	o := e.opts()
	o.STSEndpoint, o.Timeout = srv.URL+"/v1/token", 300*time.Millisecond
	done := make(chan error, 1)
	go func() { _, err := e.fetch(o); done <- err }()
	select {
	case err := <-done:
		e.wantClass(err, ErrUnreachable, "STS", "no answer within")
	case <-time.After(30 * time.Second):
		t.Fatal("Fetch did not return: the timeout does not bound a slow STS")
	}
}
