package dkg

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"

	"github.com/mcbn/mcbn/psk"
)

// Round1 is a dealer's signed message to everyone: its Feldman commitments
// and one HPKE-sealed sub-share per other participant. The same file goes to
// all participants; each can open only its own sub-share.
type Round1 struct {
	// Ceremony is the ceremony id the dealer computed from everyone's Pub.
	Ceremony []byte
	// PubFingerprints are the N Pub fingerprints the id was made of, in
	// index order, so a recipient whose id differs can tell whose Pub differs.
	PubFingerprints [][]byte
	Sender          string
	Commitments     [][]byte // C_0 .. C_{T-1}, ristretto255 encodings
	Shares          []SealedShare
	Signature       []byte // Ed25519 over signedMessage, by the sender's sign_key
	// Source names where the Round1 was read from, for messages (not encoded).
	Source string
}

// SealedShare is one sub-share f(j) sealed to recipient j: enc || ciphertext.
type SealedShare struct {
	Recipient string
	Sealed    []byte
}

type sealedFile struct {
	Recipient string `json:"recipient"`
	Sealed    string `json:"sealed"`
}

type round1File struct {
	Version         int          `json:"version"`
	Type            string       `json:"type"`
	Ceremony        string       `json:"ceremony"`
	PubFingerprints []string     `json:"pub_fingerprints"`
	Sender          string       `json:"sender"`
	Commitments     []string     `json:"commitments"`
	SubShares       []sealedFile `json:"sub_shares"`
	Signature       string       `json:"signature"`
}

// signedMessage is "mcbn dkg round1 v1" || ceremony || u8(N) || fp_1..fp_N
// || str(sender) || u8(T) || C_0..C_{T-1} || u8(K) || for each sub-share:
// str(recipient) || sealed (80 bytes).
func (r *Round1) signedMessage() []byte {
	b := append([]byte("mcbn dkg round1 v1"), r.Ceremony...)
	b = append(b, byte(len(r.PubFingerprints)))
	for _, fp := range r.PubFingerprints {
		b = append(b, fp...)
	}
	b = appendStr(b, r.Sender)
	b = append(b, byte(len(r.Commitments)))
	for _, c := range r.Commitments {
		b = append(b, c...)
	}
	b = append(b, byte(len(r.Shares)))
	for _, s := range r.Shares {
		b = appendStr(b, s.Recipient)
		b = append(b, s.Sealed...)
	}
	return b
}

// verifySignature checks the signature under the sender's sign key.
func (r *Round1) verifySignature(signKey []byte) bool {
	return len(signKey) == ed25519.PublicKeySize && ed25519.Verify(ed25519.PublicKey(signKey), r.signedMessage(), r.Signature)
}

// Marshal renders the Round1 file.
func (r *Round1) Marshal() ([]byte, error) {
	f := round1File{Version: Version, Type: TypeRound1, Ceremony: hex.EncodeToString(r.Ceremony), Sender: r.Sender, Signature: hex.EncodeToString(r.Signature)}
	for _, fp := range r.PubFingerprints {
		f.PubFingerprints = append(f.PubFingerprints, hex.EncodeToString(fp))
	}
	for _, c := range r.Commitments {
		f.Commitments = append(f.Commitments, hex.EncodeToString(c))
	}
	f.SubShares = []sealedFile{}
	for _, s := range r.Shares {
		f.SubShares = append(f.SubShares, sealedFile{Recipient: s.Recipient, Sealed: hex.EncodeToString(s.Sealed)})
	}
	return marshalFile(f)
}

// ParseRound1 parses a Round1 file and checks its encoding (sizes, names,
// canonical commitments). The signature and everything that needs the
// ceremony are checked by Finish.
func ParseRound1(data []byte) (*Round1, error) {
	var f round1File
	if err := decodeStrict(data, TypeRound1, &f); err != nil {
		return nil, err
	}
	if err := checkName("sender", f.Sender); err != nil {
		return nil, err
	}
	r := &Round1{Sender: f.Sender}
	var err error
	if r.Ceremony, err = decodeHex("ceremony", f.Ceremony, 32); err != nil {
		return nil, err
	}
	if n := len(f.PubFingerprints); n < psk.MinThreshold || n > psk.MaxParticipants {
		return nil, fmt.Errorf("round 1 of %q has %d pub fingerprints, want 2..255", f.Sender, n)
	}
	for i, s := range f.PubFingerprints {
		b, err := decodeHex(fmt.Sprintf("pub_fingerprints[%d]", i), s, 32)
		if err != nil {
			return nil, err
		}
		r.PubFingerprints = append(r.PubFingerprints, b)
	}
	if t := len(f.Commitments); t < psk.MinThreshold || t > len(f.PubFingerprints) {
		return nil, fmt.Errorf("round 1 of %q has %d commitments, want 2..%d", f.Sender, t, len(f.PubFingerprints))
	}
	for i, s := range f.Commitments {
		b, err := decodeHex(fmt.Sprintf("commitments[%d]", i), s, 32)
		if err != nil {
			return nil, err
		}
		if _, err := decodeElement(b); err != nil {
			return nil, fmt.Errorf("round 1 of %q: commitments[%d] is %v", f.Sender, i, err)
		}
		r.Commitments = append(r.Commitments, b)
	}
	if len(f.SubShares) >= len(f.PubFingerprints) {
		return nil, fmt.Errorf("round 1 of %q has %d sub-shares for %d participants", f.Sender, len(f.SubShares), len(f.PubFingerprints))
	}
	for i, s := range f.SubShares {
		if err := checkName(fmt.Sprintf("sub_shares[%d] recipient", i), s.Recipient); err != nil {
			return nil, err
		}
		b, err := decodeHex(fmt.Sprintf("sealed sub-share for %q", s.Recipient), s.Sealed, sealedLen)
		if err != nil {
			return nil, err
		}
		r.Shares = append(r.Shares, SealedShare{Recipient: s.Recipient, Sealed: b})
	}
	if r.Signature, err = decodeHex("signature", f.Signature, ed25519.SignatureSize); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadRound1 reads a Round1 file; errors name the file.
func LoadRound1(path string) (*Round1, error) {
	data, err := readFile(path, false)
	if err != nil {
		return nil, err
	}
	r, err := ParseRound1(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.Source = path
	return r, nil
}

// WriteRound1 writes the Round1 file (mode 0644), refusing to overwrite.
func WriteRound1(path string, r *Round1) error {
	b, err := r.Marshal()
	if err != nil {
		return err
	}
	return writeExclusive(path, b, 0o644)
}
