package shareholder

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcbn/mcbn/attest"
)

const exampleDir = "../examples/shareholder"

// demoDigest is the image digest the example's dev attester is started with.
const demoDigest = "sha256:d6ccd81104d3611223453c1c891192f9587f8ecb13515a3b602242c7748b503f"

// The example configs load and validate, and their policies do what the
// README says.
func TestExamples(t *testing.T) {
	for i, name := range names {
		c, err := LoadConfig(filepath.Join(exampleDir, name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != name || c.Consent != ConsentGranted || !strings.HasSuffix(c.Listen, ":844"+string(rune('1'+i))) {
			t.Errorf("%s: %+v", name, c)
		}
		if !strings.Contains(c.PolicyText(), demoDigest) {
			t.Errorf("%s: policy does not name the demo digest", name)
		}
	}
	// dev-policy.cel accepts a dev attester token of the demo digest;
	// production-policy.cel refuses it and accepts a production claim set.
	att, err := attest.StartDevAttester(attest.DevAttesterConfig{
		Socket: filepath.Join(t.TempDir(), "a.sock"), ImageDigest: demoDigest, Key: attesterKey(), Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	v, _ := attest.NewVerifier(attest.VerifierConfig{Issuer: att.Issuer(), Audience: "a", Logger: quietLogger()})
	nonce := strings.Repeat("cd", 32)
	tok, _ := att.Mint("a", []string{nonce})
	claims, err := v.Verify(context.Background(), tok, nonce)
	if err != nil {
		t.Fatal(err)
	}
	dev, _ := readSmallFile(filepath.Join(exampleDir, "dev-policy.cel"), 1<<16)
	prod, _ := readSmallFile(filepath.Join(exampleDir, "production-policy.cel"), 1<<16)
	if ok, err := evalPolicy(t, string(dev), claims.Raw); !ok {
		t.Fatalf("dev-policy.cel refused a dev token: %v", err)
	}
	if ok, _ := evalPolicy(t, string(prod), claims.Raw); ok {
		t.Fatal("production-policy.cel accepted a dev token")
	}
	pc := productionClaims(demoDigest)
	attest.SetClaim("my-prod-project", "submods", "gce", "project_id")(pc)
	if ok, err := evalPolicy(t, string(prod), pc); !ok {
		t.Fatalf("production-policy.cel refused production claims: %v", err)
	}
}
