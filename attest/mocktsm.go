package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
)

// mock-tsm: a stand-in for configfs-tsm so that the raw-evidence path runs
// in CI without TDX or SEV-SNP hardware. A mock-tsm directory holds a test
// signing key and a fake certificate chain; the provider writes its inblob
// into a report entry under <dir>/report exactly as it would under
// /sys/kernel/config/tsm/report, and reads back an outblob signed with the
// test key. Mock evidence proves nothing: its "tee" claim is "mock", and a
// shareholder refuses it unless its config names a mock root and its policy
// names "mock" (see shareholder/evidence.go).

// MockTSMProvider is the configfs-tsm "provider" value of the mock.
const MockTSMProvider = "mock_tsm"

// Mock report layout (all integers little endian):
//
//	0    magic "MCBNMOCK"
//	8    version u16 = 1
//	10   flags u16 (bit 0: debug)
//	12   svn u32
//	16   measurement [48]
//	64   host_data [32]
//	96   report_data [64]
//	160  sig_len u16
//	162  ECDSA P-384 signature (ASN.1 DER) over SHA-384 of bytes 0..159
//
// and nothing after the signature.
const (
	mockMagic      = "MCBNMOCK"
	mockSignedLen  = 160
	mockHeaderLen  = 162
	mockMaxSigLen  = 104 // DER ECDSA P-384 signatures are at most 104 bytes
	mockVersion    = 1
	mockFlagDebug  = 1
	mockConfigFile = "mock.json"
)

// MockReport is a parsed mock report.
type MockReport struct {
	Debug       bool
	SVN         uint32
	Measurement []byte
	HostData    []byte
	ReportData  []byte
	Signed      []byte // bytes 0..159
	Signature   []byte
}

// ParseMockReport parses a mock report strictly (exact length).
func ParseMockReport(b []byte) (*MockReport, error) {
	if len(b) < mockHeaderLen {
		return nil, wrapf(ErrEvidenceMalformed, "mock report truncated (%d bytes)", len(b))
	}
	if string(b[:8]) != mockMagic {
		return nil, wrapf(ErrEvidenceMalformed, "mock report has no MCBNMOCK magic")
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != mockVersion {
		return nil, wrapf(ErrEvidenceUnsupported, "mock report version %d, want %d", v, mockVersion)
	}
	flags := binary.LittleEndian.Uint16(b[10:])
	if flags&^mockFlagDebug != 0 {
		return nil, wrapf(ErrEvidenceMalformed, "mock report has unknown flags 0x%x", flags)
	}
	sigLen := int(binary.LittleEndian.Uint16(b[160:]))
	if sigLen == 0 || sigLen > mockMaxSigLen {
		return nil, wrapf(ErrEvidenceMalformed, "mock report signature length %d outside 1..%d", sigLen, mockMaxSigLen)
	}
	if len(b) != mockHeaderLen+sigLen {
		return nil, wrapf(ErrEvidenceMalformed, "mock report is %d bytes, its signature length says %d", len(b), mockHeaderLen+sigLen)
	}
	return &MockReport{
		Debug:       flags&mockFlagDebug != 0,
		SVN:         binary.LittleEndian.Uint32(b[12:]),
		Measurement: b[16:64],
		HostData:    b[64:96],
		ReportData:  b[96:160],
		Signed:      b[:mockSignedLen],
		Signature:   b[mockHeaderLen:],
	}, nil
}

// MockConfig is what a mock-tsm directory's mock.json says the "hardware"
// reports.
type MockConfig struct {
	Measurement string `json:"measurement"` // 96 hex digits
	HostData    string `json:"host_data"`   // 64 hex digits
	SVN         uint32 `json:"svn"`
	Debug       bool   `json:"debug"`
}

// MockTSM is a mock-tsm directory.
type MockTSM struct {
	Dir string
}

// Mock-tsm directory files.
const (
	MockKeyFile   = "key.pem"
	MockChainFile = "chain.pem"
	MockRootFile  = "root.pem"
)

// CreateMockTSM makes a mock-tsm directory: a fake root CA, a leaf
// certificate for a fresh P-384 test key, and mock.json from cfg. The root
// (root.pem) is what a test shareholder names as its mock root.
func CreateMockTSM(dir string, cfg MockConfig) (*MockTSM, error) {
	if err := os.MkdirAll(filepath.Join(dir, "report"), 0o700); err != nil {
		return nil, err
	}
	rootKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mcbn mock-tsm root (TEST ONLY)"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(rootDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mcbn mock-tsm attestation key (TEST ONLY)"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		return nil, err
	}
	cj, _ := json.MarshalIndent(cfg.withDefaults(), "", "  ")
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{MockKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{MockChainFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o644},
		{MockRootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}), 0o644},
		{mockConfigFile, append(cj, '\n'), 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, err
		}
	}
	return &MockTSM{Dir: dir}, nil
}

// withDefaults fills an empty measurement or host data with zeros.
func (c MockConfig) withDefaults() MockConfig {
	if c.Measurement == "" {
		c.Measurement = strings.Repeat("00", 48)
	}
	if c.HostData == "" {
		c.HostData = strings.Repeat("00", 32)
	}
	return c
}

// SetConfig rewrites mock.json (tests: a debug guest, another measurement).
func (m *MockTSM) SetConfig(cfg MockConfig) error {
	cj, err := json.MarshalIndent(cfg.withDefaults(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(m.Dir, mockConfigFile), append(cj, '\n'), 0o644)
}

// Sign produces a mock report over reportData as the mock hardware would.
func (m *MockTSM) Sign(reportData []byte) (report, aux []byte, err error) {
	if len(reportData) != 64 {
		return nil, nil, fmt.Errorf("mock-tsm: inblob is %d bytes, want 64", len(reportData))
	}
	cb, err := os.ReadFile(filepath.Join(m.Dir, mockConfigFile))
	if err != nil {
		return nil, nil, err
	}
	var cfg MockConfig
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return nil, nil, fmt.Errorf("mock-tsm: %s: %s", mockConfigFile, jsonErrorKind(err))
	}
	meas, err1 := hex.DecodeString(cfg.Measurement)
	host, err2 := hex.DecodeString(cfg.HostData)
	if err1 != nil || err2 != nil || len(meas) != 48 || len(host) != 32 {
		return nil, nil, errors.New("mock-tsm: mock.json measurement must be 96 hex digits and host_data 64")
	}
	kb, err := os.ReadFile(filepath.Join(m.Dir, MockKeyFile))
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, nil, errors.New("mock-tsm: key.pem holds no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("mock-tsm: key.pem: %v", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("mock-tsm: key.pem is not an ECDSA key")
	}
	aux, err = os.ReadFile(filepath.Join(m.Dir, MockChainFile))
	if err != nil {
		return nil, nil, err
	}
	b := make([]byte, mockSignedLen, mockHeaderLen+mockMaxSigLen)
	copy(b, mockMagic)
	binary.LittleEndian.PutUint16(b[8:], mockVersion)
	if cfg.Debug {
		binary.LittleEndian.PutUint16(b[10:], mockFlagDebug)
	}
	binary.LittleEndian.PutUint32(b[12:], cfg.SVN)
	copy(b[16:64], meas)
	copy(b[64:96], host)
	copy(b[96:160], reportData)
	sum := sha512.Sum384(b)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA384)
	if err != nil {
		return nil, nil, err
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(sig)))
	b = append(b, sig...)
	return b, aux, nil
}

// Client returns a configfsi.Client over the mock-tsm directory: paths
// under /sys/kernel/config/tsm map to the directory, and reading an entry's
// outblob or auxblob has the mock "hardware" sign its inblob.
func (m *MockTSM) Client() configfsi.Client { return &mockClient{m: m} }

type mockClient struct{ m *MockTSM }

// local maps a configfs-tsm path into the mock directory, refusing any
// path that is not subsystem/entry/attribute under the TSM prefix.
func (c *mockClient) local(name string) (string, *configfsi.TsmPath, error) {
	p, err := configfsi.ParseTsmPath(name)
	if err != nil {
		return "", nil, err
	}
	if p.Subsystem != "report" || strings.Contains(p.Entry, "..") || strings.Contains(p.Attribute, "..") {
		return "", nil, fmt.Errorf("mock-tsm: path %s outside the report subsystem", clip(name))
	}
	return filepath.Join(c.m.Dir, "report", p.Entry, p.Attribute), p, nil
}

func (c *mockClient) MkdirTemp(dir, pattern string) (string, error) {
	d, _, err := c.local(dir)
	if err != nil {
		return "", err
	}
	e, err := os.MkdirTemp(d, pattern)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(e, "generation"), []byte("0\n"), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(e, "provider"), []byte(MockTSMProvider), 0o600); err != nil {
		return "", err
	}
	return path.Join(dir, filepath.Base(e)), nil
}

func (c *mockClient) ReadFile(name string) ([]byte, error) {
	l, p, err := c.local(name)
	if err != nil {
		return nil, err
	}
	if p.Attribute == "outblob" || p.Attribute == "auxblob" {
		in, err := os.ReadFile(filepath.Join(filepath.Dir(l), "inblob"))
		if err != nil {
			return nil, err
		}
		rep, aux, err := c.m.Sign(in)
		if err != nil {
			return nil, err
		}
		if p.Attribute == "auxblob" {
			return aux, nil
		}
		return rep, nil
	}
	return os.ReadFile(l)
}

func (c *mockClient) ReadDir(dirname string) ([]os.DirEntry, error) {
	l, _, err := c.local(dirname)
	if err != nil {
		return nil, err
	}
	return os.ReadDir(l)
}

// WriteFile writes an attribute and bumps the entry's generation, as
// configfs-tsm does, so go-configfs-tsm's tamper check runs against it.
func (c *mockClient) WriteFile(name string, contents []byte) error {
	l, _, err := c.local(name)
	if err != nil {
		return err
	}
	if err := os.WriteFile(l, contents, 0o600); err != nil {
		return err
	}
	gf := filepath.Join(filepath.Dir(l), "generation")
	g, err := os.ReadFile(gf)
	if err != nil {
		return err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(g)), 10, 64)
	if err != nil {
		return err
	}
	return os.WriteFile(gf, []byte(strconv.FormatUint(n+1, 10)+"\n"), 0o600)
}

func (c *mockClient) RemoveAll(name string) error {
	l, p, err := c.local(name)
	if err != nil {
		return err
	}
	if p.Entry == "" {
		return errors.New("mock-tsm: refusing to remove the report subsystem")
	}
	return os.RemoveAll(l)
}
