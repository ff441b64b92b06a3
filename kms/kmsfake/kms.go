package kmsfake

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"regexp"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// cryptoKey is a symmetric ENCRYPT_DECRYPT key with its versions.
type cryptoKey struct {
	name     string
	versions []*keyVersion // index i is version i+1
	primary  int           // version number
}

type keyVersion struct {
	aead  cipher.AEAD
	state kmspb.CryptoKeyVersion_CryptoKeyVersionState
}

var keyNameRE = regexp.MustCompile(`^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$`)

func newVersion() *keyVersion {
	k := make([]byte, 32)
	rand.Read(k)
	block, _ := aes.NewCipher(k)
	aead, _ := cipher.NewGCM(block)
	clear(k)
	return &keyVersion{aead: aead, state: kmspb.CryptoKeyVersion_ENABLED}
}

// CreateKey creates a crypto key with one enabled primary version.
func (s *Server) CreateKey(name string) error {
	if !keyNameRE.MatchString(name) {
		return fmt.Errorf("kmsfake: %q is not a crypto key name", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[name] != nil {
		return fmt.Errorf("kmsfake: key %s exists", name)
	}
	s.keys[name] = &cryptoKey{name: name, versions: []*keyVersion{newVersion()}, primary: 1}
	return nil
}

// AddVersion adds an enabled version to key, makes it primary and returns
// its name.
func (s *Server) AddVersion(key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[key]
	if k == nil {
		return "", fmt.Errorf("kmsfake: no key %s", key)
	}
	k.versions = append(k.versions, newVersion())
	k.primary = len(k.versions)
	return versionName(key, k.primary), nil
}

func versionName(key string, n int) string {
	return key + "/cryptoKeyVersions/" + strconv.Itoa(n)
}

// setState changes a version's state; version is a full version name.
func (s *Server) setState(version string, st kmspb.CryptoKeyVersion_CryptoKeyVersionState) error {
	key, n, ok := splitVersion(version)
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[key]
	if !ok || k == nil || n < 1 || n > len(k.versions) {
		return fmt.Errorf("kmsfake: no key version %s", version)
	}
	if k.versions[n-1].state == kmspb.CryptoKeyVersion_DESTROYED {
		return fmt.Errorf("kmsfake: %s is destroyed", version)
	}
	k.versions[n-1].state = st
	return nil
}

// DisableVersion disables a key version: Decrypt of what it sealed then
// fails with FAILED_PRECONDITION. This is how a KMS participant revokes
// consent.
func (s *Server) DisableVersion(version string) error {
	return s.setState(version, kmspb.CryptoKeyVersion_DISABLED)
}

// EnableVersion re-enables a disabled key version.
func (s *Server) EnableVersion(version string) error {
	return s.setState(version, kmspb.CryptoKeyVersion_ENABLED)
}

// DestroyVersion destroys a key version for good.
func (s *Server) DestroyVersion(version string) error {
	if err := s.setState(version, kmspb.CryptoKeyVersion_DESTROYED); err != nil {
		return err
	}
	key, n, _ := splitVersion(version)
	s.mu.Lock()
	s.keys[key].versions[n-1].aead = nil
	s.mu.Unlock()
	return nil
}

func splitVersion(v string) (key string, n int, ok bool) {
	i := strings.LastIndex(v, "/cryptoKeyVersions/")
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(v[i+len("/cryptoKeyVersions/"):])
	return v[:i], n, err == nil
}

// kmsService implements the KeyManagementService methods mcbn uses.
type kmsService struct {
	kmspb.UnimplementedKeyManagementServiceServer
	s *Server
}

// Ciphertext layout of the fake: "FKMS" || version (uint32 BE) || nonce
// (12) || AES-GCM ciphertext and tag. The GCM AAD is the key name, a zero
// byte and the caller's AAD, so a ciphertext opens only under its key.
const ctMagic = "FKMS"

func gcmAAD(key string, aad []byte) []byte {
	return append(append([]byte(key), 0), aad...)
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) int64 { return int64(crc32.Checksum(b, crcTable)) }

// authorize waits the configured delay, then finds the caller and checks
// it holds one of roles on key. Refusals look like Cloud KMS's.
func (k *kmsService) authorize(ctx context.Context, method, key, permission string, roles ...string) (*identity, error) {
	k.s.mu.Lock()
	delay := k.s.kmsDelay
	k.s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-t.C:
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var bearer string
	if v := md.Get("authorization"); len(v) == 1 {
		bearer, _ = strings.CutPrefix(v[0], "Bearer ")
	}
	id := k.s.lookup(bearer)
	if id == nil {
		k.s.record(method, key, "", "Unauthenticated")
		return nil, status.Error(codes.Unauthenticated, "Request had invalid authentication credentials. Expected OAuth 2 access token.")
	}
	k.s.mu.Lock()
	ok := k.s.keys[key] != nil && k.s.allowed(id, key, roles...)
	k.s.mu.Unlock()
	if !ok {
		k.s.record(method, key, id.String(), "PermissionDenied")
		return nil, status.Errorf(codes.PermissionDenied, "Permission '%s' denied on resource '%s' (or it may not exist).", permission, key)
	}
	return id, nil
}

func (k *kmsService) Encrypt(ctx context.Context, req *kmspb.EncryptRequest) (*kmspb.EncryptResponse, error) {
	key := req.GetName()
	if _, n, ok := splitVersion(key); ok && n > 0 {
		key, _, _ = splitVersion(key)
	}
	id, err := k.authorize(ctx, "Encrypt", key, "cloudkms.cryptoKeyVersions.useToEncrypt", RoleEncrypter, RoleEncrypterDecrypter)
	if err != nil {
		return nil, err
	}
	if c := req.GetPlaintextCrc32C(); c != nil && c.Value != crc(req.GetPlaintext()) {
		return nil, status.Error(codes.InvalidArgument, "The checksum in field plaintext_crc32c did not match the data in field plaintext.")
	}
	if c := req.GetAdditionalAuthenticatedDataCrc32C(); c != nil && c.Value != crc(req.GetAdditionalAuthenticatedData()) {
		return nil, status.Error(codes.InvalidArgument, "The checksum in field additional_authenticated_data_crc32c did not match the data in field additional_authenticated_data.")
	}
	k.s.mu.Lock()
	ck := k.s.keys[key]
	n := ck.primary
	if _, vn, ok := splitVersion(req.GetName()); ok {
		n = vn
	}
	var v *keyVersion
	if n >= 1 && n <= len(ck.versions) {
		v = ck.versions[n-1]
	}
	var aead cipher.AEAD
	var state kmspb.CryptoKeyVersion_CryptoKeyVersionState
	if v != nil {
		aead, state = v.aead, v.state
	}
	k.s.mu.Unlock()
	vname := versionName(key, n)
	if v == nil {
		k.s.record("Encrypt", key, id.String(), "NotFound")
		return nil, status.Errorf(codes.NotFound, "%s not found.", vname)
	}
	if state != kmspb.CryptoKeyVersion_ENABLED {
		k.s.record("Encrypt", key, id.String(), "FailedPrecondition")
		return nil, status.Errorf(codes.FailedPrecondition, "%s is not enabled, current state is: %s.", vname, state)
	}
	nonce := make([]byte, 12)
	rand.Read(nonce)
	ct := make([]byte, 0, 4+4+12+len(req.GetPlaintext())+16)
	ct = append(ct, ctMagic...)
	ct = binary.BigEndian.AppendUint32(ct, uint32(n))
	ct = append(ct, nonce...)
	ct = aead.Seal(ct, nonce, req.GetPlaintext(), gcmAAD(key, req.GetAdditionalAuthenticatedData()))
	k.s.record("Encrypt", key, id.String(), "OK")
	return &kmspb.EncryptResponse{
		Name: vname, Ciphertext: ct, CiphertextCrc32C: wrapperspb.Int64(crc(ct)),
		VerifiedPlaintextCrc32C:                   req.GetPlaintextCrc32C() != nil,
		VerifiedAdditionalAuthenticatedDataCrc32C: req.GetAdditionalAuthenticatedDataCrc32C() != nil,
		ProtectionLevel:                           kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

func (k *kmsService) Decrypt(ctx context.Context, req *kmspb.DecryptRequest) (*kmspb.DecryptResponse, error) {
	key := req.GetName()
	id, err := k.authorize(ctx, "Decrypt", key, "cloudkms.cryptoKeyVersions.useToDecrypt", RoleDecrypter, RoleEncrypterDecrypter)
	if err != nil {
		return nil, err
	}
	ct := req.GetCiphertext()
	if c := req.GetCiphertextCrc32C(); c != nil && c.Value != crc(ct) {
		return nil, status.Error(codes.InvalidArgument, "The checksum in field ciphertext_crc32c did not match the data in field ciphertext.")
	}
	if c := req.GetAdditionalAuthenticatedDataCrc32C(); c != nil && c.Value != crc(req.GetAdditionalAuthenticatedData()) {
		return nil, status.Error(codes.InvalidArgument, "The checksum in field additional_authenticated_data_crc32c did not match the data in field additional_authenticated_data.")
	}
	invalid := func() error {
		k.s.record("Decrypt", key, id.String(), "InvalidArgument")
		return status.Error(codes.InvalidArgument, "Decryption failed: verify that 'name' refers to the correct CryptoKey.")
	}
	if len(ct) < 4+4+12+16 || string(ct[:4]) != ctMagic {
		return nil, invalid()
	}
	n := int(binary.BigEndian.Uint32(ct[4:8]))
	k.s.mu.Lock()
	ck := k.s.keys[key]
	var v keyVersion
	found := n >= 1 && n <= len(ck.versions)
	if found {
		v = *ck.versions[n-1]
	}
	primary := ck.primary
	k.s.mu.Unlock()
	if !found {
		return nil, invalid()
	}
	if v.state != kmspb.CryptoKeyVersion_ENABLED {
		k.s.record("Decrypt", key, id.String(), "FailedPrecondition")
		return nil, status.Errorf(codes.FailedPrecondition, "%s is not enabled, current state is: %s.", versionName(key, n), v.state)
	}
	pt, err := v.aead.Open(nil, ct[8:20], ct[20:], gcmAAD(key, req.GetAdditionalAuthenticatedData()))
	if err != nil {
		return nil, invalid()
	}
	k.s.record("Decrypt", key, id.String(), "OK")
	return &kmspb.DecryptResponse{
		Plaintext: pt, PlaintextCrc32C: wrapperspb.Int64(crc(pt)),
		UsedPrimary: n == primary, ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

func (k *kmsService) GetCryptoKeyVersion(ctx context.Context, req *kmspb.GetCryptoKeyVersionRequest) (*kmspb.CryptoKeyVersion, error) {
	key, n, ok := splitVersion(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "%q is not a key version name", req.GetName())
	}
	if _, err := k.authorize(ctx, "GetCryptoKeyVersion", key, "cloudkms.cryptoKeyVersions.get", RoleDecrypter, RoleEncrypter, RoleEncrypterDecrypter); err != nil {
		return nil, err
	}
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	ck := k.s.keys[key]
	if n < 1 || n > len(ck.versions) {
		return nil, status.Errorf(codes.NotFound, "%s not found.", req.GetName())
	}
	return &kmspb.CryptoKeyVersion{
		Name: req.GetName(), State: ck.versions[n-1].state,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
		Algorithm:       kmspb.CryptoKeyVersion_GOOGLE_SYMMETRIC_ENCRYPTION,
	}, nil
}
