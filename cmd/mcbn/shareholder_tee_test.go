package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
)

var hex96 = strings.Repeat("ab", 48)

func TestShareholderPolicyTDXCommand(t *testing.T) {
	code, out, errs := shRun("shareholder", "policy", "tdx", "--mrtd", strings.ToUpper(hex96), "--rtmr", "2="+strings.Repeat("cd", 48))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"assertion.tee == 'tdx'", "assertion.tdx.td_attributes.debug == false", "assertion.tdx.tcb_status == 'UpToDate'",
		"assertion.tdx.mrtd == '" + hex96 + "'", "assertion.tdx.rtmr[2] == '" + strings.Repeat("cd", 48) + "'"} {
		if !strings.Contains(out, want) {
			t.Errorf("policy lacks %q:\n%s", want, out)
		}
	}
	if code, _, errs := shRun("shareholder", "policy", "tdx", "--mrtd", hex96); code != 0 || !strings.Contains(errs, "warning: no --rtmr") {
		t.Fatalf("no --rtmr: exit %d, stderr %q", code, errs)
	}
	for _, args := range [][]string{
		{},
		{"--mrtd", "abc"},
		{"--mrtd", hex96, "--rtmr", "4=" + hex96},
		{"--mrtd", hex96, "--rtmr", "1=" + hex96, "--rtmr", "1=" + hex96},
		{"--mrtd", hex96, "--rtmr", "1=zz"},
	} {
		if code, _, _ := shRun(append([]string{"shareholder", "policy", "tdx"}, args...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestShareholderPolicySNPCommand(t *testing.T) {
	code, out, errs := shRun("shareholder", "policy", "sev-snp", "--measurement", hex96, "--min-tcb", "bootloader=3,tee=0,snp=8,microcode=115")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"assertion.tee == 'sev-snp'", "assertion.snp.policy.debug == false", "assertion.snp.vmpl == 0",
		"assertion.snp.tcb.snp >= 8", "assertion.snp.tcb.microcode >= 115", "assertion.snp.measurement == '" + hex96 + "'"} {
		if !strings.Contains(out, want) {
			t.Errorf("policy lacks %q:\n%s", want, out)
		}
	}
	for _, args := range [][]string{
		{"--measurement", hex96},
		{"--measurement", hex96, "--min-tcb", "snp=8"},
		{"--measurement", hex96, "--min-tcb", "bootloader=3,tee=0,snp=8,microcode=999"},
		{"--measurement", hex96, "--min-tcb", "bootloader=3,tee=0,snp=8,fmc=1"},
		{"--min-tcb", "bootloader=3,tee=0,snp=8,microcode=1"},
	} {
		if code, _, _ := shRun(append([]string{"shareholder", "policy", "sev-snp"}, args...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	code, out, errs = shRun("shareholder", "policy", "mock-tsm", "--measurement", hex96)
	if code != 0 || !strings.Contains(out, "assertion.tee == 'mock'") || !strings.Contains(errs, "TEST ONLY") {
		t.Fatalf("mock-tsm preset: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestShareholderCollateralFetchCommand: `collateral fetch` against a local
// server serving Intel's sample PCS replies fills a cache the verifier
// then judges the sample quote with, offline.
func TestShareholderCollateralFetchCommand(t *testing.T) {
	td := "../../attest/testdata/tdx/"
	read := func(n string) []byte {
		b, err := os.ReadFile(td + n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hdr := func(n string) (string, string) {
		sc := bufio.NewScanner(bytes.NewReader(read(n)))
		sc.Buffer(nil, 1<<20)
		var l []string
		for sc.Scan() {
			l = append(l, sc.Text())
		}
		return l[0], l[1]
	}
	routes := map[string]func(w http.ResponseWriter){}
	serve := func(path, chainFile, body string) {
		routes[path] = func(w http.ResponseWriter) {
			if chainFile != "" {
				k, v := hdr(chainFile)
				w.Header().Set(k, v)
			}
			w.Write(read(body))
		}
	}
	serve("/tdx/certification/v4/tcb?fmspc=50806f000000", "tcbinfo.issuer-chain", "sample_tcbInfo_response")
	serve("/tdx/certification/v4/qe/identity", "qeidentity.issuer-chain", "sample_qeIdentity_response")
	serve("/sgx/certification/v4/pckcrl?ca=platform&encoding=der", "pckcrl.issuer-chain", "pckcrl")
	serve("/IntelSGXRootCA.der", "", "rootcrl.der")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := routes[r.URL.RequestURI()]; ok {
			h(w)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "collateral")
	code, out, errs := shRun("shareholder", "collateral", "fetch", "--dir", dir, "--fmspc", "50806F000000", "--pcs-url", srv.URL, "--intel-certs-url", srv.URL)
	if code != 0 || strings.Count(out, "cached ") != 4 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	v, err := attest.NewEvidenceVerifier(attest.EvidenceVerifierConfig{Audience: "a", AcceptTDX: true, CollateralDir: dir,
		Now: func() time.Time { return time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := attest.EncodeEvidence(&attest.Evidence{Kind: attest.KindTDX, Report: read("quote_v4.dat")})
	// The TCB verdict is reached only with complete, Intel-signed, fresh
	// collateral (the sample platform is below the sample TCB info).
	if _, err := v.Verify(context.Background(), ev, strings.Repeat("a", 64)); attest.Reason(err) != "tcb" {
		t.Fatalf("sample quote against the fetched cache: %v", err)
	}
	if code, _, _ := shRun("shareholder", "collateral", "fetch", "--dir", dir); code != 2 {
		t.Fatalf("nothing to fetch: exit %d", code)
	}
	if code, _, errs := shRun("shareholder", "collateral", "fetch", "--dir", t.TempDir(), "--url", srv.URL+"/missing"); code != 2 || !strings.Contains(errs, "https") {
		t.Fatalf("http URL: exit %d %s", code, errs)
	}
	if code, _, errs := shRun("shareholder", "collateral", "fetch", "--dir", t.TempDir(), "--fmspc", "50806f000001", "--pcs-url", srv.URL); code == 0 || !strings.Contains(errs, "404") {
		t.Fatalf("unknown FMSPC: exit %d %s", code, errs)
	}
}
