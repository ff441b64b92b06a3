package kms

import (
	"context"
	"errors"

	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/psk"
)

// KindKMS is the participant kind of a share sealed with a participant's
// Cloud KMS key: `kind: kms` in a shares source's shareholders: list, with
// Options under options:.
const KindKMS = "kms"

// The kind registers itself with gather: a binary that imports this
// package (cmd/mcbn does) accepts kind: kms entries. gather never imports
// kms.
func init() { gather.RegisterKind(KindKMS, buildKind) }

// kindParticipant adapts a Participant to gather's interface.
type kindParticipant struct{ p *Participant }

func buildKind(e gather.Entry) (gather.Participant, error) {
	var o Options
	if err := e.Decode(&o); err != nil {
		return nil, err
	}
	if o.SealedShare != "" {
		o.SealedShare = e.Path(o.SealedShare)
	}
	p, err := NewParticipant(e.Name, o)
	if err != nil {
		return nil, e.Errorf("", "%v", err)
	}
	if err := p.CheckGroup(e.Group); err != nil {
		return nil, e.Errorf("sealed_share", "%v", err)
	}
	return kindParticipant{p}, nil
}

func (k kindParticipant) Name() string { return k.p.Name() }
func (k kindParticipant) Kind() string { return KindKMS }

// Fetch maps the KMS participant's error classes onto gather's: a disabled
// key version or a denied decrypt is the participant's decision on consent,
// named by its own code; an STS refusal is a refusal that is not; a bad
// sealed share is an invalid share; a problem on this proxy is local.
func (k kindParticipant) Fetch(ctx context.Context, req gather.FetchRequest) (*psk.Share, error) {
	s, err := k.p.Fetch(ctx, req.Attestation, req.Group)
	if err == nil {
		return s, nil
	}
	psk.Wipe(shareBytes(s))
	switch {
	case errors.Is(err, ErrKeyDisabled):
		return nil, &gather.RefusedError{Participant: k.p.Name(), Reason: gather.ReasonKeyDisabled}
	case errors.Is(err, ErrPermissionDenied):
		return nil, &gather.RefusedError{Participant: k.p.Name(), Reason: gather.ReasonPermissionDenied}
	case errors.Is(err, ErrSTSRejected):
		return nil, &gather.RefusedError{Participant: k.p.Name(), Reason: "sts_rejected"}
	case errors.Is(err, ErrInvalidShare):
		return nil, &gather.InvalidShareError{Why: err.Error()}
	case errors.Is(err, ErrLocal):
		return nil, gather.Local(err)
	}
	return nil, err
}

// shareBytes is nil-safe access to a share's secret bytes for wiping.
func shareBytes(s *psk.Share) []byte {
	if s == nil {
		return nil
	}
	return s.Value
}
