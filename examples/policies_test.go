package examples_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/shareholder"
)

const csDigest = "sha256:d8e79af9a45dc4fe312aae57a9b69622c30dbfc7a00183065bfc81384f551cc2"

// csClaims is a production Confidential Space token's claim set, with the
// names and shapes Google documents.
func csClaims() map[string]any {
	return map[string]any{
		"iss": "https://confidentialcomputing.googleapis.com", "aud": "https://alice.example:8441",
		"sub": "https://www.googleapis.com/compute/v1/projects/operator-prod/zones/europe-west4-a/instances/mcbn-server-proxy",
		"exp": 1.9e9, "iat": 1.8e9, "nbf": 1.8e9,
		"swname": "CONFIDENTIAL_SPACE", "swversion": []any{"250301"}, "dbgstat": "disabled-since-boot",
		"hwmodel": "GCP_AMD_SEV", "secboot": true,
		"google_service_accounts": []any{"mcbn-runner@operator-prod.iam.gserviceaccount.com"},
		"submods": map[string]any{
			"confidential_space": map[string]any{"support_attributes": []any{"LATEST", "STABLE", "USABLE"}},
			"container": map[string]any{"image_digest": csDigest,
				"image_reference": "europe-docker.pkg.dev/operator-prod/mcbn/mcbn-proxy@" + csDigest,
				"cmd_override":    nil, "env_override": nil,
				"args": []any{"/mcbn", "proxy", "server", "--config", "/etc/mcbn/proxy.yaml"}},
			"gce": map[string]any{"project_id": "operator-prod", "zone": "europe-west4-a"},
		},
	}
}

func evalFile(t *testing.T, file string, claims map[string]any) bool {
	t.Helper()
	p, err := shareholder.CompilePolicy(readExample(t, "confidential-space", file), 0)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	ok, _ := p.Eval(context.Background(), claims, shareholder.RequestInfo{Time: time.Now(), RemoteAddr: "127.0.0.1:1", RemoteIP: "127.0.0.1"})
	return ok
}

// The Confidential Space policies accept what they should and refuse each
// way a token can fall short.
func TestConfidentialSpacePolicies(t *testing.T) {
	if !evalFile(t, "production.cel", csClaims()) {
		t.Fatal("production.cel refuses a production token")
	}
	sub := func(path []string, v any) map[string]any {
		c := csClaims()
		m := c
		for _, k := range path[:len(path)-1] {
			m = m[k].(map[string]any)
		}
		m[path[len(path)-1]] = v
		return c
	}
	refused := map[string]map[string]any{
		"debug image":      sub([]string{"dbgstat"}, "enabled"),
		"no STABLE":        sub([]string{"submods", "confidential_space", "support_attributes"}, []any{"LATEST"}),
		"other digest":     sub([]string{"submods", "container", "image_digest"}, "sha256:"+strings.Repeat("0", 64)),
		"other project":    sub([]string{"submods", "gce", "project_id"}, "attacker"),
		"shielded VM only": sub([]string{"hwmodel"}, "GCP_SHIELDED_VM"),
		"plain GCE":        sub([]string{"swname"}, "GCE"),
		"dev attester":     sub([]string{"swname"}, "MCBN_DEV_ATTESTER"),
		"no secure boot":   sub([]string{"secboot"}, false),
		"other account":    sub([]string{"google_service_accounts"}, []any{"x@y.iam.gserviceaccount.com"}),
		"other issuer":     sub([]string{"iss"}, "https://evil.example"),
		"no hwmodel":       sub([]string{"hwmodel"}, nil),
		// The operator's launch choices (trust-model review, finding 1).
		"cmd override":  sub([]string{"submods", "container", "cmd_override"}, []any{"client", "--listen", "tcp://0.0.0.0:19080"}),
		"env override":  sub([]string{"submods", "container", "env_override"}, map[string]any{"MCBN_PROXY_CONNECT": "tcp://attacker:80"}),
		"other argv":    sub([]string{"submods", "container", "args"}, []any{"/mcbn", "proxy", "server", "--config", "/tmp/other.yaml"}),
		"no cmd claims": sub([]string{"submods", "container"}, map[string]any{"image_digest": csDigest}),
	}
	for name, c := range refused {
		if evalFile(t, "production.cel", c) {
			t.Errorf("production.cel accepts a token with %s", name)
		}
	}
	stagingDebug := sub([]string{"dbgstat"}, "enabled")
	stagingDebug["submods"].(map[string]any)["gce"].(map[string]any)["project_id"] = "operator-staging"
	delete(stagingDebug["submods"].(map[string]any), "confidential_space")
	if !evalFile(t, "staging-debug.cel", stagingDebug) {
		t.Error("staging-debug.cel refuses a debug token of the staging project")
	}
	if evalFile(t, "staging-debug.cel", csClaims()) {
		t.Error("staging-debug.cel accepts the production project")
	}
	stagingDebug["submods"].(map[string]any)["container"].(map[string]any)["cmd_override"] = []any{"client"}
	if evalFile(t, "staging-debug.cel", stagingDebug) {
		t.Error("staging-debug.cel accepts a command override")
	}
	readme := readExample(t, "confidential-space", "README.md")
	mustContain(t, "confidential-space/README.md", readme, "tee-image-reference", "tee-restart-policy", "tee-container-log-redirect", "--bake")
	deploy := readExample(t, "confidential-space", "deploy.sh")
	mustContain(t, "deploy.sh", deploy, "tee-image-reference=", "confidential-space-images", "--shielded-secure-boot", "mcbn-proxy-server@sha256")
	for _, launchChoice := range []string{"tee-cmd", "tee-env-"} {
		if strings.Contains(strings.ReplaceAll(deploy, "# ", ""), launchChoice+"=") {
			t.Errorf("deploy.sh passes %s: the baked image refuses it and so do the policies", launchChoice)
		}
	}
}
