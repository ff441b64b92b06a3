package gather

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/tprf"
	"github.com/mcbn/mcbn/shareholder"
)

// Modes of the shares source (SharesSourceConfig.Mode).
const (
	// ModeShare gathers T shares and reconstructs the group secret inside
	// the TEE (the default).
	ModeShare = "share"
	// ModeEvaluate gathers T partial evaluations of the threshold PRF for
	// (KeyID, identity, epoch) and combines them: the group secret and the
	// daemons' shares never reach this proxy (docs/key-derivation.md,
	// "Threshold PRF").
	ModeEvaluate = "evaluate"
)

// An Evaluator is a participant that computes its own partial evaluation
// (the daemon kind). In mode evaluate the round asks it for a partial and
// never for its share. A participant that is not an Evaluator (a Cloud KMS
// participant: KMS decrypts, it cannot compute) has its share fetched and
// evaluated here, inside the TEE, then wiped (docs/key-derivation.md,
// "What a KMS participant costs").
type Evaluator interface {
	// Evaluate asks for the partial for req's group, identity and epoch.
	// The partial is NOT trusted: the round verifies its proof against the
	// participant's verification key. Errors follow Fetch's rules.
	Evaluate(ctx context.Context, req FetchRequest) (*tprf.Partial, error)
}

var _ Evaluator = (*daemonParticipant)(nil)

// Evaluate runs the release protocol in mode evaluate on one fresh TLS
// connection (the same attestation and channel binding as Fetch) and
// returns the parsed partial. Nothing of the share crosses the wire.
func (c *daemonParticipant) Evaluate(ctx context.Context, fr FetchRequest) (*tprf.Partial, error) {
	var p *tprf.Partial
	rr := shareholder.ReleaseRequest{Mode: shareholder.ModeEvaluate, Identity: fr.Identity, Epoch: fr.Epoch}
	err := c.exchange(ctx, fr, rr, func(conn io.Reader, req *http.Request) (err error) {
		p, err = c.readPartial(conn, req)
		return err
	})
	return p, err
}

// readPartial reads the reply to an evaluate request (see readBody) and
// parses the partial in it.
func (c *daemonParticipant) readPartial(conn io.Reader, req *http.Request) (*tprf.Partial, error) {
	reply, err := c.readBody(conn, req)
	if err != nil {
		return nil, err
	}
	if observeEvaluateReply != nil {
		observeEvaluateReply(c.name, reply)
	}
	p, err := shareholder.ParseEvaluateResponse(reply)
	if err != nil {
		return nil, fmt.Errorf("reply is not a valid evaluate response: %v", err)
	}
	return p, nil
}

// observeEvaluateReply, set by tests only, sees every evaluate reply body a
// daemon sent, to check what crosses the wire.
var observeEvaluateReply func(name string, body []byte)

// checkMode validates mode: and prepares the threshold PRF group.
func (p *prepared) checkMode() error {
	switch p.cfg.Mode {
	case "":
		p.cfg.Mode = ModeShare
	case ModeShare:
	case ModeEvaluate:
		tg, err := tprf.NewGroup(p.group)
		if err != nil {
			return fieldErr("mode", "%v", err)
		}
		p.tprf = tg
	default:
		return fieldErr("mode", "%q, want %s or %s", clipField(p.cfg.Mode, 32), ModeShare, ModeEvaluate)
	}
	return nil
}

// input is the PRF input this source evaluates.
func (p *prepared) input() tprf.Input {
	return p.tprf.Input(p.cfg.Identity, p.cfg.Epoch)
}

// gatherPartials is gather in mode evaluate: it asks each participant for
// its partial (an Evaluator) or for its share, evaluated here (any other
// kind), and verifies each partial's proof against the participant's
// verification key. A partial that fails is named like a share that fails:
// the participant's outcome is invalid, with the reason.
func gatherPartials(ctx context.Context, p *prepared, provider attest.TokenProvider, stopAtT bool, prefer []int) (Progress, []*tprf.Partial) {
	in := p.input()
	return gatherWith(ctx, p, provider, stopAtT, prefer, asker[*tprf.Partial]{
		ask: func(ctx context.Context, pt Participant, req FetchRequest) (*tprf.Partial, error) {
			var part *tprf.Partial
			var err error
			if ev, ok := pt.(Evaluator); ok {
				part, err = ev.Evaluate(ctx, req)
			} else {
				part, err = evaluateLocally(ctx, p, pt, req, in)
			}
			if err != nil {
				return nil, err
			}
			if part == nil {
				return nil, errors.New("no partial and no error")
			}
			return part, nil
		},
		check: func(pt Participant, part *tprf.Partial) string {
			if want := p.group.ParticipantByName(pt.Name()); want == nil || part.Index != want.Index {
				return fmt.Sprintf("returned the partial of index %d, not its own", part.Index)
			}
			if err := p.tprf.Verify(in, part); err != nil {
				return "partial fails verification: " + tprf.KindOf(err)
			}
			return ""
		},
		drop: func(*tprf.Partial) {}, // public values: nothing to wipe
	})
}

// evaluateLocally fetches a participant's share (a kind that cannot
// evaluate) and evaluates it here: the share is checked against the group
// like in mode share, used once and wiped.
func evaluateLocally(ctx context.Context, p *prepared, pt Participant, req FetchRequest, in tprf.Input) (*tprf.Partial, error) {
	sh, err := pt.Fetch(ctx, req)
	if err != nil {
		if sh != nil {
			sh.Wipe()
		}
		return nil, err
	}
	if sh == nil {
		return nil, errors.New("no share and no error")
	}
	defer sh.Wipe()
	if psk.VerifyShare(p.group, sh) != nil {
		return nil, &InvalidShareError{Why: "share fails verification against the group commitments"}
	}
	if sh.Participant != pt.Name() {
		return nil, &InvalidShareError{Why: "returned another participant's share"}
	}
	part, err := p.tprf.Evaluate(sh, in, nil)
	if err != nil {
		return nil, Local(fmt.Errorf("evaluating %s's share here: %v", pt.Name(), err))
	}
	return part, nil
}

// roundEvaluate is round in mode evaluate: gather T partials, combine them
// and derive the epoch's PSK.
func (s *SharesSource) roundEvaluate(ctx context.Context, p *prepared, provider attest.TokenProvider, prefer []int) bool {
	prog, partials := gatherPartials(ctx, p, provider, true, prefer)
	if ctx.Err() != nil {
		return false
	}
	s.metrics.observe(prog)
	var key []byte
	status := prog.String()
	if prog.Enough() {
		var bad []error
		var err error
		key, bad, err = p.tprf.CombinePSK(p.input(), partials, p.cfg.KeyLength)
		for _, b := range bad {
			s.log.Error("partial set aside", "err", b)
		}
		if err != nil {
			s.log.Error("combination failed", "err", err)
			status += "; combination failed"
			key = nil
		}
	}
	s.logOutcomes(p, prog)
	s.install(p, key, prog, status)
	return key != nil
}
