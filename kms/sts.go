package kms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google/externalaccount"
)

// Google endpoints and token types of the exchange.
const (
	// DefaultSTSURL is Google's Security Token Service token endpoint.
	DefaultSTSURL = "https://sts.googleapis.com/v1/token"
	// DefaultIAMCredentialsURL is the base of the IAM Service Account
	// Credentials API, used to impersonate a service account.
	DefaultIAMCredentialsURL = "https://iamcredentials.googleapis.com"
	// SubjectTokenTypeJWT is the RFC 8693 type of an OIDC JWT subject token.
	SubjectTokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
	// CloudPlatformScope is the OAuth scope the federated token is asked for.
	CloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"
	// maxErrorBody bounds how much of an STS or IAM error body is read.
	maxErrorBody = 64 << 10
)

// checkHTTPSURL allows https, or http to a loopback host (the fakes).
func checkHTTPSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%s is not an absolute URL", clip(raw, 200))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%s: http is allowed only to a loopback host (the attestation token would cross the network in clear)", clip(raw, 200))
	}
	return fmt.Errorf("%s: scheme must be https", clip(raw, 200))
}

// stage names the service an HTTP exchange went to.
type stage string

const (
	stageSTS stage = "STS"
	stageIAM stage = "IAM credentials"
)

// exchangeResult is what the recorder saw of the last HTTP exchange.
type exchangeResult struct {
	stage  stage
	err    error // transport error
	status int
	code   string // "error" of an OAuth error, "status" of a Google API error
	desc   string // error_description, or the Google API error message
}

// recorder wraps the transport the oauth2 libraries use, so that a failed
// exchange is classified from what happened on the wire (which service,
// which status, which OAuth error) rather than from the libraries' error
// strings, which are not a stable interface and may embed response bodies.
type recorder struct {
	base       http.RoundTripper
	iamURLBase string

	mu   sync.Mutex
	last *exchangeResult
}

func (r *recorder) stageOf(u *url.URL) stage {
	if strings.HasPrefix(u.String(), r.iamURLBase) && r.iamURLBase != "" {
		return stageIAM
	}
	return stageSTS
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	res := &exchangeResult{stage: r.stageOf(req.URL)}
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		res.err = err
		r.set(res)
		return nil, err
	}
	res.status = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		res.code, res.desc = parseErrorBody(body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.set(res)
	return resp, nil
}

func (r *recorder) set(res *exchangeResult) {
	r.mu.Lock()
	r.last = res
	r.mu.Unlock()
}

func (r *recorder) result() *exchangeResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// parseErrorBody reads an OAuth 2.0 error ({"error": "...",
// "error_description": "..."}, what STS answers) or a Google API error
// ({"error": {"code": N, "message": "...", "status": "..."}}).
func parseErrorBody(body []byte) (code, desc string) {
	var oauthErr struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &oauthErr) == nil && oauthErr.Error != "" {
		return oauthErr.Error, oauthErr.Description
	}
	var apiErr struct {
		Error struct {
			Message string `json:"message"`
			Status  string `json:"status"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &apiErr) == nil && (apiErr.Error.Status != "" || apiErr.Error.Message != "") {
		return apiErr.Error.Status, apiErr.Error.Message
	}
	return "", ""
}

// exchangeConfig is one token exchange.
type exchangeConfig struct {
	name           string // participant, for errors
	audience       string // the WIF provider
	stsURL         string
	iamURLBase     string
	serviceAccount string
	tokenFile      string // credential_source.file, or
	subjectToken   string // a token from the launcher
	timeout        string // for messages
}

type tokenSupplier string

func (t tokenSupplier) SubjectToken(context.Context, externalaccount.SupplierOptions) (string, error) {
	return string(t), nil
}

// exchange trades the attestation token for a Google access token (a
// federated token, or a service account's when one is impersonated) with
// golang.org/x/oauth2/google/externalaccount. secret is the subject token,
// redacted from any message.
func exchange(ctx context.Context, c exchangeConfig, secret string) (*oauth2.Token, error) {
	rec := &recorder{base: http.DefaultTransport.(*http.Transport).Clone()}
	conf := externalaccount.Config{
		Audience:         c.audience,
		SubjectTokenType: SubjectTokenTypeJWT,
		TokenURL:         c.stsURL,
		Scopes:           []string{CloudPlatformScope},
	}
	if c.tokenFile != "" {
		// The credential configuration Google documents for Confidential
		// Space: credential_source.file is the launcher's token file.
		conf.CredentialSource = &externalaccount.CredentialSource{
			File: c.tokenFile, Format: externalaccount.Format{Type: "text"},
		}
	} else {
		conf.SubjectTokenSupplier = tokenSupplier(c.subjectToken)
	}
	if c.serviceAccount != "" {
		rec.iamURLBase = c.iamURLBase
		conf.ServiceAccountImpersonationURL = c.iamURLBase + "/v1/projects/-/serviceAccounts/" + url.PathEscape(c.serviceAccount) + ":generateAccessToken"
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: rec})
	ts, err := externalaccount.NewTokenSource(hctx, conf)
	if err != nil {
		return nil, classed(c.name, ErrLocal, "external account configuration: %s", clip(redact(err.Error(), secret), 200))
	}
	tok, err := ts.Token()
	if err == nil {
		if tok.AccessToken == "" {
			return nil, classed(c.name, ErrUnreachable, "%s returned an empty access token", stageSTS)
		}
		return tok, nil
	}
	return nil, classifyExchange(ctx, c, rec.result(), err, secret)
}

func classifyExchange(ctx context.Context, c exchangeConfig, res *exchangeResult, err error, secret string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return classed(c.name, context.Canceled, "token exchange canceled")
	}
	if res == nil {
		// No request was sent: the library could not read the subject
		// token (its message names the file).
		return classed(c.name, ErrLocal, "reading the attestation token: %s", clip(redact(err.Error(), secret), 200))
	}
	where := string(res.stage)
	if res.stage == stageSTS {
		where += " " + c.stsURL
	} else {
		where += " (impersonating " + c.serviceAccount + ")"
	}
	if res.err != nil {
		if ctx.Err() != nil || errors.Is(res.err, context.DeadlineExceeded) {
			return classed(c.name, ErrUnreachable, "%s: no answer within %s", where, c.timeout)
		}
		return classed(c.name, ErrUnreachable, "%s: %s", where, clip(redact(unwrapURLError(res.err).Error(), secret), 200))
	}
	detail := fmt.Sprintf("HTTP %d", res.status)
	if res.code != "" {
		detail += " " + clip(redact(res.code, secret), 60)
	}
	if res.desc != "" {
		detail += ": " + clip(redact(res.desc, secret), 300)
	}
	switch {
	case res.status >= 200 && res.status <= 299:
		// The exchange answered but the answer was unusable (no expiry,
		// not JSON): a malfunction of the service.
		return classed(c.name, ErrUnreachable, "%s answered unusably: %s", where, clip(redact(err.Error(), secret), 200))
	case res.status >= 400 && res.status <= 499 && res.status != http.StatusTooManyRequests:
		if res.stage == stageIAM {
			return classed(c.name, ErrPermissionDenied, "%s refused: %s", where, detail)
		}
		return classed(c.name, ErrSTSRejected, "%s: %s", where, detail)
	}
	return classed(c.name, ErrUnreachable, "%s: %s", where, detail)
}

// unwrapURLError drops net/http's "Post \"URL\": " prefix.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
