package shareholder

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
)

// productionClaims is a claim set shaped like a real Confidential Space
// token of a production image.
func productionClaims(digest string) map[string]any {
	return map[string]any{
		"iss": attest.IssuerConfidentialSpace, "aud": "mcbn", "sub": "https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/i",
		"exp": 1.9e9, "iat": 1.8e9, "nbf": 1.8e9,
		"swname": "CONFIDENTIAL_SPACE", "swversion": []any{"250301"}, "dbgstat": "disabled-since-boot",
		"hwmodel": "GCP_INTEL_TDX", "secboot": true,
		"google_service_accounts": []any{"runner@prod-project.iam.gserviceaccount.com"},
		"submods": map[string]any{
			"confidential_space": map[string]any{"support_attributes": []any{"LATEST", "STABLE", "USABLE"}},
			"container": map[string]any{"image_digest": digest, "image_reference": "us-docker.pkg.dev/p/r/mcbn@" + digest,
				"cmd_override": nil, "env_override": nil, "env": map[string]any{"PATH": "/"},
				"args": []any{"/mcbn", "proxy", "server", "--config", "/etc/mcbn/proxy.yaml"}},
			"gce": map[string]any{"project_id": "prod-project", "zone": "us-central1-a"},
		},
	}
}

func evalPolicy(t *testing.T, text string, claims map[string]any) (bool, error) {
	t.Helper()
	p, err := CompilePolicy(text, 0)
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, text)
	}
	return p.Eval(context.Background(), claims, RequestInfo{Time: time.Now(), RemoteAddr: "127.0.0.1:1", RemoteIP: "127.0.0.1"})
}

func TestConfidentialSpacePolicy(t *testing.T) {
	other := "sha256:" + strings.Repeat("0", 64)
	text, err := ConfidentialSpacePolicy(CSPolicyOptions{
		ImageDigests: []string{testDigest, other}, Projects: []string{"prod-project"},
		ServiceAccounts: []string{"runner@prod-project.iam.gserviceaccount.com"},
		Args:            []string{"/mcbn", "proxy", "server", "--config", "/etc/mcbn/proxy.yaml"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := evalPolicy(t, text, productionClaims(testDigest)); !ok || err != nil {
		t.Fatalf("production claims refused: %v %v\n%s", ok, err, text)
	}
	mutations := map[string]func(map[string]any){
		"debug image": func(c map[string]any) { c["dbgstat"] = "enabled" },
		"not CS":      func(c map[string]any) { c["swname"] = "GCE" },
		"not STABLE": func(c map[string]any) {
			attest.SetClaim([]any{"LATEST"}, "submods", "confidential_space", "support_attributes")(c)
		},
		"other digest": func(c map[string]any) {
			attest.SetClaim("sha256:"+strings.Repeat("1", 64), "submods", "container", "image_digest")(c)
		},
		"digest prefix": func(c map[string]any) { attest.SetClaim(testDigest[:20], "submods", "container", "image_digest")(c) },
		"other project": func(c map[string]any) { attest.SetClaim("prod-project2", "submods", "gce", "project_id")(c) },
		"other SA":      func(c map[string]any) { c["google_service_accounts"] = []any{"x@y.iam.gserviceaccount.com"} },
		"no support attrs": func(c map[string]any) {
			delete(c["submods"].(map[string]any)["confidential_space"].(map[string]any), "support_attributes")
		},
		"shielded VM, no TEE": func(c map[string]any) { c["hwmodel"] = "GCP_SHIELDED_VM" },
		"no hwmodel":          func(c map[string]any) { delete(c, "hwmodel") },
		"unknown hwmodel":     func(c map[string]any) { c["hwmodel"] = "GCP_SOMETHING_NEW" },
		"secure boot off":     func(c map[string]any) { c["secboot"] = false },
		"no secboot":          func(c map[string]any) { delete(c, "secboot") },
		// The operator's launch choices (trust-model review, finding 1).
		"cmd override": func(c map[string]any) {
			attest.SetClaim([]any{"client", "--listen", "tcp://0.0.0.0:19080"}, "submods", "container", "cmd_override")(c)
		},
		"env override": func(c map[string]any) {
			attest.SetClaim(map[string]any{"MCBN_PROXY_CONNECT": "tcp://attacker:80"}, "submods", "container", "env_override")(c)
		},
		"other args": func(c map[string]any) {
			attest.SetClaim([]any{"/mcbn", "proxy", "server", "--config", "/tmp/evil.yaml"}, "submods", "container", "args")(c)
		},
		"no cmd_override claim": func(c map[string]any) {
			delete(c["submods"].(map[string]any)["container"].(map[string]any), "cmd_override")
		},
	}
	for name, m := range mutations {
		c := productionClaims(testDigest)
		m(c)
		if ok, _ := evalPolicy(t, text, c); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The production policy refuses real dev attester tokens; the --dev
// variant accepts them.
func TestPolicyAgainstDevTokens(t *testing.T) {
	f := newFixture(t)
	v, err := attest.NewVerifier(attest.VerifierConfig{Issuer: f.att.Issuer(), Audience: "mcbn", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	nonce := strings.Repeat("ab", 32)
	tok, err := f.att.Mint("mcbn", []string{nonce})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(context.Background(), tok, nonce)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := ConfidentialSpacePolicy(CSPolicyOptions{ImageDigests: []string{testDigest}, AnyProject: true})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := evalPolicy(t, prod, claims.Raw); ok {
		t.Fatal("production policy accepted a dev attester token")
	}
	if ok, err := evalPolicy(t, f.devPolicy, claims.Raw); !ok || err != nil {
		t.Fatalf("dev policy refused a dev token: %v", err)
	}
}

func TestPolicyGeneratorRejectsBadInput(t *testing.T) {
	for _, o := range []CSPolicyOptions{
		{},
		{ImageDigests: []string{"sha256:abc"}},
		{ImageDigests: []string{testDigest + "' || true || '"}},
		{ImageDigests: []string{testDigest}, Projects: []string{"a' || true"}},
		{ImageDigests: []string{testDigest}, Projects: []string{"prod-project"}, ServiceAccounts: []string{"nobody"}},
		{ImageDigests: []string{testDigest}},                                                       // no project, no --any-project
		{ImageDigests: []string{testDigest}, Projects: []string{"prod-project"}, AnyProject: true}, // both
		{ImageDigests: []string{testDigest}, Projects: []string{"prod-project"}, Args: []string{"a' || true || '"}},
		{ImageDigests: []string{testDigest}, Projects: []string{"prod-project"}, AllowCmdOverride: []string{"x\\"}},
	} {
		if _, err := ConfidentialSpacePolicy(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestCompilePolicyErrors(t *testing.T) {
	for text, want := range map[string]string{
		"assertion.swname == ": "<input>:1:21",
		"1 + 2":                "evaluates to int, want bool",
		"nosuchvar == 1":       "undeclared reference",
		"request.time < timestamp('2000-01-01T00:00:00Z')\n&& 1 +": "2:",
	} {
		_, err := CompilePolicy(text, 0)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to mention %q", text, err, want)
		}
	}
	// Evaluation errors and non-bool results refuse.
	p, err := CompilePolicy("assertion.nosuchclaim == 'x'", 0)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := p.Eval(context.Background(), map[string]any{}, RequestInfo{}); ok || err == nil {
		t.Fatal("a missing claim did not refuse with an error")
	}
	p, _ = CompilePolicy("assertion.x", 0)
	if ok, err := p.Eval(context.Background(), map[string]any{"x": "yes"}, RequestInfo{}); ok || err == nil {
		t.Fatal("a string result was accepted")
	}
	// The cost limit stops an expensive policy.
	p, _ = CompilePolicy("[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, a+b+c > 0)))", 100)
	if ok, err := p.Eval(context.Background(), nil, RequestInfo{}); ok || err == nil {
		t.Fatal("cost limit not enforced")
	}
	// request variables work.
	p, _ = CompilePolicy("request.remote_ip == '127.0.0.1' && request.time > timestamp('2020-01-01T00:00:00Z')", 0)
	if ok, err := p.Eval(context.Background(), nil, RequestInfo{Time: time.Now(), RemoteIP: "127.0.0.1"}); !ok || err != nil {
		t.Fatalf("request policy: %v %v", ok, err)
	}
}

// An override the participant listed is accepted exactly as listed and in
// no other form; an empty override list counts as none.
func TestConfidentialSpacePolicyCmdOverride(t *testing.T) {
	allowed := []string{"server", "--config", "/etc/mcbn/b.yaml"}
	text, err := ConfidentialSpacePolicy(CSPolicyOptions{ImageDigests: []string{testDigest}, Projects: []string{"prod-project"}, AllowCmdOverride: allowed})
	if err != nil {
		t.Fatal(err)
	}
	set := func(v any) map[string]any {
		c := productionClaims(testDigest)
		attest.SetClaim(v, "submods", "container", "cmd_override")(c)
		return c
	}
	if ok, err := evalPolicy(t, text, set([]any{"server", "--config", "/etc/mcbn/b.yaml"})); !ok || err != nil {
		t.Fatalf("the allowed override was refused: %v\n%s", err, text)
	}
	for name, v := range map[string]any{
		"none":         nil,
		"other config": []any{"server", "--config", "/etc/mcbn/c.yaml"},
		"extra flag":   []any{"server", "--config", "/etc/mcbn/b.yaml", "--connect", "tcp://x:1"},
	} {
		if ok, _ := evalPolicy(t, text, set(v)); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	strict, err := ConfidentialSpacePolicy(CSPolicyOptions{ImageDigests: []string{testDigest}, Projects: []string{"prod-project"}})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := evalPolicy(t, strict, set([]any{})); !ok || err != nil {
		t.Fatalf("an empty override list was refused: %v", err)
	}
	if ok, _ := evalPolicy(t, strict, set([]any{"client"})); ok {
		t.Fatal("an override was accepted by a policy that allows none")
	}
}
