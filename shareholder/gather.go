package shareholder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
)

// Outcome states of one shareholder in a gathering round.
const (
	StateOK          = "ok"
	StateRefused     = "refused"
	StateInvalid     = "invalid"     // the share failed verification against the group
	StateUnreachable = "unreachable" // network, TLS, token or protocol failure
	StateNotNeeded   = "not needed"  // T valid shares arrived first
)

// Outcome is what one shareholder did in a gathering round.
type Outcome struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"` // refusal code or error summary
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

// gather contacts every shareholder in parallel, each bounded by the
// configured timeout, and verifies each share against the group. With
// stopAtT it cancels the rest once T valid shares are in; extra valid shares
// are wiped at once. The caller wipes the returned shares.
func gather(ctx context.Context, p *prepared, provider attest.TokenProvider, stopAtT bool) (Progress, []*psk.Share) {
	type result struct {
		i     int
		share *psk.Share
		err   error
	}
	n := len(p.clients)
	prog := Progress{N: n, Threshold: p.group.Threshold, Outcomes: make([]Outcome, n)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, n)
	for i, c := range p.clients {
		prog.Outcomes[i] = Outcome{Name: c.name, State: StateNotNeeded}
		go func() {
			cctx, ccancel := context.WithTimeout(ctx, p.cfg.Timeout)
			defer ccancel()
			sh, err := c.fetch(cctx, provider)
			if err != nil && cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
				err = fmt.Errorf("timed out after %v", p.cfg.Timeout)
			}
			results <- result{i, sh, err}
		}()
	}
	var valid []*psk.Share
	for range n {
		r := <-results
		name := p.clients[r.i].name
		var ref *RefusedError
		switch {
		case r.err != nil && !errors.As(r.err, &ref) && stopAtT && len(valid) >= p.group.Threshold:
			// Canceled by us once T shares were in: it stays "not needed".
		case r.err != nil:
			prog.Outcomes[r.i] = classify(name, r.err)
		default:
			why := ""
			if psk.VerifyShare(p.group, r.share) != nil {
				why = "share fails verification against the group commitments"
			} else if r.share.Participant != name {
				why = "returned another participant's share"
			}
			switch {
			case why != "":
				r.share.Wipe()
				prog.Outcomes[r.i] = Outcome{Name: name, State: StateInvalid, Reason: why}
			case stopAtT && len(valid) >= p.group.Threshold:
				r.share.Wipe()
				prog.Outcomes[r.i] = Outcome{Name: name, State: StateOK}
				prog.Valid++
			default:
				valid = append(valid, r.share)
				prog.Outcomes[r.i] = Outcome{Name: name, State: StateOK}
				prog.Valid++
				if stopAtT && len(valid) == p.group.Threshold {
					cancel()
				}
			}
		}
	}
	return prog, valid
}

// classify turns a fetch error into an outcome with a short reason.
func classify(name string, err error) Outcome {
	var ref *RefusedError
	if errors.As(err, &ref) {
		return Outcome{Name: name, State: StateRefused, Reason: ref.Reason}
	}
	msg := err.Error()
	var ne net.Error
	switch {
	case errors.Is(err, attest.ErrProvider), errors.Is(err, attest.ErrRequest):
		msg = "attestation token: " + attest.Reason(err)
	case errors.As(err, &ne) && ne.Timeout():
		msg = "timed out"
	}
	return Outcome{Name: name, State: StateUnreachable, Reason: clipField(msg, 200)}
}

// wipeShares zeroes every share.
func wipeShares(shares []*psk.Share) {
	for _, s := range shares {
		s.Wipe()
	}
}
