package shareholder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
)

// decision is one release decision on its way to the audit log.
type decision struct {
	reason  string // public code
	check   string // detailed check, a bounded set (metrics label)
	detail  string // free text for the audit and daemon logs
	subject string
	digest  string
	// verified: the token verified (the caller is an attested workload).
	// Such refusals are always audited one by one; they are bounded by the
	// per-subject rate limit, not by the global audit budget.
	verified bool
	// chargeIP: the request failed before its token verified (malformed,
	// oversized, forged, replayed), so it counts against its address's
	// rate limit. Requests that verify never do, so junk sent from behind
	// the same NAT as a proxy cannot get the proxy's requests refused.
	chargeIP bool
}

// refuseStatus maps public reasons to HTTP status codes.
var refuseStatus = map[string]int{
	ReasonBadRequest:     http.StatusBadRequest,
	ReasonTooLarge:       http.StatusRequestEntityTooLarge,
	ReasonTokenInvalid:   http.StatusForbidden,
	ReasonPolicyDenied:   http.StatusForbidden,
	ReasonConsentRevoked: http.StatusForbidden,
	ReasonRateLimited:    http.StatusTooManyRequests,
	ReasonUnavailable:    http.StatusServiceUnavailable,
	ReasonConfigInvalid:  http.StatusServiceUnavailable,
}

// handleRelease implements POST /v1/release (docs/share-release.md).
func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	remote := r.RemoteAddr
	ip, _, err := net.SplitHostPort(remote)
	if err != nil {
		ip = remote
	}
	st := s.state.Load()
	d := s.decide(w, r, st, ip)
	if d.reason == ReasonOK {
		return
	}
	if d.chargeIP && !s.junk.allow(ip) {
		// Over its address's budget of failing requests: answered
		// rate_limited, never audited one by one (counted in the next
		// audit summary line), so a flood cannot fill the disk with fsyncs.
		s.metrics.refusals.WithLabelValues(ReasonRateLimited, "rate_ip").Inc()
		s.budget.summarizeOnly(ReasonRateLimited)
		s.metrics.auditSuppressed.WithLabelValues(ReasonRateLimited).Inc()
		writeJSON(w, http.StatusTooManyRequests, Refusal{Error: "refused", Reason: ReasonRateLimited})
		return
	}
	s.refuse(w, remote, d)
}

// decide runs every check in order and, when all pass, writes the share.
// It returns the decision for a refusal (reason != ok) or an ok decision
// after the release was written.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, st *serverState, ip string) decision {
	if r.Method != http.MethodPost {
		return decision{reason: ReasonBadRequest, check: "method", detail: "method " + clipField(r.Method, 16) + ", want POST", chargeIP: true}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, st.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decision{reason: ReasonTooLarge, check: "body_size", detail: fmt.Sprintf("body larger than %d bytes", mbe.Limit), chargeIP: true}
		}
		return decision{reason: ReasonBadRequest, check: "body_read", detail: "reading body: " + err.Error(), chargeIP: true}
	}
	req, err := ParseReleaseRequest(body)
	clear(body)
	if err != nil {
		return decision{reason: ReasonBadRequest, check: "json", detail: err.Error(), chargeIP: true}
	}
	if req.GroupID != "" && req.GroupID != s.group.ID {
		return decision{reason: ReasonBadRequest, check: "group", detail: "request names group " + req.GroupID[:12] + ", this share is of " + s.group.ID[:12], chargeIP: true}
	}
	nonce, err := ChannelNonce(r.TLS)
	if err != nil {
		return decision{reason: ReasonBadRequest, check: "channel", detail: err.Error(), chargeIP: true}
	}
	claims, err := s.verifyAttestation(r.Context(), st, req.Token, nonce)
	req.Token = ""
	if err != nil {
		code := attest.Reason(err)
		if localAttestationFailure(code) {
			return decision{reason: ReasonUnavailable, check: "token_" + code, detail: "the issuer's keys or the TEE collateral are unavailable (a local or vendor failure, not a refusal of the evidence): " + err.Error()}
		}
		return decision{reason: ReasonTokenInvalid, check: "token_" + code, detail: err.Error(), chargeIP: true}
	}
	d := decision{subject: claims.Subject(), digest: claims.ImageDigest(), verified: true}
	if !s.subjects.allow(d.subject) {
		d.reason, d.check, d.detail = ReasonRateLimited, "rate_subject", "over the rate limit of this token subject"
		return d
	}
	ok, err := st.policy.Eval(r.Context(), claims.Raw, RequestInfo{Time: s.now(), RemoteAddr: r.RemoteAddr, RemoteIP: ip})
	switch {
	case err != nil:
		d.reason, d.check, d.detail = ReasonPolicyDenied, "policy_error", "policy "+policyDigest(st.policy.Text())+": "+err.Error()
		return d
	case !ok:
		d.reason, d.check, d.detail = ReasonPolicyDenied, "policy_false", "policy "+policyDigest(st.policy.Text())+" is false for "+claims.String()
		return d
	}
	// Checked last, so only an attested caller with an allowed image learns
	// that this participant does not release now.
	if reason, check, detail := notReleasing(st); reason != "" {
		d.reason, d.check, d.detail = reason, check, detail
		return d
	}
	return s.dispatch(w, r, st, d, req) // the mode rules, then share or partial (evaluate.go)
}

// notReleasing returns why no release may happen under st ("" when one may).
func notReleasing(st *serverState) (reason, check, detail string) {
	switch {
	case st.refusing == checkConfigUnreadable:
		return ReasonUnavailable, st.refusing, "the config file cannot be read (a local failure; refusing until it can): " + st.why
	case st.refusing != "":
		return ReasonConfigInvalid, st.refusing, "the config file does not load (refusing until it does): " + st.why
	case st.consent != ConsentGranted:
		return ReasonConsentRevoked, "consent", "consent is " + orUnknown(st.consent)
	}
	return "", "", ""
}

// changedSince returns why a release decided under st must not go ahead
// under cur, the state now in force ("" when it may).
func changedSince(st, cur *serverState) (reason, check, detail string) {
	if cur == st {
		return "", "", ""
	}
	if reason, check, detail := notReleasing(cur); reason != "" {
		return reason, check, detail
	}
	if cur.policy.Text() != st.policy.Text() || cur.cfg.Verifier != st.cfg.Verifier || !sameReleaseRules(st.cfg, cur.cfg) {
		return ReasonUnavailable, "reloaded", "the policy or verifier changed while the request was checked; the caller may retry"
	}
	return "", "", ""
}

// release loads the share, records the decision durably, then sends it.
func (s *Server) release(w http.ResponseWriter, r *http.Request, st *serverState, d decision) decision {
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	sh, err := s.store.LoadShare(ctx)
	if err != nil {
		d.reason, d.check, d.detail = ReasonUnavailable, "store", "the share store is unreachable (a local failure; consent is unchanged): "+err.Error()
		return d
	}
	defer sh.Wipe()
	if sh.GroupID != s.group.ID {
		d.reason, d.check, d.detail = ReasonUnavailable, "store", "the share store now holds a share of another group (a local failure)"
		return d
	}
	file, err := psk.MarshalShare(sh)
	if err != nil {
		d.reason, d.check, d.detail = ReasonUnavailable, "store", "encoding the share failed (a local failure): "+err.Error()
		return d
	}
	defer psk.Wipe(file)
	// Assembled by hand: encoding/json would leave a copy of the share in
	// its pooled buffers. file is JSON already (psk.MarshalShare).
	body := make([]byte, 0, len(file)+32)
	body = append(body, `{"version":`+strconv.Itoa(ProtocolVersion)+`,"share":`...)
	body = append(body, file...)
	body = append(body, "}\n"...)
	defer psk.Wipe(body)

	// From the last look at the state until the share is written, hold the
	// gate: a state change (a revoke, a config that stops loading) waits for
	// this release to finish before it is confirmed, and a release that
	// comes later sees the new state. So once a revoke is confirmed
	// (Reload returned), no share leaves under the old consent.
	if h := s.testHook.Load(); h != nil {
		(*h)("before_gate")
	}
	s.gate.RLock()
	defer s.gate.RUnlock()
	if reason, check, detail := changedSince(st, s.state.Load()); reason != "" {
		d.reason, d.check, d.detail = reason, check, detail
		return d
	}
	if h := s.testHook.Load(); h != nil {
		(*h)("in_gate")
	}
	// The audit line is on disk before the share leaves: no release unrecorded.
	head, err := s.audit.Append(AuditRecord{
		Remote: r.RemoteAddr, Subject: d.subject, ImageDigest: d.digest,
		Decision: DecisionRelease, Reason: ReasonOK, Detail: "released share of participant " + sh.Participant,
	})
	if err != nil {
		s.log.Error("audit log write failed; refusing the release (a local failure, not a consent decision)", "err", err)
		d.reason, d.check, d.detail = ReasonUnavailable, "audit", "audit log write failed (a local failure)"
		return d
	}
	s.metrics.releases.Inc()
	s.log.Info("share released", "remote", r.RemoteAddr, "sub", d.subject, "image_digest", d.digest, "audit_head", head)
	// Bound the write: the gate is held meanwhile.
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

// refuse records and answers a refusal with the public reason only.
// Refusals of verified callers are audited one by one; the others within
// the global audit budget, the rest counted in a summary line.
func (s *Server) refuse(w http.ResponseWriter, remote string, d decision) {
	s.metrics.refusals.WithLabelValues(d.reason, d.check).Inc()
	if d.verified || s.budget.take(d.reason) {
		head, err := s.audit.Append(AuditRecord{
			Remote: remote, Subject: d.subject, ImageDigest: d.digest,
			Decision: DecisionRefuse, Reason: d.reason, Detail: d.check + ": " + d.detail,
		})
		if err != nil {
			s.log.Error("audit log write failed (a local failure)", "err", err)
		}
		msg, level := "share refused", slog.LevelWarn
		if d.reason == ReasonUnavailable {
			// Our own failure, not the caller's and not a consent decision.
			msg, level = "share not released: local failure", slog.LevelError
		}
		s.log.Log(context.Background(), level, msg, "remote", remote, "reason", d.reason, "check", d.check, "detail", clipField(d.detail, 300),
			"sub", d.subject, "image_digest", d.digest, "audit_head", head)
	} else {
		s.metrics.auditSuppressed.WithLabelValues(d.reason).Inc()
	}
	code := refuseStatus[d.reason]
	if code == 0 {
		code = http.StatusForbidden
	}
	writeJSON(w, code, Refusal{Error: "refused", Reason: d.reason})
}
