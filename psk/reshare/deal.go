package reshare

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/cloudflare/circl/group"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/dkg"
)

var rist = group.Ristretto255

// Deal is an old holder's public message to every new participant: the
// Feldman commitments of its sub-polynomial g_i (whose constant term is its
// share), one HPKE-sealed sub-share g_i(j) per new participant, and a proof
// that the deal was made by the holder of share i.
type Deal struct {
	Reshare     []byte // the reshare id of the params it was made for
	Dealer      string // an old participant listed as dealer
	Commitments [][]byte
	Shares      []dkg.SealedShare
	// Proof is a Schnorr signature R || z over signedMessage under the
	// dealer's public share X_i (see proveDeal).
	Proof []byte
	// Source names where the Deal was read from (not encoded).
	Source string
}

type sealedEntry struct {
	Recipient string `json:"recipient"`
	Sealed    string `json:"sealed"`
}

type dealFile struct {
	Version     int           `json:"version"`
	Type        string        `json:"type"`
	ReshareID   string        `json:"reshare_id"`
	Dealer      string        `json:"dealer"`
	Commitments []string      `json:"commitments"`
	SubShares   []sealedEntry `json:"sub_shares"`
	Proof       string        `json:"proof"`
}

// MakeDeal is run by an old holder listed as a dealer in p, with its share
// of p.Old. rnd nil means crypto/rand.
func MakeDeal(p *Params, share *psk.Share, rnd io.Reader) (*Deal, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if !contains(p.Dealers, share.Participant) {
		return nil, fmt.Errorf("%s is not a dealer of reshare %s (dealers: %s)", share.Participant, short(p.ID()), strings.Join(p.Dealers, ","))
	}
	if err := psk.VerifyShare(p.Old, share); err != nil {
		return nil, fmt.Errorf("your share does not fit the old group of these params: %v", err)
	}
	s, err := dkg.DecodeScalar(share.Value)
	if err != nil {
		return nil, fmt.Errorf("share of %s has a malformed value", share.Participant)
	}
	// g_i(x) = s_i + b_1 x + ... + b_{T'-1} x^{T'-1}, fresh b_k per deal.
	poly := []group.Scalar{s}
	defer func() {
		for _, c := range poly {
			c.SetUint64(0)
		}
	}()
	for range p.Threshold - 1 {
		c, err := dkg.RandomScalar(rnd)
		if err != nil {
			return nil, err
		}
		poly = append(poly, c)
	}
	d, err := sealDeal(p, share.Participant, poly)
	if err != nil {
		return nil, err
	}
	if err := d.prove(p, s, rnd); err != nil {
		return nil, err
	}
	return d, nil
}

// sealDeal commits to poly and seals poly(j) to every new participant j.
func sealDeal(p *Params, dealer string, poly []group.Scalar) (*Deal, error) {
	cs, err := dkg.Commit(poly)
	if err != nil {
		return nil, err
	}
	d := &Deal{Reshare: p.ID(), Dealer: dealer, Commitments: cs}
	info := hpkeInfo(d.Reshare)
	cd := commitmentsDigest(cs)
	for j, q := range p.Participants {
		y := dkg.Evaluate(poly, j+1)
		yb, err := y.MarshalBinary()
		y.SetUint64(0)
		if err != nil {
			return nil, err
		}
		sealed, err := dkg.SealShare(q.HPKEKey, info, hpkeAAD(p, d.Dealer, q.Name, cd), yb)
		psk.Wipe(yb)
		if err != nil {
			return nil, fmt.Errorf("sealing the sub-share for %s: %v", q.Name, err)
		}
		d.Shares = append(d.Shares, dkg.SealedShare{Recipient: q.Name, Sealed: sealed})
	}
	return d, nil
}

// prove signs the deal with the dealer's share s (see proveDeal).
func (d *Deal) prove(p *Params, s group.Scalar, rnd io.Reader) error {
	x, err := publicShare(p.Old, oldIndex(p.Old, d.Dealer))
	if err != nil {
		return err
	}
	d.Proof, err = proveDeal(s, x, d.signedMessage(p), rnd)
	return err
}

// hpkeInfo binds a sub-share to the ceremony: "mcbn reshare v1 sub-share" ||
// reshare id (which covers the old group, dealers, T', the new participants
// and their keys).
func hpkeInfo(reshareID []byte) []byte {
	return append([]byte("mcbn reshare v1 sub-share"), reshareID...)
}

// hpkeAAD binds it to the dealer, the recipient and the dealer's
// commitments: u8(old index) || str(dealer) || u8(j) || str(recipient) ||
// commitments digest.
func hpkeAAD(p *Params, dealer, recipient string, cdigest []byte) []byte {
	b := []byte{byte(oldIndex(p.Old, dealer))}
	b = appendStr(b, dealer)
	b = append(b, byte(p.Index(recipient)))
	b = appendStr(b, recipient)
	return append(b, cdigest...)
}

// commitmentsDigest is SHA-256("mcbn reshare commitments v1" || u8(T') ||
// D_0 || ... || D_{T'-1}).
func commitmentsDigest(cs [][]byte) []byte {
	h := sha256.New()
	h.Write([]byte("mcbn reshare commitments v1"))
	h.Write([]byte{byte(len(cs))})
	for _, c := range cs {
		h.Write(c)
	}
	return h.Sum(nil)
}

// signedMessage is "mcbn reshare deal v1" || reshare id || u8(old index) ||
// str(dealer) || u8(T') || D_0..D_{T'-1} || u8(K) || for each sub-share:
// u8(new index) || str(recipient) || sealed (80 bytes).
func (d *Deal) signedMessage(p *Params) []byte {
	b := append([]byte("mcbn reshare deal v1"), d.Reshare...)
	b = append(b, byte(oldIndex(p.Old, d.Dealer)))
	b = appendStr(b, d.Dealer)
	b = append(b, byte(len(d.Commitments)))
	for _, c := range d.Commitments {
		b = append(b, c...)
	}
	b = append(b, byte(len(d.Shares)))
	for _, s := range d.Shares {
		b = append(b, byte(p.Index(s.Recipient)))
		b = appendStr(b, s.Recipient)
		b = append(b, s.Sealed...)
	}
	return b
}

// publicShare is X_i = sum_k i^k·C_k from a Shamir group's commitments: the
// public key of participant i's share (X_i = s_i·G for the true share).
func publicShare(g *psk.Group, i int) (group.Element, error) {
	xs := rist.NewScalar().SetUint64(uint64(i))
	acc := rist.Identity()
	for k := len(g.Commitments) - 1; k >= 0; k-- {
		b, err := hex.DecodeString(g.Commitments[k])
		if err != nil {
			return nil, fmt.Errorf("old group commitments[%d] is not hex", k)
		}
		c, err := dkg.DecodeElement(b)
		if err != nil {
			return nil, fmt.Errorf("old group commitments[%d]: %v", k, err)
		}
		acc.Mul(acc, xs)
		acc.Add(acc, c)
	}
	return acc, nil
}

const (
	proofDST = "mcbn reshare deal proof v1"
	nonceDST = "mcbn reshare deal nonce v1"
)

// proofChallenge is c = H(R || X || msg) as a scalar (hash to scalar of
// circl's ristretto255, SHA-512 expand_message_xmd, DST proofDST).
func proofChallenge(r, x []byte, msg []byte) group.Scalar {
	b := append(append(append([]byte(nil), r...), x...), msg...)
	return rist.HashToScalar(b, []byte(proofDST))
}

// proveDeal is a Schnorr signature of msg under X = s·G: k, R = k·G,
// c = H(R || X || msg), z = k + c·s; the proof is R || z. Why: only the
// holder of share i can make it, so a deal altered on its way is told apart
// from a cheating dealer, and nobody can deal in another holder's name.
// The nonce is hedged (fresh randomness hashed with s and msg), so a weak
// or repeated random source cannot leak s by nonce reuse.
func proveDeal(s group.Scalar, x group.Element, msg []byte, rnd io.Reader) ([]byte, error) {
	sb, err := s.MarshalBinary()
	if err != nil {
		return nil, err
	}
	defer psk.Wipe(sb)
	seed := make([]byte, 32, 64+len(msg))
	defer func() { psk.Wipe(seed) }() // the final seed, share bytes included
	if _, err := io.ReadFull(rnd, seed); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	seed = append(append(seed, sb...), msg...)
	k := rist.HashToScalar(seed, []byte(nonceDST))
	defer k.SetUint64(0)
	rb, err := rist.NewElement().MulGen(k).MarshalBinary()
	if err != nil {
		return nil, err
	}
	xb, err := x.MarshalBinary()
	if err != nil {
		return nil, err
	}
	z := rist.NewScalar().Mul(proofChallenge(rb, xb, msg), s)
	z.Add(z, k)
	zb, err := z.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return append(rb, zb...), nil
}

// verifyProof checks z·G == R + c·X.
func verifyProof(x group.Element, msg, proof []byte) bool {
	if len(proof) != 64 {
		return false
	}
	r, err := dkg.DecodeElement(proof[:32])
	if err != nil {
		return false
	}
	z, err := dkg.DecodeScalar(proof[32:])
	if err != nil {
		return false
	}
	xb, err := x.MarshalBinary()
	if err != nil {
		return false
	}
	rhs := rist.NewElement().Mul(x, proofChallenge(proof[:32], xb, msg))
	rhs.Add(rhs, r)
	return rist.NewElement().MulGen(z).IsEqual(rhs)
}

// Marshal renders the deal file (public).
func (d *Deal) Marshal() ([]byte, error) {
	f := dealFile{Version: Version, Type: TypeDeal, ReshareID: hex.EncodeToString(d.Reshare), Dealer: d.Dealer, Proof: hex.EncodeToString(d.Proof)}
	for _, c := range d.Commitments {
		f.Commitments = append(f.Commitments, hex.EncodeToString(c))
	}
	f.SubShares = []sealedEntry{}
	for _, s := range d.Shares {
		f.SubShares = append(f.SubShares, sealedEntry{Recipient: s.Recipient, Sealed: hex.EncodeToString(s.Sealed)})
	}
	return psk.MarshalFile(f)
}

// ParseDeal parses a deal file and checks its encoding (sizes, names,
// canonical commitments and proof). What needs the params (the proof, the
// constant term, the sub-shares) is checked by Finish.
func ParseDeal(data []byte) (*Deal, error) {
	var f dealFile
	if err := psk.DecodeStrict(data, TypeDeal, Version, &f); err != nil {
		return nil, err
	}
	if err := psk.CheckName("dealer", f.Dealer); err != nil {
		return nil, err
	}
	d := &Deal{Dealer: f.Dealer}
	var err error
	if d.Reshare, err = dkg.DecodeHex("reshare_id", f.ReshareID, 32); err != nil {
		return nil, err
	}
	if t := len(f.Commitments); t < psk.MinThreshold || t > psk.MaxParticipants {
		return nil, fmt.Errorf("deal of %q has %d commitments, want 2..%d", f.Dealer, t, psk.MaxParticipants)
	}
	for i, s := range f.Commitments {
		b, err := dkg.DecodeHex(fmt.Sprintf("commitments[%d]", i), s, 32)
		if err != nil {
			return nil, err
		}
		if _, err := dkg.DecodeElement(b); err != nil {
			return nil, fmt.Errorf("deal of %q: commitments[%d] is %v", f.Dealer, i, err)
		}
		d.Commitments = append(d.Commitments, b)
	}
	if len(f.SubShares) > psk.MaxParticipants {
		return nil, fmt.Errorf("deal of %q has %d sub-shares, at most %d", f.Dealer, len(f.SubShares), psk.MaxParticipants)
	}
	for i, s := range f.SubShares {
		if err := psk.CheckName(fmt.Sprintf("sub_shares[%d] recipient", i), s.Recipient); err != nil {
			return nil, err
		}
		b, err := dkg.DecodeHex(fmt.Sprintf("sealed sub-share for %q", s.Recipient), s.Sealed, dkg.SealedLen)
		if err != nil {
			return nil, err
		}
		d.Shares = append(d.Shares, dkg.SealedShare{Recipient: s.Recipient, Sealed: b})
	}
	if d.Proof, err = dkg.DecodeHex("proof", f.Proof, 64); err != nil {
		return nil, err
	}
	if _, err := dkg.DecodeElement(d.Proof[:32]); err != nil {
		return nil, fmt.Errorf("deal of %q: proof R is %v", f.Dealer, err)
	}
	if _, err := dkg.DecodeScalar(d.Proof[32:]); err != nil {
		return nil, fmt.Errorf("deal of %q: proof z is not a canonical scalar", f.Dealer)
	}
	return d, nil
}

// LoadDeal reads a deal file; errors name the file.
func LoadDeal(path string) (*Deal, error) {
	data, err := psk.ReadSmallFile(path, false)
	if err != nil {
		return nil, err
	}
	d, err := ParseDeal(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d.Source = path
	return d, nil
}

// WriteDeal writes the deal file (mode 0644), refusing to overwrite.
func WriteDeal(path string, d *Deal) error {
	b, err := d.Marshal()
	if err != nil {
		return err
	}
	return psk.WriteFileExclusive(path, b, 0o644)
}
