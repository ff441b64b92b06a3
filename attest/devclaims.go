package attest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"
)

// Claim values of dev attester tokens. swname and dbgstat are chosen so that
// a production policy (swname == "CONFIDENTIAL_SPACE", dbgstat ==
// "disabled-since-boot", "STABLE" in support_attributes) refuses them.
const (
	DevSWName         = "MCBN_DEV_ATTESTER"
	DevDebugStatus    = "enabled"
	DevHWModel        = "MCBN_DEV_GCP_AMD_SEV"
	DevProjectID      = "mcbn-dev"
	DevServiceAccount = "mcbn-dev-attester@mcbn-dev.iam.gserviceaccount.com"
	DevSubject        = "https://www.googleapis.com/compute/v1/projects/mcbn-dev/zones/dev-local/instances/dev-attester"
	// defaultAudience is what the launcher uses when a request names none.
	defaultAudience = "https://sts.googleapis.com"
)

// ExecutableDigest returns "sha256:" and the hex SHA-256 of the running
// executable (/proc/self/exe, so a binary replaced on disk since start is
// not what gets measured). The dev attester uses it as the default image
// digest, standing in for the container digest Confidential Space reports.
func ExecutableDigest() (string, error) {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		exe, err2 := os.Executable()
		if err2 != nil {
			return "", fmt.Errorf("attest: finding the executable: %w", err)
		}
		if f, err = os.Open(exe); err != nil {
			return "", fmt.Errorf("attest: opening the executable: %w", err)
		}
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("attest: hashing the executable: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// devClaims builds the claims of one dev token, shaped like a Confidential
// Space token (see docs/attestation.md). Every call returns fresh maps, so a
// mutate hook may change them freely.
func devClaims(issuer, audience string, nonces []string, now time.Time, lifetime time.Duration, digest, reference string) map[string]any {
	if audience == "" {
		audience = defaultAudience
	}
	c := map[string]any{
		"iss":                     issuer,
		"aud":                     audience,
		"sub":                     DevSubject,
		"iat":                     now.Unix(),
		"nbf":                     now.Unix(),
		"exp":                     now.Add(lifetime).Unix(),
		"secboot":                 false,
		"hwmodel":                 DevHWModel,
		"swname":                  DevSWName,
		"swversion":               []any{"dev"},
		"dbgstat":                 DevDebugStatus,
		"google_service_accounts": []any{DevServiceAccount},
		"submods": map[string]any{
			"container": map[string]any{
				"image_reference": reference,
				"image_digest":    digest,
				"image_id":        digest,
				"restart_policy":  "Never",
				"env_override":    nil,
				"cmd_override":    nil,
				"env":             map[string]any{},
				"args":            []any{},
			},
			"gce": map[string]any{
				"zone":           "dev-local",
				"project_id":     DevProjectID,
				"project_number": "0",
				"instance_name":  "dev-attester",
				"instance_id":    "0",
			},
			"confidential_space": map[string]any{
				"support_attributes": []any{},
			},
		},
	}
	switch len(nonces) {
	case 0:
	case 1:
		c["eat_nonce"] = nonces[0]
	default:
		list := make([]any, len(nonces))
		for i, n := range nonces {
			list[i] = n
		}
		c["eat_nonce"] = list
	}
	return c
}

// SetClaim returns a mutate hook that sets the claim at path (nested objects
// are created as needed) to value, e.g.
// SetClaim(`sha256:...`, "submods", "container", "image_digest").
func SetClaim(value any, path ...string) func(map[string]any) {
	return func(c map[string]any) {
		if len(path) == 0 {
			return
		}
		m := c
		for _, p := range path[:len(path)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[path[len(path)-1]] = value
	}
}

// SetTimes returns a mutate hook that sets iat, nbf and exp.
func SetTimes(iat, nbf, exp time.Time) func(map[string]any) {
	return func(c map[string]any) {
		c["iat"], c["nbf"], c["exp"] = iat.Unix(), nbf.Unix(), exp.Unix()
	}
}
