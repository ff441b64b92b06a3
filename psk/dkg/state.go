package dkg

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/cloudflare/circl/group"
	"github.com/mcbn/mcbn/psk"
)

// State is one participant's private ceremony state. It holds the dealer's
// polynomial and its HPKE and signing private keys, so it is as secret as a
// share: file mode 0600, and it should be deleted once Finish has written
// the share. Deal records the ceremony (every participant's Pub) in it.
type State struct {
	Params
	Me string
	// Ceremony is the ceremony id, nil until Deal.
	Ceremony []byte
	// Pubs are every participant's Pub in index order, nil until Deal.
	Pubs []*Pub

	hpkePriv []byte   // X25519 private key (RFC 9180 SerializePrivateKey)
	signSeed []byte   // Ed25519 seed
	coeffs   [][]byte // a_0 .. a_{T-1}, canonical scalars
}

type pubEntry struct {
	Participant       string `json:"participant"`
	HPKEKey           string `json:"hpke_key"`
	SignKey           string `json:"sign_key"`
	CommitmentsDigest string `json:"commitments_digest"`
}

type stateFile struct {
	Version      int        `json:"version"`
	Type         string     `json:"type"`
	Group        string     `json:"group"`
	Threshold    int        `json:"threshold"`
	Participants []string   `json:"participants"`
	Participant  string     `json:"participant"`
	HPKEPrivate  string     `json:"hpke_private_key"`
	SignSeed     string     `json:"sign_seed"`
	Coefficients []string   `json:"coefficients"`
	Ceremony     string     `json:"ceremony,omitempty"`
	Pubs         []pubEntry `json:"pubs,omitempty"`
}

// Init starts a ceremony for participant me: it draws the polynomial (T
// coefficients, by rejection sampling as psk.Split does), an HPKE key pair
// and an Ed25519 key pair, all from rnd (nil means crypto/rand), and returns
// the private state and the public Pub file for everyone.
func Init(p Params, me string, rnd io.Reader) (*State, *Pub, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	if p.Index(me) == 0 {
		return nil, nil, fmt.Errorf("%q is not in the participant list %v", me, p.Participants)
	}
	st := &State{Params: p, Me: me}
	ikm := make([]byte, 32)
	defer psk.Wipe(ikm)
	if _, err := io.ReadFull(rnd, ikm); err != nil {
		return nil, nil, fmt.Errorf("reading randomness: %w", err)
	}
	sk, err := kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, nil, err
	}
	if st.hpkePriv, err = sk.Bytes(); err != nil {
		return nil, nil, err
	}
	st.signSeed = make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rnd, st.signSeed); err != nil {
		st.Wipe()
		return nil, nil, fmt.Errorf("reading randomness: %w", err)
	}
	for range p.Threshold {
		c, err := randomScalar(rnd)
		if err != nil {
			st.Wipe()
			return nil, nil, err
		}
		b, err := c.MarshalBinary()
		wipeScalar(c)
		if err != nil {
			st.Wipe()
			return nil, nil, err
		}
		st.coeffs = append(st.coeffs, b)
	}
	pub, err := st.Pub()
	if err != nil {
		st.Wipe()
		return nil, nil, err
	}
	return st, pub, nil
}

// Wipe zeroes the private keys and the polynomial.
func (st *State) Wipe() {
	if st == nil {
		return
	}
	psk.Wipe(st.hpkePriv)
	psk.Wipe(st.signSeed)
	for _, c := range st.coeffs {
		psk.Wipe(c)
	}
}

// Pub derives this participant's public file from the state.
func (st *State) Pub() (*Pub, error) {
	sk, err := kem.NewPrivateKey(st.hpkePriv)
	if err != nil {
		return nil, fmt.Errorf("state of %q: bad HPKE private key", st.Me)
	}
	cs, err := st.commitments()
	if err != nil {
		return nil, err
	}
	signKey := st.signingKey()
	defer psk.Wipe(signKey)
	return &Pub{
		Params: st.Params, Participant: st.Me,
		HPKEKey: sk.PublicKey().Bytes(), SignKey: append([]byte(nil), signKey.Public().(ed25519.PublicKey)...),
		CommitmentsDigest: commitmentsDigest(cs),
	}, nil
}

func (st *State) signingKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(st.signSeed) }

// polynomial decodes the coefficients; the caller wipes them.
func (st *State) polynomial() ([]group.Scalar, error) {
	out := make([]group.Scalar, len(st.coeffs))
	for i, c := range st.coeffs {
		s, err := decodeScalar(c)
		if err != nil {
			return nil, fmt.Errorf("state of %q: coefficient %d is not a canonical scalar", st.Me, i)
		}
		out[i] = s
	}
	return out, nil
}

func wipeScalars(ss []group.Scalar) {
	for _, s := range ss {
		wipeScalar(s)
	}
}

func (st *State) commitments() ([][]byte, error) {
	poly, err := st.polynomial()
	if err != nil {
		return nil, err
	}
	defer wipeScalars(poly)
	return commit(poly)
}

// Marshal renders the state file. The result is secret.
func (st *State) Marshal() ([]byte, error) {
	f := stateFile{
		Version: Version, Type: TypeState, Group: st.Group, Threshold: st.Threshold,
		Participants: st.Participants, Participant: st.Me,
		HPKEPrivate: hex.EncodeToString(st.hpkePriv), SignSeed: hex.EncodeToString(st.signSeed),
	}
	for _, c := range st.coeffs {
		f.Coefficients = append(f.Coefficients, hex.EncodeToString(c))
	}
	if st.Ceremony != nil {
		f.Ceremony = hex.EncodeToString(st.Ceremony)
		for _, p := range st.Pubs {
			f.Pubs = append(f.Pubs, pubEntry{
				Participant: p.Participant, HPKEKey: hex.EncodeToString(p.HPKEKey),
				SignKey: hex.EncodeToString(p.SignKey), CommitmentsDigest: hex.EncodeToString(p.CommitmentsDigest),
			})
		}
	}
	return marshalFile(f)
}

// ParseState parses and validates a state file's bytes: parameters, keys,
// the polynomial and, once dealt, that the recorded Pubs give the recorded
// ceremony id and include this participant's own. data is not retained.
func ParseState(data []byte) (*State, error) {
	var f stateFile
	if err := decodeStrict(data, TypeState, &f); err != nil {
		return nil, err
	}
	st := &State{Params: Params{Group: f.Group, Threshold: f.Threshold, Participants: f.Participants}, Me: f.Participant}
	if err := st.parseSecrets(&f); err != nil {
		st.Wipe()
		return nil, err
	}
	return st, nil
}

func (st *State) parseSecrets(f *stateFile) error {
	if err := st.Params.Validate(); err != nil {
		return err
	}
	if st.Index(st.Me) == 0 {
		return fmt.Errorf("participant %q is not in the participant list", st.Me)
	}
	var err error
	if st.hpkePriv, err = decodeHex("hpke_private_key", f.HPKEPrivate, 32); err != nil {
		return err
	}
	if st.signSeed, err = decodeHex("sign_seed", f.SignSeed, ed25519.SeedSize); err != nil {
		return err
	}
	if len(f.Coefficients) != st.Threshold {
		return fmt.Errorf("state needs %d coefficients (threshold), has %d", st.Threshold, len(f.Coefficients))
	}
	for i, c := range f.Coefficients {
		b, err := decodeHex(fmt.Sprintf("coefficients[%d]", i), c, 32)
		if err != nil {
			return err
		}
		st.coeffs = append(st.coeffs, b)
	}
	own, err := st.Pub() // checks the key and every coefficient
	if err != nil {
		return err
	}
	if f.Ceremony == "" && f.Pubs == nil {
		return nil
	}
	if st.Ceremony, err = decodeHex("ceremony", f.Ceremony, 32); err != nil {
		return err
	}
	if len(f.Pubs) != st.N() {
		return fmt.Errorf("state records %d pubs, want %d", len(f.Pubs), st.N())
	}
	var fps [][]byte
	for i, e := range f.Pubs {
		p := &Pub{Params: st.Params, Participant: e.Participant}
		if e.Participant != st.Participants[i] {
			return fmt.Errorf("pubs[%d] is %q, want %q", i, e.Participant, st.Participants[i])
		}
		if p.HPKEKey, err = decodeHex("pubs hpke_key", e.HPKEKey, 32); err != nil {
			return err
		}
		if p.SignKey, err = decodeHex("pubs sign_key", e.SignKey, ed25519.PublicKeySize); err != nil {
			return err
		}
		if p.CommitmentsDigest, err = decodeHex("pubs commitments_digest", e.CommitmentsDigest, 32); err != nil {
			return err
		}
		st.Pubs = append(st.Pubs, p)
		fps = append(fps, p.Fingerprint())
	}
	if subtle.ConstantTimeCompare(ceremonyID(st.Params, fps), st.Ceremony) != 1 {
		return fmt.Errorf("recorded pubs do not give the recorded ceremony id %s: the state was altered", short(st.Ceremony))
	}
	if subtle.ConstantTimeCompare(st.Pubs[st.Index(st.Me)-1].Fingerprint(), own.Fingerprint()) != 1 {
		return fmt.Errorf("recorded pub of %q does not match this state's keys", st.Me)
	}
	return nil
}

// LoadState reads a state file, refusing one that group or others can read.
func LoadState(path string) (*State, error) {
	data, err := readFile(path, true)
	if err != nil {
		return nil, err
	}
	defer psk.Wipe(data)
	st, err := ParseState(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// WriteState creates the state file with mode 0600, refusing to overwrite.
func WriteState(path string, st *State) error {
	b, err := st.Marshal()
	if err != nil {
		return err
	}
	defer psk.Wipe(b)
	return writeExclusive(path, b, 0o600)
}

// SaveState atomically replaces an existing state file (mode 0600), as Deal
// does to record the ceremony.
func SaveState(path string, st *State) error {
	b, err := st.Marshal()
	if err != nil {
		return err
	}
	defer psk.Wipe(b)
	return replaceSecret(path, b)
}
