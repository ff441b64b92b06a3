package shareholder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

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
}

// handleRelease implements POST /v1/release (docs/share-release.md).
func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	remote := r.RemoteAddr
	ip, _, err := net.SplitHostPort(remote)
	if err != nil {
		ip = remote
	}
	if !s.limiter.allow(ip) {
		// Counted, not audited: a flood must not fill the disk with fsyncs.
		s.metrics.refusals.WithLabelValues(ReasonRateLimited, ReasonRateLimited).Inc()
		writeJSON(w, http.StatusTooManyRequests, Refusal{Error: "refused", Reason: ReasonRateLimited})
		return
	}
	st := s.state.Load()
	d := s.decide(w, r, st, ip)
	if d.reason != ReasonOK {
		s.refuse(w, remote, d)
	}
}

// decide runs every check in order and, when all pass, writes the share.
// It returns the decision for a refusal (reason != ok) or an ok decision
// after the release was written.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, st *serverState, ip string) decision {
	if r.Method != http.MethodPost {
		return decision{reason: ReasonBadRequest, check: "method", detail: "method " + clipField(r.Method, 16) + ", want POST"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, st.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decision{reason: ReasonTooLarge, check: "body_size", detail: fmt.Sprintf("body larger than %d bytes", mbe.Limit)}
		}
		return decision{reason: ReasonBadRequest, check: "body_read", detail: "reading body: " + err.Error()}
	}
	req, err := ParseReleaseRequest(body)
	clear(body)
	if err != nil {
		return decision{reason: ReasonBadRequest, check: "json", detail: err.Error()}
	}
	if req.GroupID != "" && req.GroupID != s.group.ID {
		return decision{reason: ReasonBadRequest, check: "group", detail: "request names group " + req.GroupID[:12] + ", this share is of " + s.group.ID[:12]}
	}
	nonce, err := ChannelNonce(r.TLS)
	if err != nil {
		return decision{reason: ReasonBadRequest, check: "channel", detail: err.Error()}
	}
	claims, err := st.verifier.Verify(r.Context(), req.Token, nonce)
	req.Token = ""
	if err != nil {
		code := attest.Reason(err)
		if code == "keys_unavailable" || code == "canceled" {
			return decision{reason: ReasonUnavailable, check: "token_" + code, detail: err.Error()}
		}
		return decision{reason: ReasonTokenInvalid, check: "token_" + code, detail: err.Error()}
	}
	d := decision{subject: claims.Subject(), digest: claims.ImageDigest()}
	ok, err := st.policy.Eval(r.Context(), claims.Raw, RequestInfo{Time: s.now(), RemoteAddr: r.RemoteAddr, RemoteIP: ip})
	switch {
	case err != nil:
		d.reason, d.check, d.detail = ReasonPolicyDenied, "policy_error", "policy "+policyDigest(st.policy.Text())+": "+err.Error()
		return d
	case !ok:
		d.reason, d.check, d.detail = ReasonPolicyDenied, "policy_false", "policy "+policyDigest(st.policy.Text())+" is false for "+claims.String()
		return d
	}
	if st.cfg.Consent != ConsentGranted {
		d.reason, d.check, d.detail = ReasonConsentRevoked, "consent", "consent is "+st.cfg.Consent
		return d
	}
	return s.release(w, r, d)
}

// release loads the share, records the decision durably, then sends it.
func (s *Server) release(w http.ResponseWriter, r *http.Request, d decision) decision {
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	sh, err := s.store.LoadShare(ctx)
	if err != nil {
		d.reason, d.check, d.detail = ReasonUnavailable, "store", err.Error()
		return d
	}
	defer sh.Wipe()
	if sh.GroupID != s.group.ID {
		d.reason, d.check, d.detail = ReasonUnavailable, "store", "the store now holds a share of another group"
		return d
	}
	file, err := psk.MarshalShare(sh)
	if err != nil {
		d.reason, d.check, d.detail = ReasonUnavailable, "store", err.Error()
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
	// The audit line is on disk before the share leaves: no release unrecorded.
	head, err := s.audit.Append(AuditRecord{
		Remote: r.RemoteAddr, Subject: d.subject, ImageDigest: d.digest,
		Decision: DecisionRelease, Reason: ReasonOK, Detail: "released share of participant " + sh.Participant,
	})
	if err != nil {
		s.log.Error("audit log write failed; refusing the release", "err", err)
		d.reason, d.check, d.detail = ReasonUnavailable, "audit", "audit log write failed"
		return d
	}
	s.metrics.releases.Inc()
	s.log.Info("share released", "remote", r.RemoteAddr, "sub", d.subject, "image_digest", d.digest, "audit_head", head)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	return decision{reason: ReasonOK}
}

// refuse records and answers a refusal with the public reason only.
func (s *Server) refuse(w http.ResponseWriter, remote string, d decision) {
	s.metrics.refusals.WithLabelValues(d.reason, d.check).Inc()
	head, err := s.audit.Append(AuditRecord{
		Remote: remote, Subject: d.subject, ImageDigest: d.digest,
		Decision: DecisionRefuse, Reason: d.reason, Detail: d.check + ": " + d.detail,
	})
	if err != nil {
		s.log.Error("audit log write failed", "err", err)
	}
	s.log.Warn("share refused", "remote", remote, "reason", d.reason, "check", d.check, "detail", clipField(d.detail, 300),
		"sub", d.subject, "image_digest", d.digest, "audit_head", head)
	code := refuseStatus[d.reason]
	if code == 0 {
		code = http.StatusForbidden
	}
	writeJSON(w, code, Refusal{Error: "refused", Reason: d.reason})
}
