package shareholder

import (
	"context"
	"encoding/hex"
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/mcbn/mcbn/attest"
)

// Claims of the vendor samples (parsed, not verified: the verifier tests
// in attest cover verification; here the policy presets are judged on
// real field values).
func sampleTDXClaims(t *testing.T) (map[string]any, *attest.TDXQuote) {
	t.Helper()
	raw, err := os.ReadFile("../attest/testdata/tdx/quote_v4.dat")
	if err != nil {
		t.Fatal(err)
	}
	q, err := attest.ParseTDXQuote(raw)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"tee": "tdx", "tdx": q.Claims("UpToDate")}, q
}

func sampleSNPClaims(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile("../attest/testdata/snp/attestation.bin")
	if err != nil {
		t.Fatal(err)
	}
	c, err := attest.SNPReportClaims(raw)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"tee": "sev-snp", "snp": c}
}

func teeAllows(t *testing.T, text string, claims map[string]any) bool {
	t.Helper()
	p, err := CompilePolicy(text, 0)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := p.Eval(context.Background(), claims, RequestInfo{})
	if err != nil {
		return false // an evaluation error is a refusal
	}
	return ok
}

// with returns a deep-enough copy of claims with one nested value changed.
func with(claims map[string]any, val any, path ...string) map[string]any {
	out := maps.Clone(claims)
	cur := out
	for i, p := range path {
		if i == len(path)-1 {
			cur[p] = val
			break
		}
		next := maps.Clone(cur[p].(map[string]any))
		cur[p] = next
		cur = next
	}
	return out
}

func TestTDXPolicyPreset(t *testing.T) {
	claims, q := sampleTDXClaims(t)
	mrtd := hex.EncodeToString(q.MRTD)
	rtmr0 := hex.EncodeToString(q.RTMR[0])
	text, err := TDXPolicy(TDXPolicyOptions{MRTDs: []string{mrtd}, RTMRs: [4]string{rtmr0}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "WARNING") {
		t.Fatal("warned although an RTMR is pinned")
	}
	if !teeAllows(t, text, claims) {
		t.Fatalf("preset refuses the sample it was made for:\n%s", text)
	}
	for name, c := range map[string]map[string]any{
		"debug TD":                  with(claims, map[string]any{"debug": true, "hex": "01"}, "tdx", "td_attributes"),
		"TCB not UpToDate":          with(claims, "OutOfDate", "tdx", "tcb_status"),
		"another MRTD":              with(claims, strings.Repeat("00", 48), "tdx", "mrtd"),
		"another RTMR[0]":           with(claims, []any{strings.Repeat("00", 48), "", "", ""}, "tdx", "rtmr"),
		"SEV-SNP evidence":          sampleSNPClaims(t),
		"mock evidence":             {"tee": "mock", "mock": map[string]any{"measurement": mrtd, "debug": false}},
		"Confidential Space claims": {"tee": "confidential-space", "swname": "CONFIDENTIAL_SPACE"},
	} {
		if teeAllows(t, text, c) {
			t.Errorf("%s: accepted", name)
		}
	}
	unpinned, _ := TDXPolicy(TDXPolicyOptions{MRTDs: []string{mrtd}})
	if !strings.Contains(unpinned, "WARNING: no RTMR is pinned") {
		t.Error("no warning without RTMR pins")
	}
	for _, bad := range []TDXPolicyOptions{{}, {MRTDs: []string{"xyz"}}, {MRTDs: []string{mrtd}, RTMRs: [4]string{"', true || '"}}, {MRTDs: []string{strings.ToUpper(mrtd)}}} {
		if _, err := TDXPolicy(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestSNPPolicyPreset judges the preset on the real AMD sample's fields.
// The sample guest has DEBUG set, so the preset refuses it as is; with
// DEBUG cleared it passes at its own TCB and is refused one level higher
// ("TCB below the policy minimum").
func TestSNPPolicyPreset(t *testing.T) {
	claims := sampleSNPClaims(t)
	snp := claims["snp"].(map[string]any)
	tcb := snp["tcb"].(map[string]any)
	at := SNPMinTCB{Bootloader: int(tcb["bootloader"].(int64)), TEE: int(tcb["tee"].(int64)), SNP: int(tcb["snp"].(int64)), Microcode: int(tcb["microcode"].(int64))}
	meas := snp["measurement"].(string)
	text, err := SEVSNPPolicy(SNPPolicyOptions{Measurements: []string{meas}, MinTCB: &at})
	if err != nil {
		t.Fatal(err)
	}
	if teeAllows(t, text, claims) {
		t.Fatal("preset accepts the sample, whose guest policy allows DEBUG")
	}
	noDebug := with(claims, false, "snp", "policy", "debug")
	if !teeAllows(t, text, noDebug) {
		t.Fatalf("preset refuses the non-debug sample at its own TCB:\n%s", text)
	}
	above := at
	above.SNP++
	higher, _ := SEVSNPPolicy(SNPPolicyOptions{Measurements: []string{meas}, MinTCB: &above})
	if teeAllows(t, higher, noDebug) {
		t.Fatal("TCB below the policy minimum accepted")
	}
	for name, c := range map[string]map[string]any{
		"VMPL 1":            with(noDebug, int64(1), "snp", "vmpl"),
		"migration agent":   with(noDebug, true, "snp", "policy", "migrate_ma"),
		"other measurement": with(noDebug, strings.Repeat("00", 48), "snp", "measurement"),
		"TDX evidence":      func() map[string]any { c, _ := sampleTDXClaims(t); return c }(),
	} {
		if teeAllows(t, text, c) {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := SEVSNPPolicy(SNPPolicyOptions{Measurements: []string{meas}}); err == nil {
		t.Error("no minimum TCB accepted")
	}
	if _, err := SEVSNPPolicy(SNPPolicyOptions{Measurements: []string{meas}, MinTCB: &SNPMinTCB{SNP: 300}}); err == nil {
		t.Error("TCB component 300 accepted")
	}
}

func TestMockPolicyNamesMock(t *testing.T) {
	text, err := MockPolicy([]string{mockMeasurement})
	if err != nil {
		t.Fatal(err)
	}
	if !policyNamesMock(text) || !strings.Contains(text, "TEST ONLY") {
		t.Fatal("mock preset does not name mock")
	}
	prod, _ := TDXPolicy(TDXPolicyOptions{MRTDs: []string{mockMeasurement}})
	snp, _ := SEVSNPPolicy(SNPPolicyOptions{Measurements: []string{mockMeasurement}, MinTCB: &SNPMinTCB{}})
	cs, _ := ConfidentialSpacePolicy(CSPolicyOptions{ImageDigests: []string{testDigest}, Projects: []string{"prod-project"}})
	for _, p := range []string{prod, snp, cs} {
		if policyNamesMock(p) {
			t.Fatalf("a production preset names mock:\n%s", p)
		}
	}
}
