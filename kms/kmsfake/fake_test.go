package kmsfake

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kmsapi "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mcbn/mcbn/attest"
)

const testDigest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func start(t *testing.T) (*Server, *attest.DevAttester, Provider) {
	t.Helper()
	dir, err := os.MkdirTemp("", "kmsf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dev, err := attest.StartDevAttester(attest.DevAttesterConfig{Socket: filepath.Join(dir, "s"), ImageDigest: testDigest, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	s, err := Start(Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := Provider{
		ProjectNumber: "42", Pool: "pool-1", ID: "prov-1", Issuer: dev.Issuer(),
		AttributeMapping: map[string]string{"google.subject": "assertion.sub", "attribute.image_digest": "assertion.submods.container.image_digest"},
		Condition:        "assertion.swname == 'MCBN_DEV_ATTESTER'",
	}
	if _, err := s.AddProvider(p); err != nil {
		t.Fatal(err)
	}
	return s, dev, p
}

// exchange posts a token exchange form and returns the status and body.
func exchange(t *testing.T, s *Server, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(s.STSURL(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func form(aud, token string) url.Values {
	return url.Values{
		"grant_type":           {grantTokenExchange},
		"requested_token_type": {tokenTypeAccess},
		"subject_token_type":   {tokenTypeJWT},
		"audience":             {aud},
		"subject_token":        {token},
		"scope":                {"https://www.googleapis.com/auth/cloud-platform"},
	}
}

// The fake STS relies on attest.Verifier reporting ErrNonce only after
// every other check passed (see verifyUnbound). These pin it: a token that
// is valid but for channel binding is accepted, and each other defect is
// still refused.
func TestSTSVerifiesTheSubjectToken(t *testing.T) {
	s, dev, p := start(t)
	good, err := dev.Mint("https://sts.googleapis.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, body := exchange(t, s, form(p.Audience(), good))
	if code != 200 || body["token_type"] != "Bearer" || body["issued_token_type"] != tokenTypeAccess || body["expires_in"].(float64) != 3600 {
		t.Fatalf("good token: %d %v", code, body)
	}
	// A nonce in the token does not matter to STS.
	withNonce, _ := dev.Mint("https://sts.googleapis.com", []string{"0123456789abcdef"})
	if code, body := exchange(t, s, form(p.Audience(), withNonce)); code != 200 {
		t.Fatalf("token with a nonce: %d %v", code, body)
	}

	parts := strings.Split(good, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sig[5] ^= 1
	badSig := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	wrongAud, _ := dev.Mint("https://example.com", nil)
	now := time.Now()
	dev.SetMutate(attest.SetTimes(now.Add(-3*time.Hour), now.Add(-3*time.Hour), now.Add(-2*time.Hour)))
	expired, _ := dev.Mint("https://sts.googleapis.com", nil)
	dev.SetMutate(attest.SetClaim("https://evil.example", "iss"))
	wrongIss, _ := dev.Mint("https://sts.googleapis.com", nil)
	dev.SetMutate(attest.SetClaim("CONFIDENTIAL_SPACE", "swname"))
	condFalse, _ := dev.Mint("https://sts.googleapis.com", nil)
	dev.SetMutate()
	for _, c := range []struct {
		name, token, code, desc string
	}{
		{"bad signature", badSig, "invalid_grant", "Invalid ID Token: signature"},
		{"wrong audience", wrongAud, "invalid_grant", "audience"},
		{"expired", expired, "invalid_grant", "expired"},
		{"wrong issuer", wrongIss, "invalid_grant", "issuer"},
		{"condition false", condFalse, "unauthorized_client", "attribute condition"},
		{"not a JWT", "abc", "invalid_grant", "malformed"},
	} {
		code, body := exchange(t, s, form(p.Audience(), c.token))
		if code != 400 || body["error"] != c.code || !strings.Contains(body["error_description"].(string), c.desc) {
			t.Errorf("%s: %d %v", c.name, code, body)
		}
		if strings.Contains(body["error_description"].(string), c.token) {
			t.Errorf("%s: the error echoes the token", c.name)
		}
	}
}

func TestSTSRefusesMalformedExchanges(t *testing.T) {
	s, dev, p := start(t)
	good, _ := dev.Mint("https://sts.googleapis.com", nil)
	for _, c := range []struct {
		field, value, code string
	}{
		{"grant_type", "client_credentials", "unsupported_grant_type"},
		{"requested_token_type", tokenTypeJWT, "invalid_request"},
		{"subject_token_type", "urn:ietf:params:oauth:token-type:saml2", "invalid_request"},
		{"subject_token", "", "invalid_request"},
		{"audience", "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/pool-1/providers/other", "invalid_target"},
	} {
		f := form(p.Audience(), good)
		f.Set(c.field, c.value)
		if code, body := exchange(t, s, f); code != 400 || body["error"] != c.code {
			t.Errorf("%s=%q: %d %v", c.field, c.value, code, body)
		}
	}
}

func TestAttributeMappingAndPrincipals(t *testing.T) {
	s, dev, p := start(t)
	good, _ := dev.Mint("https://sts.googleapis.com", nil)
	_, body := exchange(t, s, form(p.Audience(), good))
	id := s.lookup(body["access_token"].(string))
	if id == nil || id.subject != attest.DevSubject || id.attributes["image_digest"] != testDigest || id.pool != p.PoolName() {
		t.Fatalf("identity %+v", id)
	}
	for member, want := range map[string]bool{
		p.PrincipalSet(): true,
		"principalSet://iam.googleapis.com/" + p.PoolName() + "/attribute.image_digest/" + testDigest:  true,
		"principalSet://iam.googleapis.com/" + p.PoolName() + "/attribute.image_digest/sha256:0":       false,
		"principal://iam.googleapis.com/" + p.PoolName() + "/subject/" + attest.DevSubject:             true,
		"principal://iam.googleapis.com/" + p.PoolName() + "/subject/other":                            false,
		"principalSet://iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/other/*": false,
		"user:" + attest.DevSubject: false,
	} {
		if id.matches(member) != want {
			t.Errorf("matches(%s) = %v", member, !want)
		}
	}
}

// kmsClient is the real Cloud KMS client over a plaintext connection
// carrying tok.
func kmsClient(t *testing.T, s *Server, tok string) *kmsapi.KeyManagementClient {
	t.Helper()
	conn, err := grpc.NewClient(s.KMSEndpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), method, req, reply, cc, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	c, err := kmsapi.NewKeyManagementClient(context.Background(), option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

func TestKMSEnforcesIAMAndKeyState(t *testing.T) {
	s, _, _ := start(t)
	key := "projects/p/locations/global/keyRings/r/cryptoKeys/k"
	if err := s.CreateKey(key); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice := kmsClient(t, s, s.UserToken("alice@example.com"))
	if _, err := alice.Encrypt(ctx, &kmspb.EncryptRequest{Name: key, Plaintext: []byte("x")}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("encrypt without a binding: %v", err)
	}
	s.Grant(key, RoleEncrypterDecrypter, "user:alice@example.com")
	enc, err := alice.Encrypt(ctx, &kmspb.EncryptRequest{Name: key, Plaintext: []byte("secret"), AdditionalAuthenticatedData: []byte("aad")})
	if err != nil || enc.Name != key+"/cryptoKeyVersions/1" {
		t.Fatalf("encrypt: %v %v", enc, err)
	}
	dec, err := alice.Decrypt(ctx, &kmspb.DecryptRequest{Name: key, Ciphertext: enc.Ciphertext, AdditionalAuthenticatedData: []byte("aad")})
	if err != nil || string(dec.Plaintext) != "secret" || !dec.UsedPrimary {
		t.Fatalf("decrypt: %v %v", dec, err)
	}
	if _, err := alice.Decrypt(ctx, &kmspb.DecryptRequest{Name: key, Ciphertext: enc.Ciphertext, AdditionalAuthenticatedData: []byte("other")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("decrypt with another AAD: %v", err)
	}
	// The ciphertext is bound to its key.
	key2 := key + "2"
	s.CreateKey(key2)
	s.Grant(key2, RoleEncrypterDecrypter, "user:alice@example.com")
	if _, err := alice.Decrypt(ctx, &kmspb.DecryptRequest{Name: key2, Ciphertext: enc.Ciphertext, AdditionalAuthenticatedData: []byte("aad")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("decrypt under another key: %v", err)
	}
	s.DisableVersion(key + "/cryptoKeyVersions/1")
	if _, err := alice.Decrypt(ctx, &kmspb.DecryptRequest{Name: key, Ciphertext: enc.Ciphertext, AdditionalAuthenticatedData: []byte("aad")}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("decrypt with a disabled version: %v", err)
	}
	v, err := alice.GetCryptoKeyVersion(ctx, &kmspb.GetCryptoKeyVersionRequest{Name: key + "/cryptoKeyVersions/1"})
	if err != nil || v.State != kmspb.CryptoKeyVersion_DISABLED {
		t.Errorf("GetCryptoKeyVersion: %v %v", v, err)
	}
	forged := kmsClient(t, s, "ya29.forged")
	if _, err := forged.Decrypt(ctx, &kmspb.DecryptRequest{Name: key, Ciphertext: enc.Ciphertext}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("forged token: %v", err)
	}
	var codesSeen []string
	for _, a := range s.Audit() {
		codesSeen = append(codesSeen, a.Method+":"+a.Code)
	}
	want := "Encrypt:PermissionDenied Encrypt:OK Decrypt:OK Decrypt:InvalidArgument Decrypt:InvalidArgument Decrypt:FailedPrecondition Decrypt:Unauthenticated"
	if got := strings.Join(codesSeen, " "); got != want {
		t.Errorf("audit:\n got %s\nwant %s", got, want)
	}
}

func TestExpiredAccessTokenIsRefused(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s, err := Start(Config{Logger: quiet, Now: func() time.Time { return clock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tok := s.UserToken("a@example.com")
	if s.lookup(tok) == nil {
		t.Fatal("fresh token unknown")
	}
	now = now.Add(2 * time.Hour)
	if s.lookup(tok) != nil {
		t.Fatal("expired token accepted")
	}
}
