package kms

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Values every KMS participant's provider and binding use.
const (
	// ConfidentialSpaceIssuerURI is the provider's issuer, as Google's
	// Confidential Space documentation writes it (tokens carry it without
	// the final slash; WIF accepts both).
	ConfidentialSpaceIssuerURI = "https://confidentialcomputing.googleapis.com/"
	// RoleDecrypter is granted to the approved workload.
	RoleDecrypter = "roles/cloudkms.cryptoKeyDecrypter"
	// RoleEncrypter is granted to whoever seals the share.
	RoleEncrypter = "roles/cloudkms.cryptoKeyEncrypter"
	// RoleWorkloadIdentityUser lets the pool impersonate a service account.
	RoleWorkloadIdentityUser = "roles/iam.workloadIdentityUser"
	// MaxConditionLen is Workload Identity Federation's limit on an
	// attribute condition.
	MaxConditionLen = 4096
)

// AttributeMapping is the provider's attribute mapping: the subject is the
// VM (its selfLink), and the image digest becomes an attribute so that the
// IAM binding can name it.
var AttributeMapping = [][2]string{
	{"google.subject", "assertion.sub"},
	{"attribute.image_digest", "assertion.submods.container.image_digest"},
}

// Defaults of GCPSetupOptions.
const (
	DefaultSetupLocation = "global"
	DefaultSetupKeyRing  = "mcbn"
	DefaultSetupKey      = "mcbn-share"
	DefaultSetupPool     = "mcbn-proxies"
	DefaultSetupProvider = "confidential-space"
)

// GCPSetupOptions describe a participant's Google Cloud resources.
type GCPSetupOptions struct {
	// Project is the participant's own project: it holds the key ring,
	// the key and the pool. Required.
	Project string
	// Location of the key ring (default DefaultSetupLocation).
	Location string
	// KeyRing, Key, Pool and Provider ids (defaults above).
	KeyRing, Key, Pool, Provider string
	// ImageDigests the IAM binding names ("sha256:" + 64 hex). Required;
	// the condition must admit the same ones.
	ImageDigests []string
	// Condition is the provider's attribute condition, one line of CEL over
	// assertion (see WIFCondition). Required.
	Condition string
	// ServiceAccount, when set, is a service account of the participant's
	// that the pool impersonates and that holds the decrypter role;
	// otherwise the pool's principals hold it directly.
	ServiceAccount string
	// Participant is the participant's name in the group, for the seal
	// command and the proxy entry printed at the end (default "NAME").
	Participant string
}

var (
	setupProjectRE  = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	setupLocationRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	setupKMSIDRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)
	setupPoolRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{2,30}[a-z0-9]$`)
	setupDigestRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

func (o *GCPSetupOptions) check() error {
	if o.Location == "" {
		o.Location = DefaultSetupLocation
	}
	if o.KeyRing == "" {
		o.KeyRing = DefaultSetupKeyRing
	}
	if o.Key == "" {
		o.Key = DefaultSetupKey
	}
	if o.Pool == "" {
		o.Pool = DefaultSetupPool
	}
	if o.Provider == "" {
		o.Provider = DefaultSetupProvider
	}
	if o.Participant == "" {
		o.Participant = "NAME"
	}
	switch {
	case !setupProjectRE.MatchString(o.Project):
		return fmt.Errorf("--project %q is not a GCP project id", o.Project)
	case !setupLocationRE.MatchString(o.Location):
		return fmt.Errorf("--location %q is not a KMS location", o.Location)
	case !setupKMSIDRE.MatchString(o.KeyRing):
		return fmt.Errorf("--key-ring %q: 1-63 of letters, digits, _ and -", o.KeyRing)
	case !setupKMSIDRE.MatchString(o.Key):
		return fmt.Errorf("--key %q: 1-63 of letters, digits, _ and -", o.Key)
	case !setupPoolRE.MatchString(o.Pool):
		return fmt.Errorf("--pool %q: 4-32 of lowercase letters, digits and -", o.Pool)
	case !setupPoolRE.MatchString(o.Provider) || strings.HasPrefix(o.Provider, "gcp-"):
		return fmt.Errorf("--provider %q: 4-32 of lowercase letters, digits and -, not starting with gcp-", o.Provider)
	case o.ServiceAccount != "" && !serviceAccountRE.MatchString(o.ServiceAccount):
		return fmt.Errorf("--service-account %q is not a service account email", o.ServiceAccount)
	case !nameRE.MatchString(o.Participant):
		return fmt.Errorf("--participant %q is not a valid participant name", o.Participant)
	case len(o.ImageDigests) == 0:
		return errors.New("at least one --image-digest is required")
	}
	for _, d := range o.ImageDigests {
		if !setupDigestRE.MatchString(d) {
			return fmt.Errorf("--image-digest %q is not sha256: and 64 lowercase hex digits", d)
		}
		if !strings.Contains(o.Condition, "'"+d+"'") {
			return fmt.Errorf("the attribute condition does not admit image digest %s", d)
		}
	}
	return checkCondition(o.Condition)
}

func checkCondition(c string) error {
	switch {
	case strings.TrimSpace(c) == "":
		return errors.New("an attribute condition is required")
	case len(c) > MaxConditionLen:
		return fmt.Errorf("the attribute condition is %d characters, Workload Identity Federation takes at most %d", len(c), MaxConditionLen)
	case strings.ContainsAny(c, "\n\r\"\\$`"):
		// Single-quoted CEL strings only: the condition is then written
		// into the shell script and the Terraform file without escaping.
		return errors.New("the attribute condition must be one line without \" \\ $ or backquote")
	}
	return nil
}

// WIFCondition turns a CEL release policy over assertion (such as the
// confidential-space preset of `mcbn shareholder policy`) into a Workload
// Identity Federation attribute condition: the same expression with comment
// lines dropped and lines joined. WIF conditions use the same claim names
// under assertion.
func WIFCondition(policy string) (string, error) {
	var parts []string
	for _, line := range strings.Split(policy, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		if strings.Contains(line, "//") {
			return "", errors.New("the policy has a trailing comment; WIF conditions take none")
		}
		parts = append(parts, line)
	}
	c := strings.Join(parts, " ")
	if err := checkCondition(c); err != nil {
		return "", err
	}
	return c, nil
}

func (o *GCPSetupOptions) keyName() string {
	return "projects/" + o.Project + "/locations/" + o.Location + "/keyRings/" + o.KeyRing + "/cryptoKeys/" + o.Key
}

func mappingFlag() string {
	var b []string
	for _, m := range AttributeMapping {
		b = append(b, m[0]+"="+m[1])
	}
	return strings.Join(b, ",")
}

// GCPSetupCommands returns a bash script of gcloud commands that create the
// participant's key ring and key, a workload identity pool with an OIDC
// provider for Confidential Space tokens (issuer, allowed audience,
// attribute mapping, attribute condition), and the IAM bindings: the
// decrypter role to the pool's principals running one of the image digests
// (or to a service account they may impersonate), the encrypter role to
// the person who seals. It ends with the seal command and the proxy entry.
func GCPSetupCommands(o GCPSetupOptions) (string, error) {
	if err := o.check(); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	kms := fmt.Sprintf("--keyring=%s --location=%s --project=\"$PROJECT\"", o.KeyRing, o.Location)
	w("#!/usr/bin/env bash")
	w("# mcbn participant gcp-setup: Cloud KMS participant %q in project %s.", o.Participant, o.Project)
	w("# Review before running: it lets the image digest(s) below, running in")
	w("# Confidential Space as the attribute condition says, decrypt your share.")
	w("set -euo pipefail")
	w("")
	w("PROJECT=%s", o.Project)
	w("PROJECT_NUMBER=\"$(gcloud projects describe \"$PROJECT\" --format='value(projectNumber)')\"")
	w("POOL_NAME=\"projects/${PROJECT_NUMBER}/locations/global/workloadIdentityPools/%s\"", o.Pool)
	w("")
	w("gcloud services enable cloudkms.googleapis.com iam.googleapis.com iamcredentials.googleapis.com sts.googleapis.com --project=\"$PROJECT\"")
	w("")
	w("# 1. The key that seals your share. Disabling its version revokes your consent.")
	w("gcloud kms keyrings create %s --location=%s --project=\"$PROJECT\"", o.KeyRing, o.Location)
	w("gcloud kms keys create %s %s --purpose=encryption", o.Key, kms)
	w("")
	w("# 2. A pool for mcbn proxies only: every provider of the pool can reach the binding below.")
	w("gcloud iam workload-identity-pools create %s --location=global --project=\"$PROJECT\" --display-name=\"mcbn proxies\"", o.Pool)
	w("")
	w("# 3. The provider: Confidential Space attestation tokens for STS, admitted only when")
	w("#    the condition holds (production image, no debug, STABLE, TEE hardware, secure")
	w("#    boot, the approved image digest and operator project, no launch-time overrides).")
	w("CONDITION=$(cat <<'MCBN_CONDITION'")
	w("%s", o.Condition)
	w("MCBN_CONDITION")
	w(")")
	w("gcloud iam workload-identity-pools providers create-oidc %s \\", o.Provider)
	w("  --location=global --workload-identity-pool=%s --project=\"$PROJECT\" \\", o.Pool)
	w("  --issuer-uri=%q \\", ConfidentialSpaceIssuerURI)
	w("  --allowed-audiences=%q \\", AttestationAudience)
	w("  --attribute-mapping=%q \\", mappingFlag())
	w("  --attribute-condition=\"$CONDITION\"")
	w("")
	w("# 4. Consent: the approved image(s) may decrypt with the key.")
	for _, d := range o.ImageDigests {
		member := "principalSet://iam.googleapis.com/${POOL_NAME}/attribute.image_digest/" + d
		if o.ServiceAccount == "" {
			w("gcloud kms keys add-iam-policy-binding %s %s \\", o.Key, kms)
			w("  --member=\"%s\" --role=%s", member, RoleDecrypter)
		} else {
			w("gcloud iam service-accounts add-iam-policy-binding %s --project=\"$PROJECT\" \\", o.ServiceAccount)
			w("  --member=\"%s\" --role=%s", member, RoleWorkloadIdentityUser)
		}
	}
	if o.ServiceAccount != "" {
		w("gcloud kms keys add-iam-policy-binding %s %s \\", o.Key, kms)
		w("  --member=\"serviceAccount:%s\" --role=%s", o.ServiceAccount, RoleDecrypter)
	}
	w("")
	w("# 5. You may seal (encrypt) your share; nobody else needs to.")
	w("gcloud kms keys add-iam-policy-binding %s %s \\", o.Key, kms)
	w("  --member=\"user:$(gcloud config get-value account)\" --role=%s", RoleEncrypter)
	w("")
	w("# 6. Seal your share and give the operator the sealed file (it is not secret):")
	w("#      mcbn psk seal --kms %s --share %s.share.json --out %s.share.kms.json", o.keyName(), o.Participant, o.Participant)
	w("#    and this entry for the proxy's shareholders: list:")
	w("cat <<EOF")
	b.WriteString(o.proxyEntry(fmt.Sprintf("//iam.googleapis.com/projects/${PROJECT_NUMBER}/locations/global/workloadIdentityPools/%s/providers/%s", o.Pool, o.Provider)))
	w("EOF")
	w("")
	w("# To revoke consent: gcloud kms keys versions disable 1 --key=%s %s", o.Key, kms)
	return b.String(), nil
}

// proxyEntry is the shareholders: entry the operator adds to the proxy.
func (o *GCPSetupOptions) proxyEntry(wifAudience string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- name: %s\n  kind: kms\n  options:\n", o.Participant)
	fmt.Fprintf(&b, "    sealed_share: %s.share.kms.json\n", o.Participant)
	fmt.Fprintf(&b, "    kms_key: %s\n", o.keyName())
	fmt.Fprintf(&b, "    wif_audience: %s\n", wifAudience)
	if o.ServiceAccount != "" {
		fmt.Fprintf(&b, "    service_account: %s\n", o.ServiceAccount)
	}
	return b.String()
}

// GCPSetupTerraform returns the Terraform equivalent of GCPSetupCommands
// (hashicorp/google provider resources).
func GCPSetupTerraform(o GCPSetupOptions) (string, error) {
	if err := o.check(); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# mcbn participant gcp-setup --terraform: Cloud KMS participant %q in project %s.", o.Participant, o.Project)
	w("# Review before applying: it lets the image digest(s) below, running in")
	w("# Confidential Space as the attribute condition says, decrypt your share.")
	w("")
	w("terraform {")
	w("  required_providers {")
	w("    google = { source = \"hashicorp/google\" }")
	w("  }")
	w("}")
	w("")
	w("variable \"sealer\" {")
	w("  description = \"Who seals the share (roles/cloudkms.cryptoKeyEncrypter), e.g. user:you@example.com\"")
	w("  type        = string")
	w("}")
	w("")
	w("resource \"google_project_service\" \"mcbn\" {")
	w("  for_each           = toset([\"cloudkms.googleapis.com\", \"iam.googleapis.com\", \"iamcredentials.googleapis.com\", \"sts.googleapis.com\"])")
	w("  project            = %q", o.Project)
	w("  service            = each.value")
	w("  disable_on_destroy = false")
	w("}")
	w("")
	w("# The key that seals your share. Disabling its version revokes your consent.")
	w("resource \"google_kms_key_ring\" \"mcbn\" {")
	w("  project    = %q", o.Project)
	w("  name       = %q", o.KeyRing)
	w("  location   = %q", o.Location)
	w("  depends_on = [google_project_service.mcbn]")
	w("}")
	w("")
	w("resource \"google_kms_crypto_key\" \"share\" {")
	w("  name     = %q", o.Key)
	w("  key_ring = google_kms_key_ring.mcbn.id")
	w("  purpose  = \"ENCRYPT_DECRYPT\"")
	w("  lifecycle {")
	w("    prevent_destroy = true")
	w("  }")
	w("}")
	w("")
	w("# A pool for mcbn proxies only: every provider of the pool can reach the binding below.")
	w("resource \"google_iam_workload_identity_pool\" \"mcbn\" {")
	w("  project                   = %q", o.Project)
	w("  workload_identity_pool_id = %q", o.Pool)
	w("  display_name              = \"mcbn proxies\"")
	w("  depends_on                = [google_project_service.mcbn]")
	w("}")
	w("")
	w("# Confidential Space attestation tokens for STS, admitted only when the condition holds.")
	w("resource \"google_iam_workload_identity_pool_provider\" \"confidential_space\" {")
	w("  project                            = %q", o.Project)
	w("  workload_identity_pool_id          = google_iam_workload_identity_pool.mcbn.workload_identity_pool_id")
	w("  workload_identity_pool_provider_id = %q", o.Provider)
	w("  attribute_mapping = {")
	for _, m := range AttributeMapping {
		w("    %q = %q", m[0], m[1])
	}
	w("  }")
	// checkCondition refused " \ $ and backquotes, so inside an HCL string
	// only a template directive "%{" needs escaping.
	w("  attribute_condition = \"%s\"", strings.ReplaceAll(o.Condition, "%{", "%%{"))
	w("  oidc {")
	w("    issuer_uri        = %q", ConfidentialSpaceIssuerURI)
	w("    allowed_audiences = [%q]", AttestationAudience)
	w("  }")
	w("}")
	w("")
	w("# Consent: the approved image(s) may decrypt with the key.")
	for i, d := range o.ImageDigests {
		member := "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.mcbn.name}/attribute.image_digest/" + d
		if o.ServiceAccount == "" {
			w("resource \"google_kms_crypto_key_iam_member\" \"decrypt_%d\" {", i)
			w("  crypto_key_id = google_kms_crypto_key.share.id")
			w("  role          = %q", RoleDecrypter)
			w("  member        = \"%s\"", member)
			w("}")
		} else {
			w("resource \"google_service_account_iam_member\" \"workload_identity_%d\" {", i)
			w("  service_account_id = \"projects/%s/serviceAccounts/%s\"", o.Project, o.ServiceAccount)
			w("  role               = %q", RoleWorkloadIdentityUser)
			w("  member             = \"%s\"", member)
			w("}")
		}
		w("")
	}
	if o.ServiceAccount != "" {
		w("resource \"google_kms_crypto_key_iam_member\" \"decrypt\" {")
		w("  crypto_key_id = google_kms_crypto_key.share.id")
		w("  role          = %q", RoleDecrypter)
		w("  member        = \"serviceAccount:%s\"", o.ServiceAccount)
		w("}")
		w("")
	}
	w("# You may seal (encrypt) your share; nobody else needs to.")
	w("resource \"google_kms_crypto_key_iam_member\" \"seal\" {")
	w("  crypto_key_id = google_kms_crypto_key.share.id")
	w("  role          = %q", RoleEncrypter)
	w("  member        = var.sealer")
	w("}")
	w("")
	w("# Then: mcbn psk seal --kms <kms_key> --share %s.share.json --out %s.share.kms.json", o.Participant, o.Participant)
	w("output \"kms_key\" {")
	w("  value = google_kms_crypto_key.share.id")
	w("}")
	w("")
	w("output \"wif_audience\" {")
	w("  value = \"//iam.googleapis.com/${google_iam_workload_identity_pool_provider.confidential_space.name}\"")
	w("}")
	w("")
	w("output \"proxy_entry\" {")
	w("  description = \"The entry for the proxy's shareholders: list\"")
	w("  value       = <<-EOT")
	for _, line := range strings.Split(strings.TrimSuffix(o.proxyEntry("//iam.googleapis.com/${google_iam_workload_identity_pool_provider.confidential_space.name}"), "\n"), "\n") {
		w("    %s", line)
	}
	w("  EOT")
	w("}")
	return b.String(), nil
}
