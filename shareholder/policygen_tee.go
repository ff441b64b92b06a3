package shareholder

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Ready-made policies for raw TEE evidence (docs/attestation.md). Like the
// Confidential Space preset, each pins the measurements it is given
// exactly, refuses debug (also refused by the verifier itself: defence in
// depth), and states the minimum TCB.

var (
	hex48RE = regexp.MustCompile(`^[0-9a-f]{96}$`)
	hex32RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// TDXPolicyOptions describe a TDX release policy.
type TDXPolicyOptions struct {
	// MRTDs allowed (96 lowercase hex digits each; the TD firmware's
	// measurement); at least one.
	MRTDs []string
	// RTMRs pins RTMR[i] exactly when RTMRs[i] is not "". A raw quote
	// proves the firmware (MRTD) and what was measured into the RTMRs:
	// without RTMR pins, any kernel, command line and container on that
	// firmware satisfies the policy.
	RTMRs [4]string
	// MRConfigIDs, when set, pins mr_config_id (a host-provided 48-byte ID,
	// e.g. a hash of the workload's configuration).
	MRConfigIDs []string
}

// TDXPolicy returns CEL text accepting only TDX evidence with one of the
// MRTDs, the pinned RTMRs, no debug, and a TCB Intel rates UpToDate (the
// minimum TCB of a TDX platform is Intel's current TCB info).
func TDXPolicy(o TDXPolicyOptions) (string, error) {
	if len(o.MRTDs) == 0 {
		return "", errors.New("at least one MRTD (--mrtd, 96 hex digits) is required")
	}
	if err := allMatch("MRTD", hex48RE, o.MRTDs); err != nil {
		return "", err
	}
	if err := allMatch("MR_CONFIG_ID", hex48RE, o.MRConfigIDs); err != nil {
		return "", err
	}
	terms := []string{
		"assertion.tee == 'tdx'",
		"assertion.tdx.td_attributes.debug == false",
		"assertion.tdx.tcb_status == 'UpToDate'",
		oneOf("assertion.tdx.mrtd", o.MRTDs),
	}
	pinned := 0
	for i, r := range o.RTMRs {
		if r == "" {
			continue
		}
		if !hex48RE.MatchString(r) {
			return "", fmt.Errorf("RTMR[%d] %q is not 96 lowercase hex digits", i, r)
		}
		terms = append(terms, fmt.Sprintf("assertion.tdx.rtmr[%d] == '%s'", i, r))
		pinned++
	}
	if len(o.MRConfigIDs) > 0 {
		terms = append(terms, oneOf("assertion.tdx.mr_config_id", o.MRConfigIDs))
	}
	var b strings.Builder
	b.WriteString("// Raw Intel TDX evidence only: no debug TD, a TCB Intel rates UpToDate,\n")
	b.WriteString("// the TD firmware (MRTD) and the pinned runtime measurements (RTMRs).\n")
	if pinned == 0 {
		b.WriteString("// WARNING: no RTMR is pinned, so any kernel and workload on this firmware passes.\n")
	}
	return finishPolicy(&b, terms)
}

// SNPMinTCB is the minimum reported TCB of an SEV-SNP platform, per
// component security patch level.
type SNPMinTCB struct {
	Bootloader, TEE, SNP, Microcode int
}

// SNPPolicyOptions describe an SEV-SNP release policy.
type SNPPolicyOptions struct {
	// Measurements allowed (96 lowercase hex digits each: the launch
	// digest of the guest's initial memory); at least one.
	Measurements []string
	// HostData, when set, pins host_data (64 hex digits), a value the host
	// chose at launch that the guest cannot change.
	HostData []string
	// MinTCB is required: reports from a platform below it are refused.
	MinTCB *SNPMinTCB
	// VMPL is the privilege level the report must come from (default 0,
	// the most privileged; a paravisor deployment may need another).
	VMPL int
}

// SEVSNPPolicy returns CEL text accepting only SEV-SNP evidence with one of
// the measurements, no debug, no migration agent, the VMPL, and a reported
// TCB at or above the minimum.
func SEVSNPPolicy(o SNPPolicyOptions) (string, error) {
	if len(o.Measurements) == 0 {
		return "", errors.New("at least one measurement (--measurement, 96 hex digits) is required")
	}
	if err := allMatch("measurement", hex48RE, o.Measurements); err != nil {
		return "", err
	}
	if err := allMatch("host data", hex32RE, o.HostData); err != nil {
		return "", err
	}
	if o.MinTCB == nil {
		return "", errors.New("a minimum TCB (--min-tcb bootloader=N,tee=N,snp=N,microcode=N) is required")
	}
	m := *o.MinTCB
	for _, v := range []int{m.Bootloader, m.TEE, m.SNP, m.Microcode} {
		if v < 0 || v > 255 {
			return "", fmt.Errorf("minimum TCB component %d outside 0..255", v)
		}
	}
	if o.VMPL < 0 || o.VMPL > 3 {
		return "", fmt.Errorf("VMPL %d outside 0..3", o.VMPL)
	}
	terms := []string{
		"assertion.tee == 'sev-snp'",
		"assertion.snp.policy.debug == false",
		"assertion.snp.policy.migrate_ma == false",
		fmt.Sprintf("assertion.snp.vmpl == %d", o.VMPL),
		oneOf("assertion.snp.measurement", o.Measurements),
		fmt.Sprintf("assertion.snp.tcb.bootloader >= %d", m.Bootloader),
		fmt.Sprintf("assertion.snp.tcb.tee >= %d", m.TEE),
		fmt.Sprintf("assertion.snp.tcb.snp >= %d", m.SNP),
		fmt.Sprintf("assertion.snp.tcb.microcode >= %d", m.Microcode),
	}
	if len(o.HostData) > 0 {
		terms = append(terms, oneOf("assertion.snp.host_data", o.HostData))
	}
	var b strings.Builder
	b.WriteString("// Raw AMD SEV-SNP evidence only: no debug guest, no migration agent,\n")
	b.WriteString("// the launch measurement, and a reported TCB at or above the minimum.\n")
	return finishPolicy(&b, terms)
}

// MockPolicy returns the TEST-ONLY policy accepting mock-tsm evidence with
// one of the measurements. It names "mock", which a shareholder requires
// before it accepts mock evidence at all.
func MockPolicy(measurements []string) (string, error) {
	if len(measurements) == 0 {
		return "", errors.New("at least one measurement (--measurement, 96 hex digits) is required")
	}
	if err := allMatch("measurement", hex48RE, measurements); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("// TEST ONLY: accepts mock-tsm evidence, which proves nothing about hardware.\n")
	b.WriteString("// Never use this policy outside CI or a local demo.\n")
	return finishPolicy(&b, []string{
		"assertion.tee == 'mock'",
		"assertion.mock.debug == false",
		oneOf("assertion.mock.measurement", measurements),
	})
}

func allMatch(what string, re *regexp.Regexp, values []string) error {
	digits := 96
	if re == hex32RE {
		digits = 64
	}
	for _, v := range values {
		if !re.MatchString(v) {
			return fmt.Errorf("%s %q is not %d lowercase hex digits", what, v, digits)
		}
	}
	return nil
}

func finishPolicy(b *strings.Builder, terms []string) (string, error) {
	b.WriteString(strings.Join(terms, " &&\n"))
	b.WriteString("\n")
	text := b.String()
	if _, err := CompilePolicy(text, 0); err != nil {
		return "", fmt.Errorf("generated policy does not compile: %v", err)
	}
	return text, nil
}
