package kmsfake

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/mcbn/mcbn/attest"
)

// RFC 8693 values Google's STS takes.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
	tokenTypeIDToken   = "urn:ietf:params:oauth:token-type:id_token"
	maxSTSBody         = 128 << 10
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// oauthError answers an RFC 6749 error. Descriptions never echo the token.
func (s *Server) oauthError(w http.ResponseWriter, status int, code, desc string) {
	s.record("STS", "", "", code)
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// serveSTS is POST /v1/token: the RFC 8693 token exchange.
func (s *Server) serveSTS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	forced := s.stsStatus
	s.mu.Unlock()
	if forced != 0 {
		s.oauthError(w, forced, "temporarily_unavailable", "the fake STS was told to fail")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSTSBody)
	if err := r.ParseForm(); err != nil {
		s.oauthError(w, http.StatusBadRequest, "invalid_request", "the request body is not a form")
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != grantTokenExchange:
		s.oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be "+grantTokenExchange)
		return
	case f.Get("requested_token_type") != tokenTypeAccess:
		s.oauthError(w, http.StatusBadRequest, "invalid_request", "requested_token_type must be "+tokenTypeAccess)
		return
	case f.Get("subject_token_type") != tokenTypeJWT && f.Get("subject_token_type") != tokenTypeIDToken:
		s.oauthError(w, http.StatusBadRequest, "invalid_request", "subject_token_type must be a JWT or an ID token for an OIDC provider")
		return
	case f.Get("subject_token") == "":
		s.oauthError(w, http.StatusBadRequest, "invalid_request", "subject_token is missing")
		return
	}
	aud := f.Get("audience")
	s.mu.Lock()
	p := s.providers[aud]
	s.mu.Unlock()
	if p == nil {
		s.oauthError(w, http.StatusBadRequest, "invalid_target", "the audience does not name a workload identity pool provider")
		return
	}
	token := f.Get("subject_token")
	assertion, err := verifyUnbound(r, p, token)
	if err != nil {
		switch attest.Reason(err) {
		case "keys_unavailable", "canceled":
			s.oauthError(w, http.StatusInternalServerError, "server_error", "the issuer's keys could not be fetched")
		case "audience":
			s.oauthError(w, http.StatusBadRequest, "invalid_grant", "The audience in ID Token does not match the expected audience "+p.AllowedAudience+".")
		case "expired", "too_old":
			s.oauthError(w, http.StatusBadRequest, "invalid_grant", "ID Token has expired.")
		case "issuer":
			s.oauthError(w, http.StatusBadRequest, "invalid_grant", "The issuer in ID Token does not match the issuer of the provider.")
		default:
			s.oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid ID Token: "+attest.Reason(err)+".")
		}
		return
	}
	google, attribute := map[string]any{}, map[string]any{}
	attrs := map[string]string{}
	for _, k := range sortedKeys(p.mapping) {
		v, err := p.mapping[k].eval(r.Context(), assertion, map[string]any{}, map[string]any{})
		str, ok := v.(string)
		if err != nil || !ok {
			if k == "google.subject" {
				s.oauthError(w, http.StatusBadRequest, "invalid_request", "The mapped google.subject is not a string.")
				return
			}
			continue // an attribute that does not map is absent, as in WIF
		}
		if name, ok := strings.CutPrefix(k, "attribute."); ok {
			attribute[name], attrs[name] = str, str
		} else {
			google["subject"] = str
		}
	}
	subject, _ := google["subject"].(string)
	if subject == "" || len(subject) > 127 {
		s.oauthError(w, http.StatusBadRequest, "invalid_request", "The mapped google.subject is empty or longer than 127 bytes.")
		return
	}
	if p.condition != nil {
		v, err := p.condition.eval(r.Context(), assertion, google, attribute)
		if b, ok := v.(bool); err != nil || !ok || !b {
			s.oauthError(w, http.StatusBadRequest, "unauthorized_client", "The given credential is rejected by the attribute condition.")
			return
		}
	}
	id := &identity{kind: "federated", pool: p.PoolName(), subject: subject, attributes: attrs}
	tok := s.issue(id)
	s.record("STS", p.Audience(), id.String(), "OK")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":      tok,
		"issued_token_type": tokenTypeAccess,
		"token_type":        "Bearer",
		"expires_in":        int(s.cfg.TokenLifetime / time.Second),
	})
}

// verifyUnbound verifies a subject token the way STS does: signature,
// issuer, audience and times, but no channel binding (WIF has none).
// attest.Verifier insists on a nonce and reports ErrNonce only after every
// other check passed, so ErrNonce with an empty wanted nonce means "valid
// apart from channel binding"; the claims are then read from the verified
// payload. The kmsfake tests pin this behaviour (a bad signature, a wrong
// audience and an expired token are each still refused).
func verifyUnbound(r *http.Request, p *provider, token string) (map[string]any, error) {
	_, err := p.verifier.Verify(r.Context(), token, "")
	if !errors.Is(err, attest.ErrNonce) {
		if err == nil {
			err = errors.New("attest: verifier accepted a token without a nonce")
		}
		return nil, err
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a JWT", attest.ErrMalformed)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload", attest.ErrMalformed)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("%w: payload", attest.ErrMalformed)
	}
	return claims, nil
}

// apiError answers a Google API error.
func apiError(w http.ResponseWriter, status int, grpcStatus, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": status, "message": msg, "status": grpcStatus}})
}

// serveGenerateAccessToken is POST
// /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken.
func (s *Server) serveGenerateAccessToken(w http.ResponseWriter, r *http.Request) {
	email, ok := strings.CutSuffix(r.PathValue("rest"), ":generateAccessToken")
	if !ok || email == "" {
		apiError(w, http.StatusNotFound, "NOT_FOUND", "unknown method")
		return
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	id := s.lookup(bearer)
	if !ok || id == nil {
		s.record("GenerateAccessToken", "serviceAccount:"+email, "", "UNAUTHENTICATED")
		apiError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
		return
	}
	var body struct {
		Scope    []string `json:"scope"`
		Lifetime string   `json:"lifetime"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil || len(body.Scope) == 0 {
		apiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "scope is required")
		return
	}
	resource := "projects/-/serviceAccounts/" + email
	s.mu.Lock()
	ok = s.allowed(id, resource, RoleWorkloadIdentity, RoleTokenCreator)
	s.mu.Unlock()
	if !ok {
		s.record("GenerateAccessToken", resource, id.String(), "PERMISSION_DENIED")
		apiError(w, http.StatusForbidden, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).")
		return
	}
	tok := s.issue(&identity{kind: "serviceAccount", email: email})
	s.record("GenerateAccessToken", resource, id.String(), "OK")
	writeJSON(w, http.StatusOK, map[string]string{
		"accessToken": tok,
		"expireTime":  s.cfg.Now().Add(s.cfg.TokenLifetime).UTC().Format(time.RFC3339),
	})
}
