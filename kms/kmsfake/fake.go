// Package kmsfake runs local stand-ins for Google's Security Token Service
// (with Workload Identity Federation providers), the IAM credentials API
// and Cloud KMS, which the real client libraries
// (golang.org/x/oauth2/google/externalaccount, cloud.google.com/go/kms)
// talk to. It is for tests and the demo; nothing here is secure storage.
//
// What it enforces, the way the real services do:
//
//   - STS (HTTP, RFC 8693 as Google's STS takes it) verifies the subject
//     token with attest.Verifier against the provider's issuer and allowed
//     audience (signature, iss, aud, exp, nbf, iat), evaluates the
//     provider's attribute mapping and CEL attribute condition over the
//     token's claims, and issues a federated access token for
//     principal://…/subject/SUB with the mapped attributes.
//   - The IAM credentials API lets a federated principal impersonate a
//     service account only with roles/iam.workloadIdentityUser on it.
//   - KMS (gRPC, KeyManagementService Encrypt, Decrypt and
//     GetCryptoKeyVersion) accepts only access tokens this fake issued,
//     checks IAM bindings on the key (principalSet, principal,
//     serviceAccount and user members), seals with AES-256-GCM per key
//     version over the caller's additional authenticated data, verifies
//     CRC32C checksums, and refuses a disabled or destroyed key version
//     with FAILED_PRECONDITION.
//
// Every KMS and impersonation decision is kept in an audit list, the
// fake's Cloud Audit Logs.
package kmsfake

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sort"
	"sync"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"

	"github.com/mcbn/mcbn/attest"
)

// IAM roles the fake knows.
const (
	RoleDecrypter          = "roles/cloudkms.cryptoKeyDecrypter"
	RoleEncrypter          = "roles/cloudkms.cryptoKeyEncrypter"
	RoleEncrypterDecrypter = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
	RoleWorkloadIdentity   = "roles/iam.workloadIdentityUser"
	RoleTokenCreator       = "roles/iam.serviceAccountTokenCreator"
)

// Config configures the fake.
type Config struct {
	// Now is the clock (nil: time.Now). Token verification uses it too.
	Now func() time.Time
	// TokenLifetime of issued access tokens (default one hour, as STS).
	TokenLifetime time.Duration
	// Logger (nil: slog.Default()). Never logs a token.
	Logger *slog.Logger
}

// Provider is a workload identity pool provider of the OIDC kind.
type Provider struct {
	// ProjectNumber, Pool and ID name it:
	// projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/ID.
	ProjectNumber string
	Pool          string
	ID            string
	// Issuer is the OIDC issuer trusted (the dev attester's in tests).
	Issuer string
	// AllowedAudience is the audience the token must carry (default
	// https://sts.googleapis.com, what Confidential Space tokens carry).
	AllowedAudience string
	// AttributeMapping maps "google.subject" and "attribute.NAME" to CEL
	// expressions over assertion (default google.subject=assertion.sub).
	AttributeMapping map[string]string
	// Condition is the CEL attribute condition ("" = none).
	Condition string
	// HTTPClient fetches the issuer's discovery and JWKS (nil: default).
	HTTPClient *http.Client
}

var (
	projectNumberRE = regexp.MustCompile(`^[0-9]{1,20}$`)
	poolIDRE        = regexp.MustCompile(`^[a-z0-9-]{4,32}$`)
	mappingKeyRE    = regexp.MustCompile(`^(google\.subject|attribute\.[a-z_][a-z0-9_]{0,99})$`)
)

// PoolName is projects/N/locations/global/workloadIdentityPools/POOL.
func (p Provider) PoolName() string {
	return "projects/" + p.ProjectNumber + "/locations/global/workloadIdentityPools/" + p.Pool
}

// Audience is the provider's STS audience:
// //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/providers/ID.
func (p Provider) Audience() string {
	return "//iam.googleapis.com/" + p.PoolName() + "/providers/" + p.ID
}

// PrincipalSet is the member naming every identity of the pool.
func (p Provider) PrincipalSet() string {
	return "principalSet://iam.googleapis.com/" + p.PoolName() + "/*"
}

// provider is a compiled Provider.
type provider struct {
	Provider
	verifier  *attest.Verifier
	mapping   map[string]*celProgram
	condition *celProgram
}

// identity is who an access token stands for.
type identity struct {
	// kind: "federated", "serviceAccount" or "user".
	kind       string
	pool       string // federated: the pool name
	subject    string // federated: google.subject
	attributes map[string]string
	email      string // serviceAccount, user
	expiry     time.Time
}

func (id *identity) String() string {
	switch id.kind {
	case "federated":
		return "principal://iam.googleapis.com/" + id.pool + "/subject/" + id.subject
	case "serviceAccount":
		return "serviceAccount:" + id.email
	}
	return "user:" + id.email
}

// matches reports whether member names id.
func (id *identity) matches(member string) bool {
	switch id.kind {
	case "serviceAccount":
		return member == "serviceAccount:"+id.email
	case "user":
		return member == "user:"+id.email
	}
	prefix := "principalSet://iam.googleapis.com/" + id.pool + "/"
	switch {
	case member == prefix+"*":
		return true
	case member == "principal://iam.googleapis.com/"+id.pool+"/subject/"+id.subject:
		return true
	case len(member) > len(prefix) && member[:len(prefix)] == prefix:
		rest := member[len(prefix):]
		const attr = "attribute."
		if len(rest) > len(attr) && rest[:len(attr)] == attr {
			for k, v := range id.attributes {
				if rest == attr+k+"/"+v {
					return true
				}
			}
		}
	}
	return false
}

// AuditEntry is one decision of the fake KMS or IAM credentials API.
type AuditEntry struct {
	Time      time.Time
	Method    string // "Encrypt", "Decrypt", "GenerateAccessToken", "STS"
	Resource  string
	Principal string
	// Code is "OK" or the refusal's gRPC code / OAuth error.
	Code string
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	stsLn, kmsLn net.Listener
	httpSrv      *http.Server
	grpcSrv      *grpc.Server

	mu        sync.Mutex
	providers map[string]*provider // by audience
	tokens    map[string]*identity // access token -> identity
	keys      map[string]*cryptoKey
	iam       map[string]map[string]map[string]bool // resource -> role -> member
	audit     []AuditEntry
	kmsDelay  time.Duration
	stsStatus int // non-zero: STS answers this status to everything

	closeOnce sync.Once
}

// Start starts STS and IAM credentials (one HTTP server) and KMS (gRPC) on
// loopback ports.
func Start(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger,
		providers: map[string]*provider{}, tokens: map[string]*identity{},
		keys: map[string]*cryptoKey{}, iam: map[string]map[string]map[string]bool{},
	}
	var err error
	if s.stsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("kmsfake: %v", err)
	}
	if s.kmsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		s.stsLn.Close()
		return nil, fmt.Errorf("kmsfake: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/token", s.serveSTS)
	mux.HandleFunc("POST /v1/projects/-/serviceAccounts/{rest}", s.serveGenerateAccessToken)
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.grpcSrv = grpc.NewServer()
	kmspb.RegisterKeyManagementServiceServer(s.grpcSrv, &kmsService{s: s})
	go s.httpSrv.Serve(s.stsLn)
	go s.grpcSrv.Serve(s.kmsLn)
	s.log.Info("kms fake started", "sts", s.STSURL(), "kms", s.KMSEndpoint())
	return s, nil
}

// Close stops both servers.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.httpSrv.Shutdown(ctx)
		s.grpcSrv.Stop()
	})
	return nil
}

// STSURL is the token endpoint (kms.Options.STSEndpoint).
func (s *Server) STSURL() string { return "http://" + s.stsLn.Addr().String() + "/v1/token" }

// IAMCredentialsURL is the IAM credentials API base
// (kms.Options.IAMCredentialsEndpoint).
func (s *Server) IAMCredentialsURL() string { return "http://" + s.stsLn.Addr().String() }

// KMSEndpoint is the plaintext gRPC endpoint (kms.Options.KMSEndpoint with
// KMSInsecure).
func (s *Server) KMSEndpoint() string { return s.kmsLn.Addr().String() }

// AddProvider creates a provider and returns its STS audience.
func (s *Server) AddProvider(p Provider) (string, error) {
	if !projectNumberRE.MatchString(p.ProjectNumber) || !poolIDRE.MatchString(p.Pool) || !poolIDRE.MatchString(p.ID) {
		return "", errors.New("kmsfake: provider needs a project number and 4-32 character pool and provider ids")
	}
	if p.AllowedAudience == "" {
		p.AllowedAudience = "https://sts.googleapis.com"
	}
	if len(p.AttributeMapping) == 0 {
		p.AttributeMapping = map[string]string{"google.subject": "assertion.sub"}
	}
	if _, ok := p.AttributeMapping["google.subject"]; !ok {
		return "", errors.New("kmsfake: the attribute mapping must map google.subject")
	}
	v, err := attest.NewVerifier(attest.VerifierConfig{
		Issuer: p.Issuer, Audience: p.AllowedAudience, HTTPClient: p.HTTPClient,
		Now: s.cfg.Now, Logger: s.log,
	})
	if err != nil {
		return "", fmt.Errorf("kmsfake: %v", err)
	}
	cp := &provider{Provider: p, verifier: v, mapping: map[string]*celProgram{}}
	for k, expr := range p.AttributeMapping {
		if !mappingKeyRE.MatchString(k) {
			return "", fmt.Errorf("kmsfake: attribute mapping key %q", k)
		}
		prg, err := compileCEL(expr)
		if err != nil {
			return "", fmt.Errorf("kmsfake: attribute mapping %s: %v", k, err)
		}
		cp.mapping[k] = prg
	}
	if p.Condition != "" {
		if cp.condition, err = compileCEL(p.Condition); err != nil {
			return "", fmt.Errorf("kmsfake: attribute condition: %v", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.providers[p.Audience()] = cp
	return p.Audience(), nil
}

// SetCondition replaces the attribute condition of the provider with STS
// audience aud ("" removes it).
func (s *Server) SetCondition(aud, condition string) error {
	var prg *celProgram
	if condition != "" {
		var err error
		if prg, err = compileCEL(condition); err != nil {
			return fmt.Errorf("kmsfake: attribute condition: %v", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.providers[aud]
	if !ok {
		return fmt.Errorf("kmsfake: no provider %s", aud)
	}
	np := *p
	np.Condition, np.condition = condition, prg
	s.providers[aud] = &np
	return nil
}

// Grant adds an IAM binding of role to member on resource (a crypto key
// name, or projects/-/serviceAccounts/EMAIL).
func (s *Server) Grant(resource, role, member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	roles := s.iam[resource]
	if roles == nil {
		roles = map[string]map[string]bool{}
		s.iam[resource] = roles
	}
	if roles[role] == nil {
		roles[role] = map[string]bool{}
	}
	roles[role][member] = true
}

// Revoke removes an IAM binding.
func (s *Server) Revoke(resource, role, member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.iam[resource][role], member)
}

// allowed reports whether id holds one of roles on resource. Callers hold mu.
func (s *Server) allowed(id *identity, resource string, roles ...string) bool {
	for _, role := range roles {
		for member := range s.iam[resource][role] {
			if id.matches(member) {
				return true
			}
		}
	}
	return false
}

// UserToken issues an access token for user:email (e.g. the participant
// who seals its share), valid for the token lifetime.
func (s *Server) UserToken(email string) string {
	return s.issue(&identity{kind: "user", email: email})
}

// issue stores a fresh random access token for id.
func (s *Server) issue(id *identity) string {
	b := make([]byte, 32)
	rand.Read(b)
	tok := "ya29.fake-" + base64.RawURLEncoding.EncodeToString(b)
	id.expiry = s.cfg.Now().Add(s.cfg.TokenLifetime)
	s.mu.Lock()
	s.tokens[tok] = id
	s.mu.Unlock()
	return tok
}

// lookup returns the identity of a live access token, or nil.
func (s *Server) lookup(tok string) *identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.tokens[tok]
	if id == nil || !s.cfg.Now().Before(id.expiry) {
		return nil
	}
	return id
}

// SetKMSDelay makes every KMS call wait d (or until its deadline) first.
func (s *Server) SetKMSDelay(d time.Duration) {
	s.mu.Lock()
	s.kmsDelay = d
	s.mu.Unlock()
}

// SetSTSStatus makes STS answer every request with status (e.g. 503); 0
// restores normal service.
func (s *Server) SetSTSStatus(status int) {
	s.mu.Lock()
	s.stsStatus = status
	s.mu.Unlock()
}

func (s *Server) record(method, resource, principal, code string) {
	s.mu.Lock()
	s.audit = append(s.audit, AuditEntry{Time: s.cfg.Now(), Method: method, Resource: resource, Principal: principal, Code: code})
	s.mu.Unlock()
}

// Audit returns the decisions so far, oldest first.
func (s *Server) Audit() []AuditEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AuditEntry(nil), s.audit...)
}

// Decrypts counts successful Decrypt calls on key.
func (s *Server) Decrypts(key string) int {
	n := 0
	for _, e := range s.Audit() {
		if e.Method == "Decrypt" && e.Resource == key && e.Code == "OK" {
			n++
		}
	}
	return n
}

// sortedKeys is for deterministic iteration in messages.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
