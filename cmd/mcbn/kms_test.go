package main

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/kms"
	"github.com/mcbn/mcbn/kms/kmsfake"
	"github.com/mcbn/mcbn/psk"
)

const kmsTestKey = "projects/alice-project/locations/global/keyRings/mcbn/cryptoKeys/mcbn-share"

// kmsFakes starts the dev attester and the STS/KMS fakes with alice's key,
// a provider for the dev attester and the pool's decrypter binding.
func kmsFakes(t *testing.T) (*kmsfake.Server, *attest.DevAttester, string) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sock, err := os.MkdirTemp("", "kmscli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	dev, err := attest.StartDevAttester(attest.DevAttesterConfig{Socket: filepath.Join(sock, "s"), ImageDigest: "sha256:" + strings.Repeat("4", 64), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	fake, err := kmsfake.Start(kmsfake.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	p := kmsfake.Provider{ProjectNumber: "77", Pool: "mcbn-proxies", ID: "confidential-space", Issuer: dev.Issuer(),
		Condition: "assertion.swname == 'MCBN_DEV_ATTESTER'"}
	aud, err := fake.AddProvider(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.CreateKey(kmsTestKey); err != nil {
		t.Fatal(err)
	}
	fake.Grant(kmsTestKey, kmsfake.RoleDecrypter, p.PrincipalSet())
	fake.Grant(kmsTestKey, kmsfake.RoleEncrypter, "user:alice@example.com")
	return fake, dev, aud
}

// The walkthrough of docs/participants.md against the fakes: split, seal
// alice's share with the CLI, and the proxy side gets it back from KMS.
func TestPskSealThenFetch(t *testing.T) {
	fake, dev, aud := kmsFakes(t)
	dir := pskSplitDemo(t)
	tokFile := filepath.Join(t.TempDir(), "access-token")
	os.WriteFile(tokFile, []byte(fake.UserToken("alice@example.com")+"\n"), 0o600)
	out := filepath.Join(dir, "alice.share.kms.json")
	seal := func(extra ...string) (int, string, string) {
		args := append([]string{"psk", "seal", "--kms", kmsTestKey, "--share", filepath.Join(dir, "alice.share.json"),
			"--kms-endpoint", fake.KMSEndpoint(), "--kms-insecure", "--access-token-file", tokFile}, extra...)
		return pskRunCLI(args...)
	}
	code, stdout, stderr := seal("--out", out, "--group", filepath.Join(dir, "group.json"))
	if code != 0 || stderr != "" {
		t.Fatalf("seal: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, `participant 1 "alice"`) || !strings.Contains(stdout, kmsTestKey+"/cryptoKeyVersions/1") {
		t.Errorf("seal output %q", stdout)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("sealed file: %v %v", fi, err)
	}
	alice, err := psk.LoadShare(filepath.Join(dir, "alice.share.json"))
	if err != nil {
		t.Fatal(err)
	}
	sealedBytes, _ := os.ReadFile(out)
	if strings.Contains(string(sealedBytes), hex.EncodeToString(alice.Value)) {
		t.Fatal("the sealed file holds the share value in clear")
	}

	token, err := dev.Mint(kms.AttestationAudience, nil)
	if err != nil {
		t.Fatal(err)
	}
	tf := filepath.Join(t.TempDir(), "attestation_verifier_claims_token")
	os.WriteFile(tf, []byte(token), 0o600)
	p, err := kms.NewParticipant("alice", kms.Options{
		SealedShare: out, KMSKey: kmsTestKey, WIFAudience: aud, TokenFile: tf,
		STSEndpoint: fake.STSURL(), KMSEndpoint: fake.KMSEndpoint(), KMSInsecure: true, Timeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := psk.LoadGroup(filepath.Join(dir, "group.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Fetch(context.Background(), nil, g)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	defer s.Wipe()
	if hex.EncodeToString(s.Value) != hex.EncodeToString(alice.Value) || p.VerifyShare(g, s) != nil {
		t.Fatal("Fetch did not return alice's share")
	}

	// Refusals.
	code, _, stderr = seal("--out", out)
	if code != 1 || !strings.Contains(stderr, "refusing to overwrite") {
		t.Errorf("overwrite: exit %d %q", code, stderr)
	}
	g2 := filepath.Join(t.TempDir(), "keys2")
	if code, _, errs := pskRunCLI("psk", "split", "--group", "other", "--threshold", "2", "--participants", "alice,bob", "--out", g2); code != 0 {
		t.Fatal(errs)
	}
	code, _, stderr = seal("--out", out+".2", "--group", filepath.Join(g2, "group.json"))
	if code != 1 || !strings.Contains(stderr, "is a share of group") {
		t.Errorf("wrong group: exit %d %q", code, stderr)
	}
	os.WriteFile(tokFile, []byte(fake.UserToken("mallory@example.com")), 0o600)
	code, _, stderr = seal("--out", out+".3")
	if code != 1 || !strings.Contains(stderr, "permission denied") || !strings.Contains(stderr, "useToEncrypt") {
		t.Errorf("no encrypter role: exit %d %q", code, stderr)
	}
	if _, err := os.Stat(out + ".3"); err == nil {
		t.Error("a failed seal left a file")
	}
	for _, args := range [][]string{
		{"psk", "seal", "--share", "x", "--out", "y"},
		{"psk", "seal", "--kms", "projects/p", "--share", "x", "--out", "y"},
	} {
		if code, _, stderr := pskRunCLI(args...); code != 2 || !oneLine(stderr) {
			t.Errorf("%v: exit %d %q", args, code, stderr)
		}
	}
}

func TestParticipantGCPSetup(t *testing.T) {
	digest := "sha256:a76fd40d851d895f6eee2b047ceaf84fcb06812ef1707dbc9a22e4e74f4cfd1f"
	base := []string{"participant", "gcp-setup", "--project", "alice-project", "--operator-project", "operator-project",
		"--image-digest", digest, "--participant", "alice"}
	common := []string{
		"https://confidentialcomputing.googleapis.com",
		"https://sts.googleapis.com",
		"roles/cloudkms.cryptoKeyDecrypter",
		"google.subject", "assertion.sub",
		"principalSet://iam.googleapis.com/",
		"assertion.swname == 'CONFIDENTIAL_SPACE'",
		"assertion.dbgstat == 'disabled-since-boot'",
		"'STABLE' in assertion.submods.confidential_space.support_attributes",
		"assertion.hwmodel in ['GCP_AMD_SEV', 'GCP_AMD_SEV_ES', 'GCP_INTEL_TDX']",
		"assertion.secboot == true",
		"assertion.submods.container.image_digest == '" + digest + "'",
		"assertion.submods.gce.project_id == 'operator-project'",
		"cmd_override == null", "env_override == null",
		"kms_key: projects/alice-project/locations/global/keyRings/mcbn/cryptoKeys/mcbn-share",
	}
	for _, c := range []struct {
		name  string
		extra []string
		want  []string
	}{
		{"gcloud", nil, []string{"gcloud iam workload-identity-pools providers create-oidc", "--issuer-uri=", "--allowed-audiences=", "--attribute-mapping=", "--attribute-condition=", "gcloud kms keys add-iam-policy-binding"}},
		{"terraform", []string{"--terraform"}, []string{`resource "google_iam_workload_identity_pool_provider"`, "issuer_uri", "allowed_audiences", "attribute_mapping", "attribute_condition", `resource "google_kms_crypto_key_iam_member"`}},
		{"impersonation", []string{"--service-account", "reader@alice-project.iam.gserviceaccount.com", "--operator-service-account", "vm@operator-project.iam.gserviceaccount.com"},
			[]string{"roles/iam.workloadIdentityUser", "serviceAccount:reader@alice-project.iam.gserviceaccount.com", "'vm@operator-project.iam.gserviceaccount.com'"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := run(append(append([]string(nil), base...), c.extra...)...)
			if code != 0 || errs != "" {
				t.Fatalf("exit %d: %s", code, errs)
			}
			for _, w := range append(append([]string(nil), common...), c.want...) {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
		})
	}
	code, _, errs := run("participant", "gcp-setup", "--project", "alice-project", "--image-digest", digest)
	if code != 2 || !strings.Contains(errs, "--operator-project") || !oneLine(errs) {
		t.Errorf("no operator project: exit %d %q", code, errs)
	}
	code, out, errs := run("participant", "gcp-setup", "--project", "alice-project", "--image-digest", digest, "--any-project")
	if code != 0 || !strings.Contains(errs, "warning: --any-project") || strings.Contains(out, "project_id") {
		t.Errorf("--any-project: exit %d %q", code, errs)
	}
	code, _, errs = run("participant", "gcp-setup", "--project", "Alice", "--operator-project", "operator-project", "--image-digest", digest)
	if code != 2 || !strings.Contains(errs, "--project") {
		t.Errorf("bad project: exit %d %q", code, errs)
	}
}
