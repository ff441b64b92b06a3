package tlspsk

import (
	"bytes"
	"crypto/ecdh"
	"crypto/subtle"
	"io"
	"slices"
	"strconv"
)

// server12 is the TLS 1.2 PSK server (RFC 5246 7.3 with RFC 4279 and
// RFC 5489 key exchange).
type server12 struct {
	c          *Conn
	ch         *clientHello
	suite      *cipherSuite
	group      CurveID // ECDHE_PSK only
	transcript []byte
}

// negotiate picks the suite (ours first: ECDHE_PSK before plain PSK in the
// default order) and, for ECDHE_PSK, the group.
func (hs *server12) negotiate() error {
	cfg, ch := hs.c.config, hs.ch
	if !slices.Contains(ch.compression, 0) {
		return alertf(alertIllegalParameter, "null compression not offered")
	}
	for _, s := range cfg.suites12(false) {
		if !slices.Contains(ch.suites, s.id) {
			continue
		}
		if !s.ecdhe {
			hs.suite = s
			return nil
		}
		if ch.pointFormats && !ch.uncompressed {
			continue
		}
		for _, g := range cfg.curves12() {
			if slices.Contains(ch.groups, g) {
				hs.suite, hs.group = s, g
				return nil
			}
		}
	}
	return alertf(alertHandshakeFailure, "no shared TLS 1.2 PSK cipher suite")
}

func (hs *server12) run() error {
	c, cfg, ch := hs.c, hs.c.config, hs.ch
	c.in.tls12 = true
	if err := hs.negotiate(); err != nil {
		return err
	}
	if ch.hasReneg && len(ch.renegotiation) != 0 {
		return alertf(alertHandshakeFailure, "renegotiation_info is not empty in an initial handshake")
	}
	suite, h := hs.suite, hs.suite.hash
	hs.transcript = append(hs.transcript, ch.raw...)

	random := make([]byte, 32)
	if _, err := io.ReadFull(cfg.rand(), random); err != nil {
		return err
	}
	if cfg.maxVersion() >= VersionTLS13 {
		copy(random[24:], downgradeTLS12)
	}
	var exts []extension
	if ch.hasReneg || slices.Contains(ch.suites, scsvRenegotiation) {
		exts = append(exts, extension{extRenegotiationInfo, []byte{0}})
	}
	if ch.ems {
		exts = append(exts, extension{extExtendedMasterSecret, nil})
	}
	if suite.ecdhe && ch.pointFormats {
		exts = append(exts, extension{extECPointFormats, []byte{1, 0}})
	}
	sh := marshalServerHello12(random, nil, suite.id, exts)
	hs.transcript = append(hs.transcript, sh...)
	if err := c.writeHandshakeLocked(sh); err != nil {
		return err
	}

	var priv *ecdh.PrivateKey
	if suite.ecdhe || cfg.IdentityHint != "" {
		ske := &serverKeyExchange12{hint: []byte(cfg.IdentityHint)}
		if suite.ecdhe {
			var err error
			if priv, err = ecdhCurve(hs.group).GenerateKey(cfg.rand()); err != nil {
				return err
			}
			ske.group, ske.point = hs.group, priv.PublicKey().Bytes()
		}
		raw := marshalServerKeyExchange12(ske, suite.ecdhe)
		hs.transcript = append(hs.transcript, raw...)
		if err := c.writeHandshakeLocked(raw); err != nil {
			return err
		}
	}
	shd := marshalHandshake(typeServerHelloDone, nil)
	hs.transcript = append(hs.transcript, shd...)
	if err := c.writeHandshakeLocked(shd); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}

	msg, err := c.readExpected(typeClientKeyExchange, "ClientKeyExchange")
	if err != nil {
		return err
	}
	cke, err := parseClientKeyExchange12(msg, suite.ecdhe)
	if err != nil {
		return err
	}
	identity := string(cke.identity)
	psk, err := cfg.serverKey(identity)
	if err != nil {
		return alertf(alertInternalError, "key lookup failed")
	}
	if len(psk) == 0 {
		name := identity
		if len(name) > 64 {
			name = name[:64]
		}
		return alertf(alertUnknownPSKIdentity, "unknown PSK identity "+strconv.Quote(name))
	}
	var z []byte
	if suite.ecdhe {
		if z, err = ecdhShared(priv, cke.point); err != nil {
			return alertf(alertIllegalParameter, "bad client ECDHE point")
		}
		defer wipe(z)
	}
	hs.transcript = append(hs.transcript, msg...)
	pm := pskPremaster(z, psk)
	master := masterSecret12(h, pm, ch.random, random, hashOf(h, hs.transcript), ch.ems)
	wipe(pm)
	defer wipe(master)
	c.logKey("CLIENT_RANDOM", ch.random, master)
	cKey, sKey, cIV, sIV := keys12(suite, master, ch.random, random)
	defer wipe(cIV)
	defer wipe(sIV)
	var next halfConn
	err = next.setKeys12(suite, cKey, cIV)
	wipe(cKey)
	if err != nil {
		wipe(sKey)
		return err
	}
	c.in.next = &next

	if msg, err = c.readHandshakeMsg(); err != nil {
		wipe(sKey)
		return err
	}
	if msg[0] != typeFinished || c.in.next != nil {
		wipe(sKey)
		return alertf(alertUnexpectedMessage, "expected change_cipher_spec and client Finished")
	}
	got, err := parseFinished(msg, verifyDataLen)
	if err == nil && subtle.ConstantTimeCompare(got, finished12(h, master, true, hashOf(h, hs.transcript))) != 1 {
		err = alertf(alertDecryptError, "client Finished does not verify")
	}
	if err == nil && len(c.in.hs) != 0 {
		err = alertf(alertUnexpectedMessage, "handshake data after Finished")
	}
	if err != nil {
		wipe(sKey)
		return err
	}
	hs.transcript = append(hs.transcript, msg...)

	if err := c.writeRecordLocked(recordChangeCipherSpec, nil); err != nil {
		wipe(sKey)
		return err
	}
	err = c.out.hc.setKeys12(suite, sKey, sIV)
	wipe(sKey)
	if err != nil {
		return err
	}
	fin := marshalHandshake(typeFinished, finished12(h, master, false, hashOf(h, hs.transcript)))
	if err := c.writeHandshakeLocked(fin); err != nil {
		return err
	}
	c.suite = suite
	if ch.ems {
		c.setExporter(nil, &exporter12{master: bytes.Clone(master), clientRandom: ch.random, serverRandom: random})
	}
	c.state = ConnectionState{Version: VersionTLS12, CipherSuite: suite.id, PSKIdentity: identity, Group: hs.group,
		ExtendedMasterSecret: ch.ems, IdentityHint: cfg.IdentityHint}
	return nil
}
