package shareholder

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/tprf"
)

// Values of Config.Release: which release modes this participant serves.
const (
	// ReleaseAny serves both modes (the default).
	ReleaseAny = "any"
	// ReleaseEvaluateOnly never releases the raw share: only partial
	// evaluations leave this daemon, so no proxy, however compromised,
	// ever holds this participant's share.
	ReleaseEvaluateOnly = "evaluate-only"
)

// EvaluateConfig is the `evaluate:` block: the epochs this participant
// answers partial evaluations for, an inclusive window [min_epoch,
// max_epoch]. Both default to 0, so a daemon answers epoch 0 until its
// participant moves the window: raising max_epoch is the consent to the
// next epoch (nobody can pre-compute far-future keys), raising min_epoch
// stops re-deriving old epochs' keys (whose PSKs protected recorded
// traffic). The file is re-read like the rest of the config.
type EvaluateConfig struct {
	MinEpoch uint64 `yaml:"min_epoch"`
	MaxEpoch uint64 `yaml:"max_epoch"`
}

// validateRelease checks release: and evaluate: (called by validate).
func (c *Config) validateRelease() error {
	switch c.Release {
	case "":
		c.Release = ReleaseAny
	case ReleaseAny, ReleaseEvaluateOnly:
	default:
		return fieldErr("release", "%q, want %s or %s", c.Release, ReleaseAny, ReleaseEvaluateOnly)
	}
	if c.Evaluate.MinEpoch > c.Evaluate.MaxEpoch {
		return fieldErr("evaluate.min_epoch", "%d is above evaluate.max_epoch %d", c.Evaluate.MinEpoch, c.Evaluate.MaxEpoch)
	}
	return nil
}

// sameReleaseRules reports whether two configs allow the same modes and
// epochs, so a request checked under one may be answered under the other.
func sameReleaseRules(a, b *Config) bool {
	return a.Release == b.Release && a.Evaluate == b.Evaluate
}

// modeRefusal returns why cfg does not allow req's mode and epoch ("" when
// it does). Checked after the token and the policy, like consent: only an
// attested, allowed caller learns this participant's window.
func modeRefusal(cfg *Config, req *ReleaseRequest) (check, detail string) {
	switch req.Mode {
	case ModeEvaluate:
		if req.Epoch < cfg.Evaluate.MinEpoch || req.Epoch > cfg.Evaluate.MaxEpoch {
			return "epoch_window", fmt.Sprintf("mode evaluate, epoch %d outside this participant's window %d..%d", req.Epoch, cfg.Evaluate.MinEpoch, cfg.Evaluate.MaxEpoch)
		}
	default:
		if cfg.Release == ReleaseEvaluateOnly {
			return "mode", "mode share refused: this participant releases partial evaluations only (release: evaluate-only)"
		}
	}
	return "", ""
}

// dispatch is the last step of decide: the mode rules, then the release
// of the share or of a partial evaluation.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, st *serverState, d decision, req *ReleaseRequest) decision {
	if check, detail := modeRefusal(st.cfg, req); check != "" {
		d.reason, d.check, d.detail = ReasonPolicyDenied, check, detail
		return d
	}
	if req.Mode == ModeEvaluate {
		return s.evaluate(w, r, st, d, req)
	}
	return s.release(w, r, st, d)
}

// tprfGroups caches the prepared group per group id (a descriptor's id is
// the digest of its contents, so one id is one group).
var tprfGroups sync.Map // string -> *tprf.Group

func tprfGroup(g *psk.Group) (*tprf.Group, error) {
	if v, ok := tprfGroups.Load(g.ID); ok {
		return v.(*tprf.Group), nil
	}
	tg, err := tprf.NewGroup(g)
	if err != nil {
		return nil, err
	}
	v, _ := tprfGroups.LoadOrStore(g.ID, tg)
	return v.(*tprf.Group), nil
}

// evaluate answers a partial evaluation: it loads and checks the share,
// computes Y_i = x_i·H(e) with its proof, records the decision (mode and
// epoch) durably, then sends the partial. The share never leaves.
func (s *Server) evaluate(w http.ResponseWriter, r *http.Request, st *serverState, d decision, req *ReleaseRequest) decision {
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	scope := fmt.Sprintf("mode evaluate, epoch %d, identity %q", req.Epoch, clipField(req.Identity, 64))
	sh, err := s.store.LoadShare(ctx)
	if err != nil {
		d.reason, d.check, d.detail = ReasonUnavailable, "store", scope+": the share store is unreachable (a local failure; consent is unchanged): "+err.Error()
		return d
	}
	defer sh.Wipe()
	if err := psk.VerifyShare(s.group, sh); err != nil {
		d.reason, d.check, d.detail = ReasonUnavailable, "store", scope+": the share store holds a share that does not verify against the group (a local failure)"
		return d
	}
	tg, err := tprfGroup(s.group)
	if err != nil {
		d.reason, d.check, d.detail = ReasonUnavailable, "evaluate", scope+": "+err.Error()
		return d
	}
	p, err := tg.Evaluate(sh, tg.Input(req.Identity, req.Epoch), nil)
	if err != nil {
		d.reason, d.check, d.detail = ReasonUnavailable, "evaluate", scope+": evaluation failed (a local failure): "+err.Error()
		return d
	}
	enc, err := p.MarshalBinary()
	if err != nil {
		d.reason, d.check, d.detail = ReasonUnavailable, "evaluate", scope+": encoding the partial failed: "+err.Error()
		return d
	}
	body := []byte(`{"version":` + strconv.Itoa(ProtocolVersion) + `,"partial":"` + hex.EncodeToString(enc) + "\"}\n")

	// The same gate as a share release (see release): once a revoke or a
	// narrower window is confirmed, no partial decided under the old state
	// leaves.
	if h := s.testHook.Load(); h != nil {
		(*h)("before_gate")
	}
	s.gate.RLock()
	defer s.gate.RUnlock()
	if reason, check, detail := changedSince(st, s.state.Load()); reason != "" {
		d.reason, d.check, d.detail = reason, check, scope+": "+detail
		return d
	}
	if h := s.testHook.Load(); h != nil {
		(*h)("in_gate")
	}
	head, err := s.audit.Append(AuditRecord{
		Remote: r.RemoteAddr, Subject: d.subject, ImageDigest: d.digest,
		Decision: DecisionRelease, Reason: ReasonOK,
		Detail: "released partial evaluation of participant " + sh.Participant + " (" + scope + ")",
	})
	if err != nil {
		s.log.Error("audit log write failed; refusing the evaluation (a local failure, not a consent decision)", "err", err)
		d.reason, d.check, d.detail = ReasonUnavailable, "audit", "audit log write failed (a local failure)"
		return d
	}
	s.metrics.releases.Inc()
	s.log.Info("partial evaluation released", "remote", r.RemoteAddr, "sub", d.subject, "image_digest", d.digest,
		"mode", ModeEvaluate, "epoch", req.Epoch, "audit_head", head)
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(shareWriteTimeout))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	rc.Flush()
	return decision{reason: ReasonOK}
}
