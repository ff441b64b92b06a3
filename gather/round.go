package gather

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
)

// Outcome states of one participant in a gathering round.
const (
	StateOK          = "ok"
	StateRefused     = "refused"
	StateInvalid     = "invalid"     // the share failed verification against the group
	StateUnreachable = "unreachable" // network, TLS, token or protocol failure
	StateNotNeeded   = "not needed"  // T valid shares arrived first
)

// Outcome is what one participant did in a gathering round.
type Outcome struct {
	Name   string `json:"name"`
	Kind   string `json:"kind,omitempty"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"` // refusal code or error summary
	// Local marks an unreachable outcome caused on this proxy's side (out
	// of file descriptors, buffers or ports; the attestation launcher), not
	// by the participant or the network.
	Local bool `json:"local,omitempty"`
}

func (o Outcome) String() string {
	if o.Reason == "" {
		return o.Name + " " + o.State
	}
	return o.Name + " " + o.State + ": " + o.Reason
}

// Progress is a round's result without any secret.
type Progress struct {
	Valid     int
	N         int
	Threshold int
	Outcomes  []Outcome // in configuration order
}

// String renders progress the way Vault shows unsealing:
// "2/3 shares (threshold 2): alice ok, bob ok, carol refused: consent_revoked".
func (p Progress) String() string {
	parts := make([]string, len(p.Outcomes))
	for i, o := range p.Outcomes {
		parts[i] = o.String()
	}
	return fmt.Sprintf("%d/%d shares (threshold %d): %s", p.Valid, p.N, p.Threshold, strings.Join(parts, ", "))
}

// Enough reports whether the threshold was reached.
func (p Progress) Enough() bool { return p.Valid >= p.Threshold }

// Count returns how many participants ended the round in state.
func (p Progress) Count(state string) int {
	n := 0
	for _, o := range p.Outcomes {
		if o.State == state {
			n++
		}
	}
	return n
}

// Shortfall says why a round stayed below the threshold ("" when it did
// not), keeping a participant's decision (a refusal: consent withdrawn,
// policy refused; other refusals such as token_invalid or rate_limited are
// worded as refusals, not as consent) apart from failures to ask (unreachable:
// a local error such as running out of file descriptors, DNS, dial errors,
// timeouts) and from invalid shares, so that an operator is never told that
// consent was withdrawn when the proxy itself could not get through:
//
//	not enough shareholders consent: 1/3 valid, threshold 2; 2 refused (bob: consent_revoked, carol: policy_denied)
//	shareholders unreachable: 0/3 valid, threshold 2; 3 unreachable (local error: too many open files)
func (p Progress) Shortfall() string {
	if p.Enough() {
		return ""
	}
	refused, unreachable, invalid := p.Count(StateRefused), p.Count(StateUnreachable), p.Count(StateInvalid)
	decided := 0 // refusals that are a participant's decision on consent
	for _, o := range p.Outcomes {
		if o.State == StateRefused && consentDecision(o.Reason) {
			decided++
		}
	}
	head := "not enough shares"
	switch {
	case refused > 0 && unreachable == 0 && invalid == 0 && decided == refused:
		head = "not enough shareholders consent"
	case refused > 0 && unreachable == 0 && invalid == 0:
		// token_invalid, rate_limited, unavailable, ...: refused, but not
		// (only) as a decision on consent.
		head = "shareholders refused"
	case refused == 0 && unreachable > 0 && invalid == 0:
		head = "shareholders unreachable"
	case refused == 0 && unreachable == 0 && invalid > 0:
		head = "shareholders returned invalid shares"
	}
	parts := []string{fmt.Sprintf("%d/%d valid, threshold %d", p.Valid, p.N, p.Threshold)}
	for _, st := range []string{StateRefused, StateUnreachable, StateInvalid} {
		if d := p.detail(st); d != "" {
			parts = append(parts, d)
		}
	}
	return head + ": " + strings.Join(parts, "; ")
}

// detail renders the participants in state as "2 unreachable (bob: x;
// carol: y)", or "2 unreachable (x)" when they all failed the same way.
func (p Progress) detail(state string) string {
	var names, reasons []string
	same := true
	for _, o := range p.Outcomes {
		if o.State != state {
			continue
		}
		if len(reasons) > 0 && o.Reason != reasons[0] {
			same = false
		}
		names = append(names, o.Name)
		reasons = append(reasons, o.Reason)
	}
	switch {
	case len(names) == 0:
		return ""
	case same && len(names) > 1:
		return fmt.Sprintf("%d %s (%s)", len(names), state, reasons[0])
	}
	items := make([]string, len(names))
	for i := range names {
		items[i] = names[i] + ": " + reasons[i]
	}
	return fmt.Sprintf("%d %s (%s)", len(names), state, strings.Join(items, "; "))
}

// How a gathering that stops at T spreads its requests. It asks T+spare
// participants first, the ones that released last time before the others,
// and one more for every answer that is not a valid share; after hedgeAfter
// without T valid shares it asks all the rest. So a healthy round costs T+1
// requests and attestation tokens whatever N is (time and load flat in N),
// one failure costs no waiting (the spare), and a participant that hangs
// delays the round by at most that delay. Fewer tokens issued also means
// fewer participants see a request they need not answer.
const (
	gatherSpare       = 1
	defaultHedgeAfter = 300 * time.Millisecond
)

// gather asks participants in parallel, each bounded by the configured
// timeout, and verifies each share against the group. With stopAtT it asks
// them in stages as described above, in the order prefer gives (indices
// into p.participants; nil means configuration order), cancels the rest
// once T valid shares are in, and wipes extra valid shares at once; without
// it (the dry run) it asks everyone. Every kind goes through the same
// Participant.Fetch and the same checks. The caller wipes the returned
// shares.
func gather(ctx context.Context, p *prepared, provider attest.TokenProvider, stopAtT bool, prefer []int) (Progress, []*psk.Share) {
	return gatherWith(ctx, p, provider, stopAtT, prefer, asker[*psk.Share]{
		ask: func(ctx context.Context, pt Participant, req FetchRequest) (*psk.Share, error) {
			sh, err := pt.Fetch(ctx, req)
			if err != nil && sh != nil {
				sh.Wipe() // a share and an error: the error wins
				sh = nil
			}
			if err == nil && sh == nil {
				err = errors.New("no share and no error")
			}
			return sh, err
		},
		check: func(pt Participant, sh *psk.Share) string {
			if psk.VerifyShare(p.group, sh) != nil {
				return "share fails verification against the group commitments"
			} else if sh.Participant != pt.Name() {
				return "returned another participant's share"
			}
			return ""
		},
		drop: func(sh *psk.Share) { sh.Wipe() },
	})
}

// asker is what a round gathers from each participant: a share (mode
// share) or a partial evaluation (mode evaluate, evaluate.go).
type asker[T any] struct {
	// ask gets one answer, or an error (never both, never neither).
	ask func(ctx context.Context, pt Participant, req FetchRequest) (T, error)
	// check says why an answer is invalid ("" when it is valid).
	check func(pt Participant, v T) string
	// drop wipes an answer that is not returned.
	drop func(v T)
}

// gatherWith is the round: stages, hedging, verification and progress, for
// answers of any type (see gather).
func gatherWith[T any](ctx context.Context, p *prepared, provider attest.TokenProvider, stopAtT bool, prefer []int, a asker[T]) (Progress, []T) {
	type result struct {
		i   int
		v   T
		err error
	}
	n := len(p.participants)
	t := p.group.Threshold
	prog := Progress{N: n, Threshold: t, Outcomes: make([]Outcome, n)}
	for i, pt := range p.participants {
		prog.Outcomes[i] = Outcome{Name: pt.Name(), Kind: pt.Kind(), State: StateNotNeeded}
	}
	order := gatherOrder(n, prefer)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, n)
	launched := 0
	launch := func() {
		i := order[launched]
		launched++
		pt := p.participants[i]
		req := p.requests[i]
		req.Attestation = provider
		go func() {
			cctx, ccancel := context.WithTimeout(ctx, p.cfg.Timeout)
			defer ccancel()
			v, err := a.ask(cctx, pt, req)
			// The connection's deadline is the context's, and may fire a
			// moment before the context notices.
			var ne net.Error
			var ref *RefusedError
			if err != nil && ctx.Err() == nil && !errors.As(err, &ref) && (cctx.Err() == context.DeadlineExceeded || errors.As(err, &ne) && ne.Timeout()) {
				err = fmt.Errorf("timed out after %v", p.cfg.Timeout)
			}
			results <- result{i, v, err}
		}()
	}
	first := n
	if stopAtT {
		first = min(n, t+gatherSpare)
	}
	for launched < first {
		launch()
	}
	var hedge <-chan time.Time
	if launched < n {
		timer := time.NewTimer(p.hedgeAfter)
		defer timer.Stop()
		hedge = timer.C
	}
	var valid []T
	for pending := launched; pending > 0; {
		var r result
		select {
		case <-hedge:
			hedge = nil
			for len(valid) < t && launched < n && ctx.Err() == nil {
				launch()
				pending++
			}
			continue
		case r = <-results:
			pending--
		}
		pt := p.participants[r.i]
		name := pt.Name()
		got := false
		var ref *RefusedError
		switch {
		case r.err != nil && !errors.As(r.err, &ref) && stopAtT && len(valid) >= t:
			// Canceled by us once T answers were in: it stays "not needed".
		case r.err != nil:
			prog.Outcomes[r.i] = classify(name, r.err)
			prog.Outcomes[r.i].Kind = pt.Kind()
		default:
			why := a.check(pt, r.v)
			switch {
			case why != "":
				a.drop(r.v)
				prog.Outcomes[r.i] = Outcome{Name: name, Kind: pt.Kind(), State: StateInvalid, Reason: why}
			case stopAtT && len(valid) >= t:
				a.drop(r.v)
				prog.Outcomes[r.i] = Outcome{Name: name, Kind: pt.Kind(), State: StateOK}
				prog.Valid++
			default:
				got = true
				valid = append(valid, r.v)
				prog.Outcomes[r.i] = Outcome{Name: name, Kind: pt.Kind(), State: StateOK}
				prog.Valid++
				if stopAtT && len(valid) == t {
					cancel()
				}
			}
		}
		if !got && len(valid) < t && launched < n && ctx.Err() == nil {
			launch() // replaces the one that did not give a share
			pending++
		}
	}
	return prog, valid
}

// gatherOrder lists 0..n-1 with the indices of prefer first, in their order,
// then the rest in configuration order.
func gatherOrder(n int, prefer []int) []int {
	order := make([]int, 0, n)
	seen := make([]bool, n)
	for _, i := range prefer {
		if i >= 0 && i < n && !seen[i] {
			seen[i] = true
			order = append(order, i)
		}
	}
	for i := range n {
		if !seen[i] {
			order = append(order, i)
		}
	}
	return order
}

// releasedLast returns the indices of the participants that gave a valid
// share in prog, to be asked first next time.
func releasedLast(prog Progress) []int {
	var out []int
	for i, o := range prog.Outcomes {
		if o.State == StateOK {
			out = append(out, i)
		}
	}
	return out
}

// classify turns a fetch error into an outcome with a short reason. Errors
// of this proxy's own making are marked Local and worded "local error: ...",
// so they are never mistaken for a participant's decision or outage.
func classify(name string, err error) Outcome {
	var ref *RefusedError
	if errors.As(err, &ref) {
		return Outcome{Name: name, State: StateRefused, Reason: plainReason(ref.Reason)}
	}
	var inv *InvalidShareError
	if errors.As(err, &inv) {
		return Outcome{Name: name, State: StateInvalid, Reason: clipField(inv.Why, 200)}
	}
	msg := err.Error()
	local := false
	var ne net.Error
	var dns *net.DNSError
	var errno syscall.Errno
	var le *LocalError
	switch {
	case errors.Is(err, attest.ErrProvider), errors.Is(err, attest.ErrRequest):
		// The launcher (or dev attester) runs beside this proxy.
		msg, local = "local error: attestation token: "+attest.Reason(err), true
	case errors.As(err, &errno) && localErrno(errno):
		msg, local = "local error: "+errno.Error(), true
	case errors.As(err, &le):
		msg, local = le.Error(), true
	case errors.As(err, &dns):
		what := dns.Err
		if dns.IsNotFound {
			what = "no such host"
		}
		msg = "DNS lookup of " + dns.Name + " failed: " + what
	case errors.As(err, &ne) && ne.Timeout():
		msg = "timed out"
	}
	return Outcome{Name: name, State: StateUnreachable, Reason: clipField(msg, 200), Local: local}
}

// localErrno reports whether a system call failed for want of a local
// resource rather than because of the peer or the network.
func localErrno(e syscall.Errno) bool {
	switch e {
	case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL:
		return true
	}
	return false
}

// wipeShares zeroes every share.
func wipeShares(shares []*psk.Share) {
	for _, s := range shares {
		s.Wipe()
	}
}
