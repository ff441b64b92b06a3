package shareholder

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/mcbn/mcbn/attest"
)

// CSPolicyOptions describe a ready-made Confidential Space release policy.
type CSPolicyOptions struct {
	// ImageDigests allowed ("sha256:" + 64 hex); at least one.
	ImageDigests []string
	// Projects: when set, submods.gce.project_id must be one of them.
	Projects []string
	// ServiceAccounts: when set, google_service_accounts must contain one of them.
	ServiceAccounts []string
	// Dev writes the local-demo variant that accepts dev attester tokens
	// (swname MCBN_DEV_ATTESTER) instead of production ones. Never use it in
	// production: a dev token proves nothing about hardware.
	Dev bool
}

var (
	digestRE  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	projectRE = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	saRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}@[a-z0-9][a-z0-9.-]{0,252}$`)
)

// ConfidentialSpacePolicy returns CEL text accepting only production
// Confidential Space tokens (swname CONFIDENTIAL_SPACE, dbgstat
// disabled-since-boot, STABLE support) for one of the image digests, and,
// when given, one of the projects and service accounts. Values are matched
// exactly (no prefixes, no patterns). The text is compiled before it is
// returned.
func ConfidentialSpacePolicy(o CSPolicyOptions) (string, error) {
	if len(o.ImageDigests) == 0 {
		return "", errors.New("at least one image digest (sha256:...) is required")
	}
	for _, d := range o.ImageDigests {
		if !digestRE.MatchString(d) {
			return "", fmt.Errorf("image digest %q is not sha256: followed by 64 lowercase hex digits", d)
		}
	}
	for _, p := range o.Projects {
		if !projectRE.MatchString(p) {
			return "", fmt.Errorf("project %q is not a GCP project id", p)
		}
	}
	for _, s := range o.ServiceAccounts {
		if !saRE.MatchString(s) {
			return "", fmt.Errorf("service account %q is not an email address", s)
		}
	}
	var b strings.Builder
	var terms []string
	if o.Dev {
		b.WriteString("// DEV ONLY: accepts tokens of the local dev attester, which prove nothing\n")
		b.WriteString("// about hardware. Never use this policy outside a local demo.\n")
		terms = append(terms,
			fmt.Sprintf("assertion.swname == '%s'", attest.DevSWName),
			fmt.Sprintf("assertion.submods.gce.project_id == '%s'", attest.DevProjectID))
	} else {
		b.WriteString("// Production Confidential Space only: no debug images, STABLE support.\n")
		terms = append(terms,
			"assertion.swname == 'CONFIDENTIAL_SPACE'",
			"assertion.dbgstat == 'disabled-since-boot'",
			"'STABLE' in assertion.submods.confidential_space.support_attributes")
	}
	terms = append(terms, oneOf("assertion.submods.container.image_digest", o.ImageDigests))
	if len(o.Projects) > 0 && !o.Dev {
		terms = append(terms, oneOf("assertion.submods.gce.project_id", o.Projects))
	}
	if len(o.ServiceAccounts) > 0 {
		terms = append(terms, "assertion.google_service_accounts.exists(sa, "+oneOf("sa", o.ServiceAccounts)+")")
	}
	b.WriteString(strings.Join(terms, " &&\n"))
	b.WriteString("\n")
	text := b.String()
	if _, err := CompilePolicy(text, 0); err != nil {
		return "", fmt.Errorf("generated policy does not compile: %v", err)
	}
	return text, nil
}

// oneOf renders an exact match against one value or a list. Values were
// validated against strict patterns, so single quotes are safe.
func oneOf(expr string, values []string) string {
	if len(values) == 1 {
		return fmt.Sprintf("%s == '%s'", expr, values[0])
	}
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = "'" + v + "'"
	}
	return fmt.Sprintf("%s in [%s]", expr, strings.Join(q, ", "))
}
