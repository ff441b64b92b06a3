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
	// Projects: submods.gce.project_id must be one of them. Required for a
	// production policy unless AnyProject is set: the image is public and
	// reproducible, so without a project any GCP project running it
	// satisfies the policy.
	Projects []string
	// AnyProject deliberately drops the project clause (the caller warns).
	AnyProject bool
	// ServiceAccounts: when set, google_service_accounts must contain one of them.
	ServiceAccounts []string
	// Args, when set, is the exact argv the container must run
	// (submods.container.args). The launcher reports it; pinning it is
	// defence in depth on top of refusing any command override.
	Args []string
	// AllowCmdOverride is the exact tee-cmd the operator may pass
	// (submods.container.cmd_override). Empty: no override at all.
	AllowCmdOverride []string
	// Dev writes the local-demo variant that accepts dev attester tokens
	// (swname MCBN_DEV_ATTESTER) instead of production ones. Never use it in
	// production: a dev token proves nothing about hardware.
	Dev bool
}

// TEEHardwareModels are the hwmodel values of confidential hardware.
// GCP_SHIELDED_VM is deliberately absent: it has no memory encryption, so
// the operator could read the share out of the VM's memory. A model not
// listed here (a new one Google adds) is refused until it is reviewed and
// added: the list fails closed.
var TEEHardwareModels = []string{"GCP_AMD_SEV", "GCP_AMD_SEV_ES", "GCP_INTEL_TDX"}

var (
	digestRE  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	projectRE = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	saRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}@[a-z0-9][a-z0-9.-]{0,252}$`)
	// argRE keeps pinned arguments printable and free of quotes and
	// backslashes, so they can be written into CEL string literals as is.
	argRE = regexp.MustCompile(`^[A-Za-z0-9_./:=,@+-]{1,256}$`)
)

// ConfidentialSpacePolicy returns CEL text accepting only production
// Confidential Space tokens for one of the image digests, and nothing the
// operator can change at launch. Production clauses: swname
// CONFIDENTIAL_SPACE, dbgstat disabled-since-boot, STABLE support, a TEE
// hwmodel (never a shielded VM), secure boot, one of the projects, no
// command override (or exactly the allowed one), no environment override,
// and, when given, exactly the pinned argv and one of the service accounts.
// Values are matched exactly (no prefixes, no patterns). The text is
// compiled before it is returned.
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
	if !o.Dev && len(o.Projects) == 0 && !o.AnyProject {
		return "", errors.New("a project is required (--project): the image is public, so without one any GCP project running it would be released shares; --any-project drops the clause on purpose")
	}
	if len(o.Projects) > 0 && o.AnyProject {
		return "", errors.New("--project and --any-project contradict each other")
	}
	for _, s := range o.ServiceAccounts {
		if !saRE.MatchString(s) {
			return "", fmt.Errorf("service account %q is not an email address", s)
		}
	}
	for _, list := range [][]string{o.Args, o.AllowCmdOverride} {
		for _, a := range list {
			if !argRE.MatchString(a) {
				return "", fmt.Errorf("argument %q: pinned arguments may hold only letters, digits and _ . / : = , @ + -", a)
			}
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
		b.WriteString("// Production Confidential Space only: no debug images, STABLE support,\n")
		b.WriteString("// confidential hardware with secure boot.\n")
		terms = append(terms,
			"assertion.swname == 'CONFIDENTIAL_SPACE'",
			"assertion.dbgstat == 'disabled-since-boot'",
			"'STABLE' in assertion.submods.confidential_space.support_attributes",
			oneOf("assertion.hwmodel", TEEHardwareModels),
			"assertion.secboot == true")
	}
	terms = append(terms, oneOf("assertion.submods.container.image_digest", o.ImageDigests))
	// What the operator chooses at launch must not change what runs: the
	// configuration (listen, connect, shareholders) is part of the approved
	// image, so any command or environment override refuses.
	if len(o.AllowCmdOverride) == 0 {
		terms = append(terms, "(assertion.submods.container.cmd_override == null || size(assertion.submods.container.cmd_override) == 0)")
	} else {
		terms = append(terms, "assertion.submods.container.cmd_override == "+celList(o.AllowCmdOverride))
	}
	terms = append(terms, "(assertion.submods.container.env_override == null || size(assertion.submods.container.env_override) == 0)")
	if len(o.Args) > 0 {
		terms = append(terms, "assertion.submods.container.args == "+celList(o.Args))
	}
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

// celList renders a list literal of validated strings.
func celList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = "'" + v + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
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
