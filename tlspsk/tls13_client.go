package tlspsk

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
)

// client13 is the TLS 1.3 client state machine (RFC 8446 2, PSK modes).
type client13 struct {
	c        *Conn
	versions []uint16

	identity string
	hash     crypto.Hash
	suites   []*cipherSuite
	groups   []CurveID
	modes    []uint8
	shares   []*clientKeyShare

	random, sessionID []byte
	early             []byte // early secret
	binderKey         []byte
	transcript        []byte
	hrr               *serverHello
	cookie            []byte
	tls12             *client12 // set when TLS 1.2 is offered too
	ch1               []byte    // the first ClientHello, for a TLS 1.2 answer
}

func (hs *client13) run() error {
	c, cfg := hs.c, hs.c.config
	identity, psk, err := cfg.clientKey()
	if err != nil {
		return err
	}
	hs.identity = identity
	hs.hash = cfg.pskHash()
	hs.suites = cfg.suites13()
	if len(hs.suites) == 0 {
		return fmt.Errorf("%w: no TLS 1.3 cipher suite in CipherSuites matches PSKHash %v", errConfig, hs.hash)
	}
	hs.groups = cfg.curves()
	if len(hs.groups) > 0 {
		hs.modes = append(hs.modes, pskModeDHE)
	}
	if cfg.AllowPSKOnly {
		hs.modes = append(hs.modes, pskModePlain)
	}
	if len(hs.modes) == 0 {
		return fmt.Errorf("%w: no key exchange group, and AllowPSKOnly is off", errConfig)
	}
	// A key share for the first group; with the hybrid first, also plain
	// X25519 so that a classical-only server needs no HelloRetryRequest.
	// The plain share reuses the hybrid's X25519 key pair: the server
	// completes at most one of the two, so the key pair is still used for
	// one exchange only, and one X25519 key generation (about 40 µs) per
	// handshake is saved. draft-ietf-tls-hybrid-design allows a client to
	// offer the same ECDH share in a hybrid and a standalone group, and
	// crypto/tls does the same.
	if len(hs.groups) > 0 {
		ks, err := cfg.clientKeyShare(hs.groups[0])
		if err != nil {
			return err
		}
		hs.shares = append(hs.shares, ks)
		if ks.group == X25519MLKEM768 && slices.Contains(hs.groups, X25519) {
			hs.shares = append(hs.shares, ks.x25519Alone())
		}
	}
	hs.random = make([]byte, 32)
	hs.sessionID = make([]byte, 32) // middlebox compatibility mode
	if _, err := io.ReadFull(cfg.rand(), hs.random); err != nil {
		return err
	}
	if _, err := io.ReadFull(cfg.rand(), hs.sessionID); err != nil {
		return err
	}
	if slices.Contains(hs.versions, VersionTLS12) {
		if hs.tls12, err = newClient12(c); err != nil {
			return err
		}
		hs.tls12.random, hs.tls12.sessionID, hs.tls12.offered13 = hs.random, hs.sessionID, true
	}
	hs.early = earlySecret(hs.hash, psk)
	hs.binderKey = binderKey(hs.hash, hs.early, true)
	defer wipe(hs.binderKey)
	defer wipe(hs.early)

	ch := hs.clientHello(nil)
	hs.ch1 = ch
	hs.transcript = append(hs.transcript, ch...)
	if err := c.writeHandshakeLocked(ch); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}

	sh, err := hs.readServerHello()
	if err != nil {
		return err
	}
	if sh.version == 0 { // TLS 1.2, checked by readServerHello
		hs.tls12.transcript = append(hs.tls12.transcript, hs.ch1...)
		return hs.tls12.finish(sh)
	}
	if sh.isHRR() {
		if err := hs.handleHRR(sh); err != nil {
			return err
		}
		if sh, err = hs.readServerHello(); err != nil {
			return err
		}
		if sh.isHRR() {
			return alertf(alertUnexpectedMessage, "second HelloRetryRequest")
		}
	}
	return hs.finish(sh)
}

// clientHello builds a ClientHello (with a cookie after a HelloRetryRequest)
// and fills in its binder over the transcript so far.
func (hs *client13) clientHello(cookie []byte) []byte {
	shares := make([]keyShare, len(hs.shares))
	for i, s := range hs.shares {
		shares[i] = keyShare{group: s.group, data: s.pub}
	}
	ids := make([]uint16, len(hs.suites))
	for i, s := range hs.suites {
		ids[i] = s.id
	}
	if hs.tls12 != nil {
		ids = append(ids, hs.tls12.suiteIDs()...)
	}
	raw, bl := marshalClientHello(&clientHelloParams{
		random: hs.random, sessionID: hs.sessionID, suites: ids, versions: hs.versions,
		groups: hs.groups, shares: shares, pskModes: hs.modes, identity: []byte(hs.identity),
		binderLen: hs.hash.Size(), cookie: cookie, offer12: hs.tls12 != nil,
	})
	th := hs.hash.New()
	th.Write(hs.transcript)
	th.Write(raw[:len(raw)-bl])
	binder := finishedMAC(hs.hash, hs.binderKey, th.Sum(nil))
	copy(raw[len(raw)-len(binder):], binder)
	return raw
}

func (hs *client13) readServerHello() (*serverHello, error) {
	msg, err := hs.c.readHandshakeMsg()
	if err != nil {
		var ae *AlertError
		if errors.As(err, &ae) && ae.Received {
			ae.answeredHello = true
		}
		return nil, err
	}
	if msg[0] != typeServerHello {
		return nil, alertf(alertUnexpectedMessage, "expected ServerHello")
	}
	sh, err := parseServerHello(msg)
	if err != nil {
		return nil, err
	}
	if sh.legacyVersion <= versionSSL30 {
		return nil, alertf(alertProtocolVersion, "ServerHello legacy_version is SSL 3.0 or older") // RFC 8446 D.5
	}
	if sh.version == 0 {
		// The server chose TLS 1.2 or older: client12 checks the rest.
		if hs.tls12 == nil {
			return nil, alertf(alertProtocolVersion, "the server negotiated TLS 1.2 or older, which we did not offer")
		}
		if hs.hrr != nil {
			return nil, alertf(alertIllegalParameter, "TLS 1.2 ServerHello after a HelloRetryRequest")
		}
		return sh, nil
	}
	if sh.version != VersionTLS13 || !slices.Contains(hs.versions, sh.version) || sh.legacyVersion != VersionTLS12 {
		return nil, alertf(alertIllegalParameter, "server selected a version we did not offer")
	}
	if !bytes.Equal(sh.sessionID, hs.sessionID) {
		return nil, alertf(alertIllegalParameter, "server did not echo our session id")
	}
	if sh.compression != 0 {
		return nil, alertf(alertIllegalParameter, "server selected compression")
	}
	if hs.suiteByID(sh.suite) == nil {
		return nil, alertf(alertIllegalParameter, "server selected a cipher suite we did not offer")
	}
	if hs.hrr != nil && sh.suite != hs.hrr.suite {
		return nil, alertf(alertIllegalParameter, "cipher suite changed after HelloRetryRequest")
	}
	return sh, nil
}

func (hs *client13) suiteByID(id uint16) *cipherSuite {
	for _, s := range hs.suites {
		if s.id == id {
			return s
		}
	}
	return nil
}

func (hs *client13) handleHRR(hrr *serverHello) error {
	c := hs.c
	hs.hrr = hrr
	if !hrr.hasKeyShare && hrr.cookie == nil {
		return alertf(alertIllegalParameter, "HelloRetryRequest would not change the ClientHello")
	}
	for _, e := range hrr.extensions {
		switch e.typ {
		case extSupportedVersions, extKeyShare, extCookie:
		default:
			return alertf(alertUnsupportedExtension, "unexpected extension in HelloRetryRequest")
		}
	}
	if hrr.hasKeyShare {
		g := hrr.selectedGroup
		if !slices.Contains(hs.groups, g) {
			return alertf(alertIllegalParameter, "HelloRetryRequest selected a group we did not offer")
		}
		for _, s := range hs.shares {
			if s.group == g {
				return alertf(alertIllegalParameter, "HelloRetryRequest selected a group we already sent")
			}
		}
		ks, err := c.config.clientKeyShare(g)
		if err != nil {
			return err
		}
		hs.shares = []*clientKeyShare{ks}
	}
	hs.transcript = append(messageHash(hashOf(hs.hash, hs.transcript)), hrr.raw...)
	ch2 := hs.clientHello(hrr.cookie)
	hs.transcript = append(hs.transcript, ch2...)
	if err := c.writeCCSLocked(); err != nil {
		return err
	}
	if err := c.writeHandshakeLocked(ch2); err != nil {
		return err
	}
	return c.flushLocked()
}

func (hs *client13) finish(sh *serverHello) error {
	c := hs.c
	suite := hs.suiteByID(sh.suite)
	h := suite.hash
	for _, e := range sh.extensions {
		switch e.typ {
		case extSupportedVersions, extKeyShare, extPreSharedKey:
		default:
			return alertf(alertUnsupportedExtension, "unexpected extension in ServerHello")
		}
	}
	switch {
	case sh.selectedIdentity < 0:
		return alertf(alertHandshakeFailure, "the server did not accept our PSK")
	case sh.selectedIdentity != 0:
		return alertf(alertIllegalParameter, "the server selected a PSK identity we did not offer")
	}
	var ecdhe []byte
	var group CurveID
	if sh.hasKeyShare {
		if !slices.Contains(hs.modes, pskModeDHE) {
			return alertf(alertIllegalParameter, "unexpected key_share")
		}
		var ks *clientKeyShare
		for _, s := range hs.shares {
			if s.group == sh.keyShare.group {
				ks = s
			}
		}
		if ks == nil {
			return alertf(alertIllegalParameter, "server key share for a group we did not send")
		}
		var err error
		if ecdhe, err = ks.sharedSecret(sh.keyShare.data); err != nil {
			return err
		}
		defer wipe(ecdhe)
		group = ks.group
	} else if !slices.Contains(hs.modes, pskModePlain) {
		return alertf(alertMissingExtension, "server sent no key share (psk_ke needs AllowPSKOnly)")
	}

	hs.transcript = append(hs.transcript, sh.raw...)
	hsSecret := nextSecret(h, hs.early, ecdhe)
	defer wipe(hsSecret)
	th := hashOf(h, hs.transcript)
	hl := newLabeler(h, hsSecret)
	cHS, sHS := hl.expand("c hs traffic", th, h.Size()), hl.expand("s hs traffic", th, h.Size())
	c.logKey("CLIENT_HANDSHAKE_TRAFFIC_SECRET", hs.random, cHS)
	c.logKey("SERVER_HANDSHAKE_TRAFFIC_SECRET", hs.random, sHS)
	if len(c.in.hs) != 0 {
		return alertf(alertUnexpectedMessage, "handshake data across a key change")
	}
	if err := c.in.hc.setKeys13(suite, sHS); err != nil {
		return err
	}
	if err := c.out.hc.setKeys13(suite, cHS); err != nil {
		return err
	}

	msg, err := c.readExpected(typeEncryptedExtensions, "EncryptedExtensions")
	if err != nil {
		return err
	}
	exts, err := parseEncryptedExtensions(msg)
	if err != nil {
		return err
	}
	for _, e := range exts {
		switch e.typ {
		case extPreSharedKey, extEarlyData, extSupportedVersions, extCookie, extPSKModes, extKeyShare, extSignatureAlgorithms:
			return alertf(alertUnsupportedExtension, "forbidden extension in EncryptedExtensions")
		}
	}
	hs.transcript = append(hs.transcript, msg...)

	msg, err = c.readExpected(typeFinished, "server Finished (a certificate is not acceptable in PSK mode)")
	if err != nil {
		return err
	}
	got, err := parseFinished(msg, h.Size())
	if err != nil {
		return err
	}
	want := finishedMAC(h, sHS, hashOf(h, hs.transcript))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return alertf(alertDecryptError, "server Finished does not verify")
	}
	hs.transcript = append(hs.transcript, msg...)
	if len(c.in.hs) != 0 {
		return alertf(alertUnexpectedMessage, "handshake data across a key change")
	}

	master := nextSecret(h, hsSecret, nil)
	defer wipe(master)
	th = hashOf(h, hs.transcript)
	ml := newLabeler(h, master)
	cAP, sAP := ml.expand("c ap traffic", th, h.Size()), ml.expand("s ap traffic", th, h.Size())
	exp := ml.expand("exp master", th, h.Size())
	c.logKey("CLIENT_TRAFFIC_SECRET_0", hs.random, cAP)
	c.logKey("SERVER_TRAFFIC_SECRET_0", hs.random, sAP)
	c.logKey("EXPORTER_SECRET", hs.random, exp)
	if err := c.in.hc.setKeys13(suite, sAP); err != nil {
		return err
	}

	if err := c.writeCCSLocked(); err != nil {
		return err
	}
	fin := marshalHandshake(typeFinished, finishedMAC(h, cHS, th))
	if err := c.writeHandshakeLocked(fin); err != nil {
		return err
	}
	if err := c.out.hc.setKeys13(suite, cAP); err != nil {
		return err
	}
	c.suite = suite
	c.setExporter(exp, nil)
	c.state = ConnectionState{Version: VersionTLS13, CipherSuite: suite.id, PSKIdentity: hs.identity,
		Group: group, HelloRetryRequest: hs.hrr != nil}
	return nil
}
