package attest

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"
	sevclient "github.com/google/go-sev-guest/client"
	tdxclient "github.com/google/go-tdx-guest/client"
)

// EvidenceProvider produces raw TEE evidence through configfs-tsm
// (/sys/kernel/config/tsm/report), falling back to /dev/tdx_guest or
// /dev/sev-guest where configfs-tsm is absent, or through a mock-tsm
// directory. It implements TokenProvider: the "token" it returns is an
// evidence string (EncodeEvidence) whose REPORTDATA is
// EvidenceReportData(audience, nonce).
type EvidenceProvider struct {
	kind   string
	client func() (configfsi.Client, error) // nil client and nil error: no configfs-tsm
}

// NewTDXProvider returns the TDX evidence provider.
func NewTDXProvider() *EvidenceProvider {
	return &EvidenceProvider{kind: KindTDX, client: linuxClient}
}

// NewSEVSNPProvider returns the SEV-SNP evidence provider.
func NewSEVSNPProvider() *EvidenceProvider {
	return &EvidenceProvider{kind: KindSEVSNP, client: linuxClient}
}

// NewMockTSMProvider returns a provider over the mock-tsm directory dir.
func NewMockTSMProvider(dir string) *EvidenceProvider {
	m := &MockTSM{Dir: dir}
	return &EvidenceProvider{kind: KindMockTSM, client: func() (configfsi.Client, error) { return m.Client(), nil }}
}

func linuxClient() (configfsi.Client, error) {
	c, err := linuxtsm.MakeClient()
	if err != nil {
		// configfs-tsm absent (an older kernel): use the device instead.
		return nil, nil
	}
	return c, nil
}

// Kind returns "tdx", "sev-snp" or "mock-tsm".
func (p *EvidenceProvider) Kind() string { return p.kind }

// wantProvider is the configfs-tsm provider name for each kind.
var wantProvider = map[string]string{KindTDX: "tdx_guest", KindSEVSNP: "sev_guest", KindMockTSM: MockTSMProvider}

// Token returns an evidence string for audience bound to the single nonce
// (the release nonce of the connection).
func (p *EvidenceProvider) Token(ctx context.Context, audience string, nonces []string) (string, error) {
	if err := ValidateTokenRequest(audience, nonces); err != nil {
		return "", err
	}
	if len(nonces) != 1 || audience == "" {
		return "", wrapf(ErrRequest, "raw TEE evidence binds exactly one nonce and an audience, got %d nonces", len(nonces))
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	rd := EvidenceReportData(audience, nonces[0])
	c, err := p.client()
	if err != nil {
		return "", fmt.Errorf("attest: %w: %s: %v", ErrProvider, p.kind, err)
	}
	e := &Evidence{Kind: p.kind}
	if c != nil {
		resp, err := report.Get(c, &report.Request{InBlob: rd[:], GetAuxBlob: p.kind != KindTDX})
		if err != nil {
			return "", fmt.Errorf("attest: %w: %s configfs-tsm report: %v", ErrProvider, p.kind, err)
		}
		if resp.Provider != wantProvider[p.kind] {
			return "", fmt.Errorf("attest: %w: configfs-tsm provider is %s, want %s", ErrProvider, clip(resp.Provider), wantProvider[p.kind])
		}
		e.Report, e.Aux = resp.OutBlob, resp.AuxBlob
	} else if e.Report, e.Aux, err = deviceEvidence(p.kind, rd); err != nil {
		return "", fmt.Errorf("attest: %w: %s: %v", ErrProvider, p.kind, err)
	}
	return EncodeEvidence(e)
}

// deviceEvidence reads evidence from /dev/tdx_guest or /dev/sev-guest.
func deviceEvidence(kind string, rd [64]byte) (rep, aux []byte, err error) {
	switch kind {
	case KindTDX:
		d, err := tdxclient.OpenDevice()
		if err != nil {
			return nil, nil, fmt.Errorf("no configfs-tsm and no /dev/tdx_guest: %v", err)
		}
		defer d.Close()
		rep, err = tdxclient.GetRawQuote(d, rd)
		return rep, nil, err
	case KindSEVSNP:
		d, err := sevclient.OpenDevice()
		if err != nil {
			return nil, nil, fmt.Errorf("no configfs-tsm and no /dev/sev-guest: %v", err)
		}
		defer d.Close()
		return sevclient.GetRawExtendedReport(d, rd)
	}
	return nil, nil, errors.New("no device for this kind")
}
