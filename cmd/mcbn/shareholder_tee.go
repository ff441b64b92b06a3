package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/shareholder"
)

// Raw TEE evidence tools: policy presets for TDX, SEV-SNP and the mock, and
// the collateral cache (docs/attestation.md).

const shPolicyTDXLong = `Prints a CEL release policy accepting only raw Intel TDX evidence (a proxy
with attestation.provider tdx): tee tdx, no debug TD, a TCB Intel rates
UpToDate (the shareholder judges it against its collateral cache), one of the
MRTDs, and each pinned RTMR exactly.

A TDX quote proves the TD's firmware (MRTD) and whatever was measured into the
RTMRs (kernel, command line, and the container only if the boot chain extends
an RTMR with it). Without --rtmr any kernel and workload on that firmware
passes: the command says so in the policy.`

const shPolicySNPLong = `Prints a CEL release policy accepting only raw AMD SEV-SNP evidence (a proxy
with attestation.provider sev-snp): tee sev-snp, no debug guest, no migration
agent, the VMPL (default 0), one of the launch measurements, and a reported
TCB at or above --min-tcb (required: bootloader=N,tee=N,snp=N,microcode=N).`

const shPolicyMockLong = `Prints a TEST-ONLY policy accepting mock-tsm evidence with one of the
measurements. Mock evidence proves nothing about hardware; a shareholder
accepts it only when verifier.tee lists mock-tsm with a mock_root AND the
policy names "mock", as this one does. Never use it outside CI or a demo.`

func newShareholderPolicyTDXCmd() *cobra.Command {
	c := leaf("tdx --mrtd HEX [--rtmr N=HEX] [flags]", "print a policy accepting raw TDX evidence", shPolicyTDXLong,
		"  $ mcbn shareholder policy tdx --mrtd 6363b804...f3 --rtmr 1=0b6a...51 --rtmr 2=94a1...e3 > policy.cel", noArgs)
	fs := c.Flags()
	mrtds := fs.StringArray("mrtd", nil, "allowed `MRTD`, 96 hex digits (repeatable)")
	rtmrs := fs.StringArray("rtmr", nil, "pin RTMR `N=HEX` exactly, N in 0..3 (repeatable)")
	cfgIDs := fs.StringArray("mr-config-id", nil, "allowed `MR_CONFIG_ID`, 96 hex digits (repeatable)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		o := shareholder.TDXPolicyOptions{MRTDs: lower(*mrtds), MRConfigIDs: lower(*cfgIDs)}
		for _, r := range *rtmrs {
			i, v, ok := strings.Cut(r, "=")
			n, err := strconv.Atoi(i)
			if !ok || err != nil || n < 0 || n > 3 {
				return usagef("--rtmr %q: want N=HEX with N in 0..3", r)
			}
			if o.RTMRs[n] != "" {
				return usagef("--rtmr %d given twice", n)
			}
			o.RTMRs[n] = strings.ToLower(v)
		}
		text, err := shareholder.TDXPolicy(o)
		if err != nil {
			return usagef("%v", err)
		}
		if len(*rtmrs) == 0 {
			fmt.Fprintln(c.ErrOrStderr(), "warning: no --rtmr: any kernel and workload on this TD firmware satisfies the policy")
		}
		fmt.Fprint(c.OutOrStdout(), text)
		return nil
	}
	return c
}

func newShareholderPolicySNPCmd() *cobra.Command {
	c := leaf("sev-snp --measurement HEX --min-tcb bootloader=N,tee=N,snp=N,microcode=N [flags]",
		"print a policy accepting raw SEV-SNP evidence", shPolicySNPLong,
		"  $ mcbn shareholder policy sev-snp --measurement 9e1f...0c --min-tcb bootloader=3,tee=0,snp=8,microcode=115 > policy.cel", noArgs)
	fs := c.Flags()
	meas := fs.StringArray("measurement", nil, "allowed launch `MEASUREMENT`, 96 hex digits (repeatable)")
	host := fs.StringArray("host-data", nil, "allowed `HOST_DATA`, 64 hex digits (repeatable)")
	minTCB := fs.String("min-tcb", "", "minimum reported TCB `LIST` bootloader=N,tee=N,snp=N,microcode=N (required)")
	vmpl := fs.Int("vmpl", 0, "the `VMPL` the report must come from")
	c.RunE = func(c *cobra.Command, _ []string) error {
		o := shareholder.SNPPolicyOptions{Measurements: lower(*meas), HostData: lower(*host), VMPL: *vmpl}
		if *minTCB != "" {
			m, err := parseMinTCB(*minTCB)
			if err != nil {
				return usagef("--min-tcb: %v", err)
			}
			o.MinTCB = m
		}
		text, err := shareholder.SEVSNPPolicy(o)
		if err != nil {
			return usagef("%v", err)
		}
		fmt.Fprint(c.OutOrStdout(), text)
		return nil
	}
	return c
}

func newShareholderPolicyMockCmd() *cobra.Command {
	c := leaf("mock-tsm --measurement HEX", "print a TEST-ONLY policy accepting mock-tsm evidence", shPolicyMockLong,
		"  $ mcbn shareholder policy mock-tsm --measurement 3c3c...3c > policy.cel", noArgs)
	meas := c.Flags().StringArray("measurement", nil, "allowed mock `MEASUREMENT`, 96 hex digits (repeatable)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		text, err := shareholder.MockPolicy(lower(*meas))
		if err != nil {
			return usagef("%v", err)
		}
		fmt.Fprintln(c.ErrOrStderr(), "warning: TEST ONLY: mock evidence proves nothing about hardware")
		fmt.Fprint(c.OutOrStdout(), text)
		return nil
	}
	return c
}

// parseMinTCB reads bootloader=N,tee=N,snp=N,microcode=N (all four).
func parseMinTCB(s string) (*shareholder.SNPMinTCB, error) {
	var m shareholder.SNPMinTCB
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 || n > 255 {
			return nil, fmt.Errorf("%q: want NAME=N with N in 0..255", part)
		}
		switch k {
		case "bootloader":
			m.Bootloader = n
		case "tee":
			m.TEE = n
		case "snp":
			m.SNP = n
		case "microcode":
			m.Microcode = n
		default:
			return nil, fmt.Errorf("unknown component %q (bootloader, tee, snp, microcode)", k)
		}
		if seen[k] {
			return nil, fmt.Errorf("%s given twice", k)
		}
		seen[k] = true
	}
	if len(seen) != 4 {
		return nil, fmt.Errorf("give all four of bootloader, tee, snp, microcode")
	}
	return &m, nil
}

func lower(v []string) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = strings.ToLower(s)
	}
	return out
}

const shCollateralFetchLong = `Fetches the collateral a shareholder needs to judge raw TEE evidence offline
and writes it to the cache directory named by verifier.tee.collateral_dir:
for each --fmspc, Intel PCS TDX TCB info; the TDX QE identity, the PCK CRL
and the Intel SGX root CA CRL; and any --url as it is (for example AMD KDS
VCEK or cert_chain URLs for SEV-SNP reports sent without certificates).

The daemon never fetches at release time. It refuses evidence judged against
collateral past its nextUpdate (TCB info, QE identity, CRLs), with reason
unavailable and check token_collateral_expired, until this command runs
again: schedule it (daily is ample; Intel publishes TCB info with a 30-day
nextUpdate). Entries are written atomically, one file per URL.`

func newShareholderCollateralCmd() *cobra.Command {
	c := leaf("fetch --dir DIR --fmspc HEX [flags]", "fetch Intel/AMD collateral into the local cache", shCollateralFetchLong,
		"  $ mcbn shareholder collateral fetch --dir /var/lib/mcbn/collateral --fmspc 50806f000000", noArgs)
	fs := c.Flags()
	dir := fs.String("dir", "", "the collateral cache `DIR` (verifier.tee.collateral_dir)")
	fmspcs := fs.StringArray("fmspc", nil, "TDX platform `FMSPC`, 12 hex digits (repeatable)")
	ca := fs.String("ca", "platform", "`CA` of the PCK CRL: platform or processor")
	urls := fs.StringArray("url", nil, "an extra https `URL` to cache as is (repeatable)")
	pcs := fs.String("pcs-url", "", "fetch Intel PCS from this `BASE` instead (a mirror); cache keys stay canonical")
	certs := fs.String("intel-certs-url", "", "fetch the Intel root CA CRL from this `BASE` instead (a mirror)")
	timeout := fs.Duration("timeout", 2*time.Minute, "overall time `LIMIT`")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if *dir == "" {
			return usagef("--dir is required")
		}
		o := attest.FetchOptions{FMSPCs: *fmspcs, CA: *ca, URLs: *urls, Rewrite: map[string]string{}}
		if *pcs != "" {
			o.Rewrite["https://api.trustedservices.intel.com"] = strings.TrimSuffix(*pcs, "/")
		}
		if *certs != "" {
			o.Rewrite["https://certificates.trustedservices.intel.com"] = strings.TrimSuffix(*certs, "/")
		}
		if _, err := attest.CollateralURLs(o); err != nil {
			return usagef("%v", err)
		}
		return runCollateralFetch(c.Context(), *dir, o, *timeout, c.OutOrStdout())
	}
	return group("collateral", "the TEE collateral cache for raw TDX / SEV-SNP evidence",
		"mcbn shareholder collateral manages the local cache of Intel and AMD collateral.",
		"  $ mcbn shareholder collateral fetch --dir /var/lib/mcbn/collateral --fmspc 50806f000000", c)
}

func runCollateralFetch(ctx context.Context, dir string, o attest.FetchOptions, timeout time.Duration, stdout io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	got, err := attest.FetchCollateral(ctx, &attest.CollateralCache{Dir: dir}, o)
	if err != nil {
		return err
	}
	for _, u := range got {
		fmt.Fprintf(stdout, "cached %s\n", u)
	}
	return nil
}
