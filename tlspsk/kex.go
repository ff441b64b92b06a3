package tlspsk

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"io"
)

// Key exchange for the key_share extension: X25519 and P-256 (RFC 8446
// 4.2.8.2) and the X25519MLKEM768 hybrid (draft-ietf-tls-ecdhe-mlkem):
// the client share is the ML-KEM-768 encapsulation key followed by an
// X25519 share, the server share the ML-KEM ciphertext followed by an X25519
// share, and the secret the ML-KEM secret followed by the X25519 secret.

const (
	mlkemEKLen = mlkem.EncapsulationKeySize768
	mlkemCTLen = mlkem.CiphertextSize768
)

// clientKeyShare is the client's private half for one group.
type clientKeyShare struct {
	group CurveID
	ec    *ecdh.PrivateKey
	kem   *mlkem.DecapsulationKey768
	pub   []byte
}

func ecdhCurve(g CurveID) ecdh.Curve {
	switch g {
	case X25519, X25519MLKEM768:
		return ecdh.X25519()
	case CurveP256:
		return ecdh.P256()
	}
	return nil
}

func newClientKeyShare(g CurveID, rand io.Reader) (*clientKeyShare, error) {
	curve := ecdhCurve(g)
	if curve == nil {
		return nil, alertf(alertInternalError, "unsupported group")
	}
	priv, err := curve.GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	ks := &clientKeyShare{group: g, ec: priv}
	if g == X25519MLKEM768 {
		dk, err := mlkem.GenerateKey768()
		if err != nil {
			return nil, err
		}
		ks.kem = dk
		ks.pub = append(dk.EncapsulationKey().Bytes(), priv.PublicKey().Bytes()...)
	} else {
		ks.pub = priv.PublicKey().Bytes()
	}
	return ks, nil
}

// x25519Alone is the plain X25519 share made of a hybrid share's X25519
// key pair, for offering both groups with one key generation.
func (ks *clientKeyShare) x25519Alone() *clientKeyShare {
	return &clientKeyShare{group: X25519, ec: ks.ec, pub: ks.ec.PublicKey().Bytes()}
}

// sharedSecret completes the exchange with the server's share.
func (ks *clientKeyShare) sharedSecret(server []byte) ([]byte, error) {
	bad := alertf(alertIllegalParameter, "bad server key share")
	if ks.group == X25519MLKEM768 {
		if len(server) != mlkemCTLen+32 {
			return nil, bad
		}
		kss, err := ks.kem.Decapsulate(server[:mlkemCTLen])
		if err != nil {
			return nil, bad
		}
		xs, err := ecdhShared(ks.ec, server[mlkemCTLen:])
		if err != nil {
			return nil, bad
		}
		return append(kss, xs...), nil
	}
	s, err := ecdhShared(ks.ec, server)
	if err != nil {
		return nil, bad
	}
	return s, nil
}

func ecdhShared(priv *ecdh.PrivateKey, peer []byte) ([]byte, error) {
	pub, err := priv.Curve().NewPublicKey(peer)
	if err != nil {
		return nil, err
	}
	return priv.ECDH(pub) // rejects the all-zero X25519 output
}

// serverKeyShare answers the client's share for group g and returns the
// server share and the shared secret. pooled, when not nil, is a fresh
// X25519 key pair from a KeySharePool (used once, here) for an X25519 or
// X25519MLKEM768 group; otherwise the key pair is generated now.
func serverKeyShare(g CurveID, client []byte, rand io.Reader, pooled *ecdh.PrivateKey) (pub, secret []byte, err error) {
	bad := alertf(alertIllegalParameter, "bad client key share")
	curve := ecdhCurve(g)
	if curve == nil {
		return nil, nil, alertf(alertInternalError, "unsupported group")
	}
	xpeer := client
	var kemCT, kemSS []byte
	if g == X25519MLKEM768 {
		if len(client) != mlkemEKLen+32 {
			return nil, nil, bad
		}
		ek, err := mlkem.NewEncapsulationKey768(client[:mlkemEKLen])
		if err != nil {
			return nil, nil, bad
		}
		kemSS, kemCT = ek.Encapsulate()
		xpeer = client[mlkemEKLen:]
	}
	priv := pooled
	if priv == nil || priv.Curve() != curve {
		if priv, err = curve.GenerateKey(rand); err != nil {
			return nil, nil, err
		}
	}
	xs, err := ecdhShared(priv, xpeer)
	if err != nil {
		return nil, nil, bad
	}
	if g == X25519MLKEM768 {
		return append(kemCT, priv.PublicKey().Bytes()...), append(kemSS, xs...), nil
	}
	return priv.PublicKey().Bytes(), xs, nil
}
