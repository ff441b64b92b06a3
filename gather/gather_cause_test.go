package gather

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/shareholder"
)

// Each kind of fetch failure gets its outcome: a refusal stays a refusal,
// errors of this proxy's own making are marked local, and DNS, dial errors
// and timeouts are unreachable, never refused.
func TestGatherClassify(t *testing.T) {
	dial := func(e error) error {
		return fmt.Errorf("connecting: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", e)})
	}
	cases := []struct {
		name   string
		err    error
		state  string
		reason string
		local  bool
	}{
		{"refusal", &RefusedError{Participant: "bob", Reason: ReasonConsentRevoked}, StateRefused, "consent_revoked", false},
		{"fd exhaustion", dial(syscall.EMFILE), StateUnreachable, "local error: too many open files", true},
		{"system fd exhaustion", dial(syscall.ENFILE), StateUnreachable, "local error: too many open files in system", true},
		{"no ephemeral port", dial(syscall.EADDRNOTAVAIL), StateUnreachable, "local error: cannot assign requested address", true},
		{"launcher down", fmt.Errorf("attestation token: %w", fmt.Errorf("attest: %w: x", attest.ErrProvider)), StateUnreachable, "local error: attestation token: provider_unavailable", true},
		{"connection refused", dial(syscall.ECONNREFUSED), StateUnreachable, "connection refused", false},
		{"DNS", fmt.Errorf("connecting: %w", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "bob.example", IsNotFound: true}}), StateUnreachable, "DNS lookup of bob.example failed: no such host", false},
		{"timeout", fmt.Errorf("reading reply: %w", os.ErrDeadlineExceeded), StateUnreachable, "timed out", false},
	}
	for _, tc := range cases {
		o := classify("bob", tc.err)
		if o.State != tc.state || !strings.Contains(o.Reason, tc.reason) || o.Local != tc.local {
			t.Errorf("%s: %+v, want %s %q local=%v", tc.name, o, tc.state, tc.reason, tc.local)
		}
	}
}

// The summary of a round below T says whether participants refused or
// could not be asked, and never calls a local error withdrawn consent.
func TestGatherShortfall(t *testing.T) {
	out := func(name, state, reason string) Outcome { return Outcome{Name: name, State: state, Reason: reason} }
	cases := []struct {
		outcomes []Outcome
		want     string
	}{
		{[]Outcome{out("alice", StateOK, ""), out("bob", StateRefused, "consent_revoked"), out("carol", StateRefused, "policy_denied")},
			"not enough shareholders consent: 1/3 valid, threshold 2; 2 refused (bob: consent_revoked; carol: policy_denied)"},
		{[]Outcome{out("alice", StateUnreachable, "local error: too many open files"), out("bob", StateUnreachable, "local error: too many open files"), out("carol", StateUnreachable, "local error: too many open files")},
			"shareholders unreachable: 0/3 valid, threshold 2; 3 unreachable (local error: too many open files)"},
		{[]Outcome{out("alice", StateOK, ""), out("bob", StateRefused, "consent_revoked"), out("carol", StateUnreachable, "timed out after 10s")},
			"not enough shares: 1/3 valid, threshold 2; 1 refused (bob: consent_revoked); 1 unreachable (carol: timed out after 10s)"},
		{[]Outcome{out("alice", StateOK, ""), out("bob", StateInvalid, "share fails verification against the group commitments"), out("carol", StateUnreachable, "DNS lookup of carol.example failed: no such host")},
			"not enough shares: 1/3 valid, threshold 2; 1 unreachable (carol: DNS lookup of carol.example failed: no such host); 1 invalid (bob: share fails verification against the group commitments)"},
		{[]Outcome{out("alice", StateOK, ""), out("bob", StateRefused, "consent_revoked"), out("carol", StateRefused, "token_invalid")},
			"shareholders refused: 1/3 valid, threshold 2; 2 refused (bob: consent_revoked; carol: token_invalid)"},
		{[]Outcome{out("alice", StateOK, ""), out("bob", StateInvalid, "returned another participant's share"), out("carol", StateNotNeeded, "")},
			"shareholders returned invalid shares: 1/3 valid, threshold 2; 1 invalid (bob: returned another participant's share)"},
		{[]Outcome{out("alice", StateOK, ""), out("bob", StateOK, ""), out("carol", StateRefused, "consent_revoked")}, ""},
	}
	for _, tc := range cases {
		p := Progress{N: 3, Threshold: 2, Outcomes: tc.outcomes}
		p.Valid = p.Count(StateOK)
		if got := p.Shortfall(); got != tc.want {
			t.Errorf("Shortfall of %s:\n got %q\nwant %q", p, got, tc.want)
		}
	}
}

// A proxy whose shareholders cannot be reached (here: nothing listens, a
// dial error) does not log that consent was withdrawn.
func TestSourceUnreachableNotWordedAsConsent(t *testing.T) {
	f := newFixture(t)
	a := f.startServer("alice", f.devPolicy, shareholder.ConsentGranted)
	cfg := f.sourceConfig(
		ShareholderConfig{Name: "alice", URL: "https://" + closedAddr(t), Pin: a.Pin(), Audience: "mcbn-test-alice"},
		ShareholderConfig{Name: "bob", URL: "https://" + closedAddr(t), Pin: a.Pin(), Audience: "mcbn-test-bob"},
		entry("carol", f.startServer("carol", f.devPolicy, shareholder.ConsentRevoked)))
	src, err := NewSharesSource(cfg, nil, f.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitFor(t, "a completed round", func() bool { return src.Rounds() > 0 })
	src.Close()
	logs := f.logs.String()
	if !strings.Contains(logs, `msg="PSK not available: not enough shares: 0/3 valid, threshold 2; 1 refused (carol: consent_revoked); 2 unreachable (alice: connecting: `) {
		t.Fatalf("log does not tell the refusal from the unreachable shareholders:\n%s", logs)
	}
	if strings.Contains(logs, "not enough shareholders consent") {
		t.Fatalf("log blames consent:\n%s", logs)
	}
}

// A token older than the verifier's max age is refused by the daemon with
// the same public reason as any other bad token (token_invalid, nothing
// more), and the proxy words it as a refusal, not as withdrawn consent.
func TestGatherTooOldTokenRefused(t *testing.T) {
	f := newFixture(t)
	var entries []ShareholderConfig
	for _, n := range names {
		entries = append(entries, entry(n, f.startServer(n, f.devPolicy, shareholder.ConsentGranted)))
	}
	now := time.Now()
	f.att.SetMutate(attest.SetTimes(now.Add(-2*time.Hour), now.Add(-2*time.Hour), now.Add(time.Hour)))
	prog, err := Check(context.Background(), f.sourceConfig(entries...), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range prog.Outcomes {
		if o.State != StateRefused || o.Reason != shareholder.ReasonTokenInvalid {
			t.Fatalf("outcome %s, want refused: token_invalid", o)
		}
	}
	if got, want := prog.Shortfall(), "shareholders refused: 0/3 valid, threshold 2; 3 refused (token_invalid)"; got != want {
		t.Fatalf("Shortfall %q, want %q", got, want)
	}
	// Only the daemon's own log names the check that failed.
	if !strings.Contains(f.logs.String(), "token_too_old") {
		t.Fatalf("the daemons' log does not name the max-age check:\n%s", f.logs.String())
	}
}
