package attest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// devKeyBits is the size of the dev attester's signing key.
const devKeyBits = 2048

// loadOrCreateKey reads an RSA private key (PEM, PKCS#8 or PKCS#1) from path,
// refusing a file others can read; if path does not exist it generates a key
// and writes it there with mode 0600.
func loadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: mode %#o lets others read it; chmod 600", path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return parseKeyPEM(path, data)
}

func parseKeyPEM(path string, data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key file %s: no PEM block", path)
	}
	var key *rsa.PrivateKey
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key file %s: not a PKCS#8 key", path)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key file %s: not an RSA key", path)
		}
		key = rk
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key file %s: not a PKCS#1 key", path)
		}
		key = k
	default:
		return nil, fmt.Errorf("key file %s: PEM type %q, want PRIVATE KEY", path, block.Type)
	}
	if key.N.BitLen() < devKeyBits {
		return nil, fmt.Errorf("key file %s: RSA key of %d bits, want at least %d", path, key.N.BitLen(), devKeyBits)
	}
	return key, nil
}

func createKeyFile(path string) (*rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, devKeyBits)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}
