package shareholder

import (
	"context"
	"fmt"
	"sync"
	"time"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"go.yaml.in/yaml/v3"

	"github.com/mcbn/mcbn/attest"
)

// TEEConfig (verifier.tee) enables raw TEE evidence next to Confidential
// Space tokens (docs/attestation.md). Its zero value accepts none: only
// tokens from verifier.issuer, as before.
type TEEConfig struct {
	// Accept lists the evidence kinds verified at all: tdx, sev-snp,
	// mock-tsm. The policy then says which it releases to (assertion.tee).
	Accept TEEKinds `yaml:"accept"`
	// CollateralDir is the collateral cache `mcbn shareholder collateral
	// fetch` fills; required for tdx.
	CollateralDir string `yaml:"collateral_dir"`
	// SNPProduct is the AMD product line (Milan, Genoa, Turin) for SEV-SNP
	// reports of version 2, which do not name it.
	SNPProduct string `yaml:"snp_product"`
	// MockRoot is the mock-tsm root certificate (PEM). Tests and demos
	// only: mock evidence proves nothing. Required with mock-tsm, and mock
	// evidence is still refused unless the policy names "mock".
	MockRoot string `yaml:"mock_root"`
}

// TEEKinds is the set of accepted evidence kinds. A struct of booleans
// (not a slice) so that VerifierConfig stays comparable.
type TEEKinds struct {
	TDX, SEVSNP, Mock bool
}

// UnmarshalYAML reads a list of kind names.
func (k *TEEKinds) UnmarshalYAML(n *yaml.Node) error {
	var names []string
	if err := n.Decode(&names); err != nil {
		return fmt.Errorf("line %d: want a list of tdx, sev-snp, mock-tsm", n.Line)
	}
	*k = TEEKinds{}
	for _, s := range names {
		switch s {
		case attest.KindTDX:
			k.TDX = true
		case attest.KindSEVSNP:
			k.SEVSNP = true
		case attest.KindMockTSM:
			k.Mock = true
		default:
			return fmt.Errorf("line %d: evidence kind %q, want tdx, sev-snp or mock-tsm", n.Line, s)
		}
	}
	return nil
}

// Any reports whether some kind is accepted.
func (k TEEKinds) Any() bool { return k.TDX || k.SEVSNP || k.Mock }

// validateTEE checks verifier.tee and resolves its paths.
func (c *Config) validateTEE() error {
	t := &c.Verifier.TEE
	if !t.Accept.Any() {
		if t.CollateralDir != "" || t.MockRoot != "" || t.SNPProduct != "" {
			return fieldErr("verifier.tee.accept", "empty, yet other verifier.tee settings are set: list the evidence kinds to accept")
		}
		return nil
	}
	if t.Accept.TDX && t.CollateralDir == "" {
		return fieldErr("verifier.tee.collateral_dir", "missing: TDX evidence is judged against cached Intel collateral (mcbn shareholder collateral fetch)")
	}
	t.CollateralDir = c.abs(t.CollateralDir)
	if t.Accept.Mock != (t.MockRoot != "") {
		return fieldErr("verifier.tee.mock_root", "set it exactly when verifier.tee.accept lists mock-tsm")
	}
	if t.MockRoot != "" {
		t.MockRoot = c.abs(t.MockRoot)
		if _, err := attest.LoadCertPool(t.MockRoot); err != nil {
			return fieldErr("verifier.tee.mock_root", "%v", err)
		}
	}
	if _, err := newEvidenceVerifier(c, nil); err != nil {
		return fieldErr("verifier.tee", "%v", err)
	}
	return nil
}

// newEvidenceVerifier builds the verifier of c's verifier.tee; now is the
// daemon's clock (nil: time.Now), which also judges collateral freshness.
func newEvidenceVerifier(c *Config, now func() time.Time) (*attest.EvidenceVerifier, error) {
	t := c.Verifier.TEE
	cfg := attest.EvidenceVerifierConfig{
		Audience: c.Verifier.Audience, AcceptTDX: t.Accept.TDX, AcceptSNP: t.Accept.SEVSNP,
		CollateralDir: t.CollateralDir, SNPProduct: t.SNPProduct, Now: now,
	}
	if t.Accept.Mock {
		pool, err := attest.LoadCertPool(t.MockRoot)
		if err != nil {
			return nil, err
		}
		cfg.MockRoots = pool
	}
	return attest.NewEvidenceVerifier(cfg)
}

// lazyEvidence is one server state's evidence verifier, built on first
// use (building it reads the collateral cache and the mock root). It lives
// in the state (server.go), not in the package: two daemons in one
// process, or a daemon and its reloaded config, never share or evict each
// other's. A state built by a reload gets a new one, so collateral fetched
// since is read again; the refusing state of a config that does not load
// keeps the last one (same config). A failed build is not kept: the next
// request tries again (e.g. once the collateral cache is filled).
type lazyEvidence struct {
	mu sync.Mutex
	v  *attest.EvidenceVerifier
}

func (s *Server) evidenceVerifier(st *serverState) (*attest.EvidenceVerifier, error) {
	l := st.evidence
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.v != nil {
		return l.v, nil
	}
	v, err := newEvidenceVerifier(st.cfg, s.now)
	if err != nil {
		return nil, err
	}
	l.v = v
	return v, nil
}

// verifyAttestation verifies a release request's token field: raw TEE
// evidence when it is an evidence string, a Confidential Space (or dev)
// token otherwise. Both yield claims for the same CEL policy, with "tee"
// saying which kind of evidence stood behind them.
func (s *Server) verifyAttestation(ctx context.Context, st *serverState, token, nonce string) (*attest.Claims, error) {
	if !attest.IsEvidence(token) {
		if st.verifier == nil {
			return nil, fmt.Errorf("attest: %w: this shareholder accepts only raw TEE evidence, no tokens (verifier.issuer is empty)", attest.ErrEvidenceKind)
		}
		c, err := st.verifier.Verify(ctx, token, nonce)
		if err != nil {
			return nil, err
		}
		// Set by us, never by the token: a policy testing assertion.tee
		// cannot be fooled by a token claim of that name.
		c.Raw["tee"] = attest.TEEConfidentialSpace
		return c, nil
	}
	if !st.cfg.Verifier.TEE.Accept.Any() {
		return nil, fmt.Errorf("attest: %w: this shareholder accepts no raw TEE evidence (verifier.tee.accept is empty)", attest.ErrEvidenceKind)
	}
	v, err := s.evidenceVerifier(st)
	if err != nil {
		return nil, fmt.Errorf("attest: %w: evidence verifier: %v", attest.ErrCollateral, err)
	}
	c, err := v.Verify(ctx, token, nonce)
	if err != nil {
		return nil, err
	}
	// Mock evidence needs a second, explicit yes: the policy itself must
	// name "mock", so a production policy (which never does) cannot be
	// satisfied by it even if mock-tsm were listed by mistake.
	if c.StringAt("tee") == attest.TEEMock && !policyNamesMock(st.policy.Text()) {
		return nil, fmt.Errorf("attest: %w: mock evidence, and the policy does not name \"mock\"", attest.ErrEvidenceKind)
	}
	return c, nil
}

// localAttestationFailure reports reason codes that are the shareholder's
// own condition (issuer keys, collateral cache), answered "unavailable".
func localAttestationFailure(code string) bool {
	switch code {
	case "keys_unavailable", "canceled", "collateral", "collateral_expired":
		return true
	}
	return false
}

// policyNamesMock reports whether the policy contains the string literal
// "mock" (as in assertion.tee == "mock"), found in its parsed syntax tree,
// not its text, so a comment does not count.
func policyNamesMock(text string) bool {
	a, iss := policyEnv.Parse(text)
	if iss != nil && iss.Err() != nil {
		return false
	}
	found := false
	ast.PreOrderVisit(a.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() == ast.LiteralKind {
			if s, ok := e.AsLiteral().(types.String); ok && string(s) == attest.TEEMock {
				found = true
			}
		}
	}))
	return found
}
