package shareholder

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// SPKI pins are written "sha256:" followed by the lowercase hex SHA-256 of
// the certificate's DER SubjectPublicKeyInfo, the same value as
//
//	openssl x509 -in cert.pem -noout -pubkey | openssl pkey -pubin -outform der | sha256sum
const pinPrefix = "sha256:"

// SPKIPin returns the pin of a certificate.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return pinPrefix + hex.EncodeToString(sum[:])
}

// ParsePin checks and decodes a pin ("sha256:" + 64 hex digits).
func ParsePin(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(s)), pinPrefix)
	if !ok || !isHex(h, 64) {
		return nil, errors.New(`a pin is "sha256:" followed by 64 hex digits (printed by mcbn shareholder serve at start)`)
	}
	b, _ := hex.DecodeString(h)
	return b, nil
}

// SelfSignedCert generates an ECDSA P-256 certificate for the given host
// names and addresses, valid for a year. It is quick (no RSA, no DH
// parameters) and proxies trust it by pin, not by name.
func SelfSignedCert(name string, hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	if name == "" {
		name = "mcbn-shareholder"
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range append(hosts, "localhost", "127.0.0.1", "::1") {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// serverCertificate loads the configured certificate or generates one.
func serverCertificate(c *Config) (tls.Certificate, error) {
	if c.TLS.Cert == "" {
		host, _, _ := net.SplitHostPort(c.Listen)
		return SelfSignedCert(c.Name, []string{host})
	}
	if fi, err := os.Stat(c.TLS.Key); err != nil {
		return tls.Certificate{}, fmt.Errorf("tls.key: %v", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		return tls.Certificate{}, fmt.Errorf("tls.key: %s is readable by group or others (mode %04o); run: chmod 600 %s", c.TLS.Key, fi.Mode().Perm(), c.TLS.Key)
	}
	cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: %v", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("tls.cert: %v", err)
		}
	}
	return cert, nil
}

// pinVerifier returns a VerifyConnection callback accepting exactly the
// leaf whose SPKI hashes to pin. Names and chains are not checked: the pin
// is the trust anchor.
func pinVerifier(pin []byte) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("shareholder sent no certificate")
		}
		sum := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
		if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
			return fmt.Errorf("certificate pin mismatch: got %s", SPKIPin(cs.PeerCertificates[0]))
		}
		return nil
	}
}
