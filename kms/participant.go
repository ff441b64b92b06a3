package kms

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
)

// Defaults of a KMS participant.
const (
	// DefaultTokenFile is where the Confidential Space launcher keeps the
	// workload's default attestation token (audience
	// https://sts.googleapis.com, refreshed before it expires).
	DefaultTokenFile = "/run/container_launcher/attestation_verifier_claims_token"
	// AttestationAudience is the audience of the token presented to STS,
	// and the allowed audience of the participant's WIF provider.
	AttestationAudience = "https://sts.googleapis.com"
	// DefaultTimeout bounds one Fetch when neither the options nor the
	// context set a deadline.
	DefaultTimeout = 30 * time.Second
	// MaxTimeout bounds Options.Timeout.
	MaxTimeout = 5 * time.Minute
	// maxTokenFile bounds the token file read before the exchange.
	maxTokenFile = attest.MaxTokenSize
)

// Where the attestation token comes from (Options.TokenSource).
const (
	// TokenFromFile reads Options.TokenFile (default DefaultTokenFile), the
	// token the launcher keeps up to date: the documented
	// credential_source.file configuration.
	TokenFromFile = "file"
	// TokenFromLauncher asks the proxy's attestation provider (the
	// launcher's socket, or the dev attester) for a fresh token with
	// audience AttestationAudience on every Fetch.
	TokenFromLauncher = "launcher"
)

var (
	// wifAudienceRE is a workload identity pool provider's STS audience.
	wifAudienceRE = regexp.MustCompile(`^//iam\.googleapis\.com/projects/[0-9]{1,20}/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}$`)
	// serviceAccountRE is a service account email.
	serviceAccountRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}@[a-z0-9][a-z0-9.-]{0,252}$`)
	// kmsEndpointRE is host:port.
	kmsEndpointRE = regexp.MustCompile(`^[A-Za-z0-9.\-\[\]:]{1,255}:[0-9]{1,5}$`)
)

// Options configure a KMS participant: the options: block of a `kind: kms`
// entry of the proxy's shareholders: list (the entry's name: is the
// participant's name in the group).
type Options struct {
	// SealedShare is the sealed-share file (`mcbn psk seal` output). It is
	// not secret. Required.
	SealedShare string `yaml:"sealed_share" json:"sealed_share"`
	// KMSKey is the participant's crypto key,
	// projects/P/locations/L/keyRings/R/cryptoKeys/K. Required; the sealed
	// share must name the same key.
	KMSKey string `yaml:"kms_key" json:"kms_key"`
	// WIFAudience is the participant's workload identity pool provider,
	// //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/providers/PROV.
	// Required.
	WIFAudience string `yaml:"wif_audience" json:"wif_audience"`
	// TokenSource is TokenFromFile (default) or TokenFromLauncher.
	TokenSource string `yaml:"token_source,omitempty" json:"token_source,omitempty"`
	// TokenFile is the attestation token file (default DefaultTokenFile);
	// only with TokenSource file.
	TokenFile string `yaml:"token_file,omitempty" json:"token_file,omitempty"`
	// ServiceAccount, when set, is impersonated with the federated token
	// (the participant granted its pool roles/iam.workloadIdentityUser on
	// it, and the decrypter role to it); empty: the federated identity
	// calls KMS directly.
	ServiceAccount string `yaml:"service_account,omitempty" json:"service_account,omitempty"`
	// STSEndpoint overrides the STS token URL (default DefaultSTSURL); http
	// only to loopback. For tests and the demo.
	STSEndpoint string `yaml:"sts_endpoint,omitempty" json:"sts_endpoint,omitempty"`
	// IAMCredentialsEndpoint overrides the IAM credentials API base URL
	// (default DefaultIAMCredentialsURL). For tests and the demo.
	IAMCredentialsEndpoint string `yaml:"iamcredentials_endpoint,omitempty" json:"iamcredentials_endpoint,omitempty"`
	// KMSEndpoint overrides the KMS gRPC endpoint, host:port (default Cloud
	// KMS). For tests and the demo.
	KMSEndpoint string `yaml:"kms_endpoint,omitempty" json:"kms_endpoint,omitempty"`
	// KMSInsecure speaks plaintext gRPC to a loopback KMSEndpoint (the
	// fake). Never for Cloud KMS.
	KMSInsecure bool `yaml:"kms_insecure,omitempty" json:"kms_insecure,omitempty"`
	// Timeout bounds one Fetch (0: the context's deadline, or
	// DefaultTimeout); at most MaxTimeout.
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Participant is a KMS participant as the proxy sees it. It is immutable
// and safe for concurrent use.
type Participant struct {
	name   string
	opts   Options
	sealed *SealedShare
	aad    []byte
}

// NewParticipant validates o for participant name and loads the sealed
// share. It contacts nothing. Errors wrap ErrLocal (a bad option, a missing
// file) or ErrInvalidShare (a malformed sealed share, or one of another
// participant or key).
func NewParticipant(name string, o Options) (*Participant, error) {
	if !nameRE.MatchString(name) {
		return nil, classed("", ErrLocal, "participant name %s is not a valid name", clip(name, 64))
	}
	bad := func(format string, a ...any) error { return classed(name, ErrLocal, format, a...) }
	if o.SealedShare == "" {
		return nil, bad("sealed_share is required")
	}
	if !ValidKMSKey(o.KMSKey) {
		return nil, bad("kms_key %s is not projects/P/locations/L/keyRings/R/cryptoKeys/K", clip(o.KMSKey, 200))
	}
	if !wifAudienceRE.MatchString(o.WIFAudience) {
		return nil, bad("wif_audience %s is not //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER", clip(o.WIFAudience, 200))
	}
	switch o.TokenSource {
	case "":
		o.TokenSource = TokenFromFile
	case TokenFromFile, TokenFromLauncher:
	default:
		return nil, bad("token_source %s is not %q or %q", clip(o.TokenSource, 40), TokenFromFile, TokenFromLauncher)
	}
	if o.TokenSource == TokenFromFile && o.TokenFile == "" {
		o.TokenFile = DefaultTokenFile
	}
	if o.TokenSource == TokenFromLauncher && o.TokenFile != "" {
		return nil, bad("token_file is for token_source %q only", TokenFromFile)
	}
	if o.ServiceAccount != "" && !serviceAccountRE.MatchString(o.ServiceAccount) {
		return nil, bad("service_account %s is not a service account email", clip(o.ServiceAccount, 100))
	}
	if o.STSEndpoint == "" {
		o.STSEndpoint = DefaultSTSURL
	}
	if err := checkHTTPSURL(o.STSEndpoint); err != nil {
		return nil, bad("sts_endpoint: %v", err)
	}
	if o.IAMCredentialsEndpoint == "" {
		o.IAMCredentialsEndpoint = DefaultIAMCredentialsURL
	}
	o.IAMCredentialsEndpoint = strings.TrimSuffix(o.IAMCredentialsEndpoint, "/")
	if err := checkHTTPSURL(o.IAMCredentialsEndpoint); err != nil {
		return nil, bad("iamcredentials_endpoint: %v", err)
	}
	if o.KMSEndpoint != "" && !kmsEndpointRE.MatchString(o.KMSEndpoint) {
		return nil, bad("kms_endpoint %s is not host:port", clip(o.KMSEndpoint, 100))
	}
	if o.KMSInsecure {
		if o.KMSEndpoint == "" {
			return nil, bad("kms_insecure needs a loopback kms_endpoint")
		}
		if err := checkInsecureEndpoint(o.KMSEndpoint); err != nil {
			return nil, bad("kms_endpoint: %v", err)
		}
	}
	if o.Timeout < 0 || o.Timeout > MaxTimeout {
		return nil, bad("timeout %v outside 0..%v", o.Timeout, MaxTimeout)
	}
	sealed, err := LoadSealed(o.SealedShare)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil, bad("sealed_share: %v", err)
		}
		return nil, classed(name, ErrInvalidShare, "sealed_share %v", err)
	}
	// The configuration (part of the reviewed image) names the key; a
	// sealed share naming another one is refused rather than followed, so
	// whoever supplies the sealed file cannot pick which key is asked.
	if sealed.KMSKey != o.KMSKey {
		return nil, classed(name, ErrInvalidShare, "sealed_share %s was sealed with %s, not kms_key %s", o.SealedShare, sealed.KMSKey, o.KMSKey)
	}
	if sealed.Participant != name {
		return nil, classed(name, ErrInvalidShare, "sealed_share %s is participant %q's, not %q's", o.SealedShare, sealed.Participant, name)
	}
	aad, err := AAD(sealed.GroupID, sealed.Index, sealed.Participant)
	if err != nil {
		return nil, classed(name, ErrInvalidShare, "sealed_share %s: %v", o.SealedShare, err)
	}
	return &Participant{name: name, opts: o, sealed: sealed, aad: aad}, nil
}

// Name returns the participant's name.
func (p *Participant) Name() string { return p.name }

// Options returns the options with defaults filled in.
func (p *Participant) Options() Options { return p.opts }

// Sealed returns the loaded sealed share (public).
func (p *Participant) Sealed() *SealedShare {
	s := *p.sealed
	s.ct = p.sealed.CiphertextBytes()
	return &s
}

// CheckGroup reports whether the sealed share is this participant's share
// of group g: a Shamir group listing the participant at the sealed index.
// The error wraps ErrInvalidShare (or ErrLocal for an unusable group). Fetch
// checks the same; a caller can check at configuration time.
func (p *Participant) CheckGroup(g *psk.Group) error {
	if g == nil {
		return classed(p.name, ErrLocal, "no group descriptor")
	}
	if g.Scheme != psk.SchemeShamir {
		return classed(p.name, ErrLocal, "group %q is %s; KMS participants hold Shamir shares", g.Name, g.Scheme)
	}
	gp := g.ParticipantByName(p.name)
	if gp == nil {
		return classed(p.name, ErrLocal, "group %q has no participant %q", g.Name, p.name)
	}
	s := p.sealed
	if s.GroupID != g.ID {
		return classed(p.name, ErrInvalidShare, "sealed share is for group %s, not %q (%s)", short(s.GroupID), g.Name, short(g.ID))
	}
	if s.Index != gp.Index {
		return classed(p.name, ErrInvalidShare, "sealed share has index %d, the group gives %q index %d", s.Index, p.name, gp.Index)
	}
	return nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Fetch gets this participant's share for group: it exchanges the
// attestation token at STS for a federated token (impersonating
// Options.ServiceAccount when set), has KMS decrypt the sealed share with
// the additional authenticated data bound to (group, index, participant),
// and parses the result, checking it is this participant's share of this
// group. It does NOT check the share against the Feldman commitments (the
// gatherer does; see VerifyShare). tokens is the proxy's attestation
// provider, needed only with token_source launcher (may be nil otherwise).
//
// The whole call is bounded by Options.Timeout and ctx's deadline. Errors
// wrap one of the class sentinels (see Reason), name the participant and
// never contain a token or the share. The caller owns the share and must
// Wipe it.
func (p *Participant) Fetch(ctx context.Context, tokens attest.TokenProvider, group *psk.Group) (*psk.Share, error) {
	if err := p.CheckGroup(group); err != nil {
		return nil, err
	}
	ctx, cancel, timeout := p.bound(ctx)
	defer cancel()

	subject, err := p.subjectToken(ctx, tokens)
	if err != nil {
		return nil, err
	}
	xc := exchangeConfig{
		name: p.name, audience: p.opts.WIFAudience, stsURL: p.opts.STSEndpoint,
		iamURLBase: p.opts.IAMCredentialsEndpoint, serviceAccount: p.opts.ServiceAccount,
		timeout: timeout,
	}
	if p.opts.TokenSource == TokenFromFile {
		xc.tokenFile = p.opts.TokenFile
	} else {
		xc.subjectToken = subject
	}
	tok, err := exchange(ctx, xc, subject)
	subject = ""
	if err != nil {
		return nil, err
	}
	c, err := newClient(ctx, ClientOptions{
		Endpoint: p.opts.KMSEndpoint, Insecure: p.opts.KMSInsecure,
		TokenSource: oauth2.StaticTokenSource(tok),
	})
	if err != nil {
		return nil, classed(p.name, ErrLocal, "%v", err)
	}
	defer c.Close()
	plaintext, err := c.decrypt(ctx, p.opts.KMSKey, p.sealed.ct, p.aad)
	if err != nil {
		return nil, classifyKMS(ctx, p.name, "Decrypt with", p.opts.KMSKey, err, timeout, tok.AccessToken)
	}
	share, err := psk.ParseShare(plaintext)
	psk.Wipe(plaintext)
	if err != nil {
		return nil, classed(p.name, ErrInvalidShare, "KMS decrypted something that is not a share file: %v", err)
	}
	if err := p.bindShare(group, share); err != nil {
		share.Wipe()
		return nil, err
	}
	return share, nil
}

// Check is a dry run of Fetch for `mcbn proxy check`: it reports whether
// the participant would release its share now, and wipes the share.
func (p *Participant) Check(ctx context.Context, tokens attest.TokenProvider, group *psk.Group) error {
	s, err := p.Fetch(ctx, tokens, group)
	s.Wipe()
	return err
}

// bindShare checks that a decrypted share is this participant's share of
// group: a participant that sealed another participant's (or another
// group's) share under its own key and AAD is caught here.
func (p *Participant) bindShare(group *psk.Group, s *psk.Share) error {
	if s.GroupID != group.ID || s.Participant != p.name || s.Index != p.sealed.Index {
		return classed(p.name, ErrInvalidShare, "KMS returned the share of participant %q (index %d) of group %s, not %q's (index %d) of %s",
			s.Participant, s.Index, short(s.GroupID), p.name, p.sealed.Index, short(group.ID))
	}
	return nil
}

// VerifyShare runs the binding checks of Fetch and the Feldman check of
// psk.VerifyShare on s, for callers that do not verify shares themselves.
// The error wraps ErrInvalidShare.
func (p *Participant) VerifyShare(group *psk.Group, s *psk.Share) error {
	if err := p.CheckGroup(group); err != nil {
		return err
	}
	if err := p.bindShare(group, s); err != nil {
		return err
	}
	if err := psk.VerifyShare(group, s); err != nil {
		return classed(p.name, ErrInvalidShare, "%v", err)
	}
	return nil
}

// bound applies Options.Timeout, or DefaultTimeout when ctx has no
// deadline, and describes the bound for messages.
func (p *Participant) bound(ctx context.Context) (context.Context, context.CancelFunc, string) {
	switch {
	case p.opts.Timeout > 0:
		ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
		return ctx, cancel, describeBound(ctx)
	default:
		if _, ok := ctx.Deadline(); !ok {
			ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
			return ctx, cancel, DefaultTimeout.String()
		}
		ctx, cancel := context.WithCancel(ctx)
		return ctx, cancel, describeBound(ctx)
	}
}

func describeBound(ctx context.Context) string {
	d, _ := ctx.Deadline()
	return "the round's deadline (" + time.Until(d).Round(time.Millisecond).String() + " left at the start)"
}

// subjectToken gets the attestation token, from the file or the provider,
// checking it is there and looks like a JWT, so that a missing file is a
// local error naming the file and not an STS refusal. The token is returned
// for redaction and (launcher) for the exchange; it is never printed.
func (p *Participant) subjectToken(ctx context.Context, tokens attest.TokenProvider) (string, error) {
	if p.opts.TokenSource == TokenFromLauncher {
		if tokens == nil {
			return "", classed(p.name, ErrLocal, "token_source launcher but this proxy has no attestation provider")
		}
		t, err := tokens.Token(ctx, AttestationAudience, nil)
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return "", classed(p.name, context.Canceled, "attestation token: canceled")
			}
			return "", classed(p.name, ErrLocal, "attestation token from the launcher: %s", clip(err.Error(), 200))
		}
		if !jwtShaped(t) {
			return "", classed(p.name, ErrLocal, "the attestation provider returned something that is not a JWT")
		}
		return t, nil
	}
	path := p.opts.TokenFile
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", classed(p.name, ErrLocal, "token file %s does not exist (not running in Confidential Space, or the launcher has not written it yet)", path)
		}
		return "", classed(p.name, ErrLocal, "token file %s: %v", path, unwrapPathError(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", classed(p.name, ErrLocal, "token file %s: %v", path, unwrapPathError(err))
	}
	if len(b) > maxTokenFile {
		return "", classed(p.name, ErrLocal, "token file %s is larger than %d bytes", path, maxTokenFile)
	}
	t := strings.TrimSpace(string(b))
	clear(b)
	if !jwtShaped(t) {
		return "", classed(p.name, ErrLocal, "token file %s does not hold a JWT", path)
	}
	return t, nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// jwtShaped: three non-empty base64url segments.
func jwtShaped(t string) bool {
	parts := strings.Split(t, ".")
	if len(parts) != 3 {
		return false
	}
	for _, s := range parts {
		if s == "" {
			return false
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// String names the participant and its key, never a secret.
func (p *Participant) String() string {
	return fmt.Sprintf("kms participant %q (key %s, provider %s)", p.name, p.opts.KMSKey, p.opts.WIFAudience)
}
