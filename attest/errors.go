package attest

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Verify and the providers wrap one of them with detail
// ("%w: ..."); test with errors.Is, and use Reason for metrics and audit.
var (
	ErrMalformed       = errors.New("malformed token")
	ErrAlgorithm       = errors.New("signature algorithm not allowed")
	ErrUnknownKey      = errors.New("unknown signing key")
	ErrKeysUnavailable = errors.New("issuer keys unavailable")
	ErrSignature       = errors.New("invalid signature")
	ErrIssuer          = errors.New("wrong issuer")
	ErrAudience        = errors.New("wrong audience")
	ErrExpired         = errors.New("token expired")
	ErrNotYetValid     = errors.New("token not yet valid")
	ErrIssuedInFuture  = errors.New("token issued in the future")
	ErrTooOld          = errors.New("token too old")
	ErrNonce           = errors.New("nonce mismatch")

	// ErrRequest: a token request breaks the launcher's documented limits.
	ErrRequest = errors.New("invalid token request")
	// ErrProvider: the launcher (or dev attester) could not be reached or
	// refused to issue a token.
	ErrProvider = errors.New("token provider failed")
)

// reasons maps each sentinel to a short, stable code for metrics and audit
// logs. The codes say what failed, never anything secret.
var reasons = []struct {
	err  error
	code string
}{
	{ErrMalformed, "malformed"},
	{ErrAlgorithm, "algorithm"},
	{ErrUnknownKey, "unknown_key"},
	{ErrKeysUnavailable, "keys_unavailable"},
	{ErrSignature, "signature"},
	{ErrIssuer, "issuer"},
	{ErrAudience, "audience"},
	{ErrExpired, "expired"},
	{ErrNotYetValid, "not_yet_valid"},
	{ErrIssuedInFuture, "issued_in_future"},
	{ErrTooOld, "too_old"},
	{ErrNonce, "nonce"},
	{ErrRequest, "bad_request"},
	{ErrProvider, "provider_unavailable"},
	{ErrEvidenceMalformed, "malformed_evidence"},
	{ErrEvidenceKind, "evidence_kind"},
	{ErrEvidenceUnsupported, "unsupported_evidence"},
	{ErrChain, "chain"},
	{ErrDebug, "debug"},
	{ErrTCB, "tcb"},
	{ErrCollateral, "collateral"},
	{ErrCollateralExpired, "collateral_expired"},
}

// Reason returns a short code for err: "ok" for nil, one of "malformed",
// "algorithm", "unknown_key", "keys_unavailable", "signature", "issuer",
// "audience", "expired", "not_yet_valid", "issued_in_future", "too_old", "nonce",
// "bad_request", "provider_unavailable", for raw TEE evidence
// "malformed_evidence", "evidence_kind", "unsupported_evidence", "chain",
// "debug", "tcb", "collateral", "collateral_expired", then "canceled", or
// "internal" for anything else.
func Reason(err error) string {
	if err == nil {
		return "ok"
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "canceled"
	}
	return "internal"
}

// wrapf returns an error that matches sentinel and carries detail.
func wrapf(sentinel error, format string, a ...any) error {
	return fmt.Errorf("attest: %w: %s", sentinel, fmt.Sprintf(format, a...))
}

// clip quotes an untrusted string for an error message, bounded in length,
// so a hostile claim can neither flood nor forge log lines.
func clip(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
