package gather

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// KindDaemon is the participant kind of an `mcbn shareholder serve` daemon,
// the default of a shareholders: entry without kind:.
const KindDaemon = "daemon"

// A Participant holds one share of the group and gives it to this proxy, or
// not. The round logic (stages, hedging, verification, progress) knows
// participants only through this interface, so a new kind (a share wrapped
// by Cloud KMS, ...) plugs in with RegisterKind and no change here.
type Participant interface {
	// Name is the participant's name in the group descriptor.
	Name() string
	// Kind is the kind it was built as ("daemon", "kms", ...).
	Kind() string
	// Fetch asks for the share once. ctx carries the deadline (req.Timeout
	// from the call). The share it returns is NOT trusted: the round checks
	// it against the group's Feldman commitments and that it is this
	// participant's, and wipes it. The error says why there is no share, in
	// the terms of the error types below (RefusedError, InvalidShareError,
	// LocalError; anything else counts as unreachable). Neither the error
	// nor any log line may hold a share, a key or a token. Fetch is called
	// again only after the previous call returned.
	Fetch(ctx context.Context, req FetchRequest) (*psk.Share, error)
}

// A participant that also implements io.Closer is closed when its source
// is closed (and at the end of a dry run), e.g. to release a client
// connection pool.

// FetchRequest is what one Fetch is about. All of it is public.
type FetchRequest struct {
	// Group is the group descriptor the share must belong to. Read only.
	Group *psk.Group
	// Participant is the group's entry for this participant: its share
	// Index and Name.
	Participant psk.Participant
	// Identity and Epoch are what the PSK will be derived for.
	Identity string
	Epoch    uint64
	// Attestation gives this proxy's attestation tokens (the Confidential
	// Space launcher, or the dev attester in tests). A token is bound to
	// its audience and nonces; a participant asks for the ones its
	// verifier checks.
	Attestation attest.TokenProvider
	// Timeout bounds the whole exchange; ctx already carries it as its
	// deadline.
	Timeout time.Duration
}

// Entry is what a kind's builder gets for one shareholders: entry.
type Entry struct {
	// Name is the entry's name, already checked to be a participant of
	// Group and listed once.
	Name string
	// Kind is the entry's kind ("daemon" when kind: is absent).
	Kind string
	// Config is the entry as written (the daemon kind reads url, pin,
	// ca_file and audience from it; other kinds read Options via Decode).
	Config ShareholderConfig
	// Group is the loaded group descriptor; Participant is its entry for
	// Name.
	Group       *psk.Group
	Participant psk.Participant
	// Field names the entry in errors, e.g. "shareholders[3]"; Errorf
	// builds errors about its options.
	Field string
	// Decode decodes the entry's options: block into v, rejecting unknown
	// keys (an absent block leaves v as it is).
	Decode func(v any) error
	// Path resolves a relative path written in the options the way the
	// source resolves its own (against the directory of a stand-alone
	// shares: file given to `mcbn proxy check`, else left relative to the
	// working directory, as the proxy reads it).
	Path func(p string) string
	// Logger carries the source's attributes. Never log a share, a key or
	// a token.
	Logger *slog.Logger
}

// Errorf returns a configuration error about the entry's option key (e.g.
// "key"), named "shareholders[3].options.key" (prefixed by the caller with
// where the source is configured).
func (e Entry) Errorf(option, format string, a ...any) error {
	field := e.Field + ".options"
	if option != "" {
		field += "." + option
	}
	return fieldErr(field, format, a...)
}

// BuildFunc builds a participant of a registered kind from its entry. It
// validates the entry and prepares clients; it must not contact the
// participant (that is Fetch's job, every round). An error should be a
// *ConfigError naming the field (Entry.Errorf); any other error is reported
// against the whole entry.
type BuildFunc func(e Entry) (Participant, error)

var (
	kindsMu sync.Mutex
	kinds   = map[string]BuildFunc{}
)

// kindRE keeps kind names short and plain (they appear in errors, logs and
// the status page).
var kindRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// RegisterKind makes a participant kind available as `kind: KIND` in a
// shares source's shareholders: list. Call it from an init function of
// the package that provides the kind (package gather never imports it; a
// binary links the kinds it supports). It panics on a malformed or
// duplicate kind.
func RegisterKind(kind string, build BuildFunc) {
	if !kindRE.MatchString(kind) || build == nil {
		panic(fmt.Sprintf("gather: bad participant kind %q", kind))
	}
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if _, dup := kinds[kind]; dup {
		panic("gather: participant kind registered twice: " + kind)
	}
	kinds[kind] = build
}

// Kinds lists the registered participant kinds, sorted.
func Kinds() []string {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func kindBuilder(kind string) (BuildFunc, bool) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	b, ok := kinds[kind]
	return b, ok
}

// Refusal reasons that are a participant's decision on consent: a round
// short of the threshold because of these alone is worded "not enough
// shareholders consent". Any kind reports a decision with one of them.
// Other reasons (token_invalid, rate_limited, unavailable, a kind's own
// codes) are refusals, but not consent decisions.
const (
	ReasonConsentRevoked = shareholder.ReasonConsentRevoked // "consent_revoked"
	ReasonPolicyDenied   = shareholder.ReasonPolicyDenied   // "policy_denied"
	// A Cloud KMS participant withdraws consent by disabling its key
	// version, or by changing the binding or attribute condition, which
	// KMS reports as permission denied.
	ReasonKeyDisabled      = "key_disabled"
	ReasonPermissionDenied = "permission_denied"
)

// consentDecision tells a refusal that is a participant's decision on
// consent (withdrawn, or its policy does not admit this proxy) from one
// that is not (rate limited, its config broken, STS refused the token).
func consentDecision(reason string) bool {
	switch reason {
	case ReasonConsentRevoked, ReasonPolicyDenied, ReasonKeyDisabled, ReasonPermissionDenied:
		return true
	}
	return false
}

// RefusedError is a participant's refusal with a short public reason code.
// The round keeps the code only if it is plain (lowercase letters, digits,
// underscores; at most 40), so no participant can write into logs or
// metric labels through it; a daemon's code must moreover be one of the
// release protocol's.
type RefusedError struct {
	Participant string
	Reason      string
	// Status is the HTTP status of a daemon's refusal (0 for other kinds).
	Status int
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("shareholder %s refused: %s", e.Participant, e.Reason)
}

// InvalidShareError is an answer that is not a usable share although the
// participant meant to release one (e.g. a KMS plaintext that does not
// parse as a share file of this participant). The round reports it as
// invalid, like a share that fails the Feldman check. Why must not hold
// secret material.
type InvalidShareError struct{ Why string }

func (e *InvalidShareError) Error() string { return "invalid share: " + e.Why }

// LocalError marks a failure of this proxy's own making (out of file
// descriptors, a local credential file, the attestation launcher), so it
// is reported as "unreachable: local error: ..." and never as a
// participant's decision or outage. The round recognises exhausted file
// descriptors, ports and buffers and the token provider's failures by
// itself; a kind wraps other local causes with Local.
type LocalError struct{ Err error }

func (e *LocalError) Error() string { return "local error: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *LocalError) Unwrap() error { return e.Err }

// Local marks err as a local failure (nil stays nil).
func Local(err error) error {
	if err == nil {
		return nil
	}
	var l *LocalError
	if errors.As(err, &l) {
		return err
	}
	return &LocalError{Err: err}
}

// reasonRE is the shape a refusal reason must have to be kept.
var reasonRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// plainReason keeps a refusal reason only when it has the shape of a code.
func plainReason(r string) string {
	if reasonRE.MatchString(r) {
		return r
	}
	return "unknown_reason"
}
