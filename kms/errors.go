package kms

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Error classes. Every error Fetch, Check and Seal return wraps exactly one
// of them ("%w"), so callers test with errors.Is and name a refusal with
// Reason. Messages name the participant and what failed, never a token, a
// share or key material.
var (
	// ErrPermissionDenied: KMS (or the IAM credentials API, when a service
	// account is impersonated) refused the federated identity. For a
	// participant this means consent was withdrawn (the IAM binding was
	// removed) or the identity does not match the binding.
	ErrPermissionDenied = errors.New("permission denied: consent withdrawn or attribute condition unmet")
	// ErrKeyDisabled: the key version that sealed the share is disabled,
	// destroyed or scheduled for destruction (KMS FAILED_PRECONDITION). This
	// is how a KMS participant revokes its consent.
	ErrKeyDisabled = errors.New("key version disabled")
	// ErrSTSRejected: STS refused to exchange the attestation token (HTTP
	// 4xx): wrong audience, expired, an issuer the provider does not trust,
	// or the provider's attribute condition is false for this token.
	ErrSTSRejected = errors.New("STS rejected the token")
	// ErrUnreachable: STS, the IAM credentials API or KMS could not be
	// reached, answered 5xx/UNAVAILABLE, or did not answer in time.
	ErrUnreachable = errors.New("unreachable")
	// ErrLocal: a problem on the proxy's side: the token file is missing or
	// unreadable, no token provider, a bad option, a client that would not
	// start.
	ErrLocal = errors.New("local error")
	// ErrInvalidShare: the sealed share is malformed, belongs to another
	// group, participant or key, was tampered with (KMS could not decrypt it
	// with this additional authenticated data), or KMS returned something
	// that is not this participant's share of this group.
	ErrInvalidShare = errors.New("invalid sealed share")
)

var reasons = []struct {
	err  error
	code string
}{
	{ErrPermissionDenied, "permission_denied"},
	{ErrKeyDisabled, "key_disabled"},
	{ErrSTSRejected, "sts_rejected"},
	{ErrUnreachable, "unreachable"},
	{ErrLocal, "local"},
	{ErrInvalidShare, "invalid_share"},
}

// Reason returns a short stable code for err, for metrics, /status and logs:
// "ok" for nil, one of "permission_denied", "key_disabled", "sts_rejected",
// "unreachable", "local", "invalid_share", "canceled" (the caller's context
// ended), or "internal".
func Reason(err error) string {
	if err == nil {
		return "ok"
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	return "internal"
}

// classed builds a one-line error for participant name (may be empty) in
// class, with detail.
func classed(name string, class error, format string, a ...any) error {
	detail := oneLine(fmt.Sprintf(format, a...))
	if name == "" {
		return fmt.Errorf("kms: %w: %s", class, detail)
	}
	return fmt.Errorf("kms participant %q: %w: %s", name, class, detail)
}

// oneLine folds whitespace so that a remote message cannot add log lines.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// clip bounds and quotes an untrusted string for an error message.
func clip(s string, limit int) string {
	s = oneLine(s)
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}

// redact removes every occurrence of secret from s. Remote error messages
// pass through it, in case a server echoes what it was sent.
func redact(s, secret string) string {
	if len(secret) < 8 {
		return s
	}
	return strings.ReplaceAll(s, secret, "[REDACTED]")
}
