package tlspsk

import (
	"bytes"
	"crypto/subtle"
	"io"
	"slices"
	"strconv"
)

// server13 is the TLS 1.3 server state machine (RFC 8446 2, PSK modes).
type server13 struct {
	c          *Conn
	ch         *clientHello
	suite      *cipherSuite
	group      CurveID // 0 for psk_ke
	share      []byte  // the client's share for group
	identity   string
	pskIndex   int
	early      []byte
	transcript []byte
	hrr        bool
}

// maxIdentities bounds the GetKey calls one ClientHello can cause.
const maxIdentities = 16

func (hs *server13) run() error {
	c, cfg := hs.c, hs.c.config
	if err := hs.negotiate(); err != nil {
		return err
	}
	if err := hs.checkPSK(); err != nil {
		return err
	}
	if hs.ch.earlyData {
		c.in.skipEarly = maxEarlyDataSkip // refuse 0-RTT: skip it
	}
	if hs.group != 0 && hs.share == nil {
		if err := hs.helloRetry(); err != nil {
			return err
		}
	}
	defer wipe(hs.early)
	ch := hs.ch
	h := hs.suite.hash
	hs.transcript = append(hs.transcript, ch.raw...)

	random := make([]byte, 32)
	if _, err := io.ReadFull(cfg.rand(), random); err != nil {
		return err
	}
	p := &serverHelloParams{random: random, sessionID: ch.sessionID, suite: hs.suite.id,
		withPSK: true, pskIndex: uint16(hs.pskIndex)}
	var ecdhe []byte
	if hs.group != 0 {
		pub, secret, err := serverKeyShare(hs.group, hs.share, cfg.rand(), cfg.serverX25519(hs.group))
		if err != nil {
			return err
		}
		ecdhe = secret
		defer wipe(ecdhe)
		p.keyShare = &keyShare{group: hs.group, data: pub}
	}
	sh := marshalServerHello(p)
	hs.transcript = append(hs.transcript, sh...)
	if err := c.writeHandshakeLocked(sh); err != nil {
		return err
	}
	if len(ch.sessionID) > 0 {
		if err := c.writeCCSLocked(); err != nil {
			return err
		}
	}

	hsSecret := nextSecret(h, hs.early, ecdhe)
	defer wipe(hsSecret)
	th := hashOf(h, hs.transcript)
	hl := newLabeler(h, hsSecret)
	cHS, sHS := hl.expand("c hs traffic", th, h.Size()), hl.expand("s hs traffic", th, h.Size())
	c.logKey("CLIENT_HANDSHAKE_TRAFFIC_SECRET", ch.random, cHS)
	c.logKey("SERVER_HANDSHAKE_TRAFFIC_SECRET", ch.random, sHS)
	if len(c.in.hs) != 0 {
		return alertf(alertUnexpectedMessage, "handshake data across a key change")
	}
	if err := c.in.hc.setKeys13(hs.suite, cHS); err != nil {
		return err
	}
	if err := c.out.hc.setKeys13(hs.suite, sHS); err != nil {
		return err
	}

	ee := marshalHandshake(typeEncryptedExtensions, []byte{0, 0})
	hs.transcript = append(hs.transcript, ee...)
	fin := marshalHandshake(typeFinished, finishedMAC(h, sHS, hashOf(h, hs.transcript)))
	hs.transcript = append(hs.transcript, fin...)
	if err := c.writeHandshakeLocked(ee); err != nil {
		return err
	}
	if err := c.writeHandshakeLocked(fin); err != nil {
		return err
	}

	master := nextSecret(h, hsSecret, nil)
	defer wipe(master)
	th = hashOf(h, hs.transcript)
	ml := newLabeler(h, master)
	cAP, sAP := ml.expand("c ap traffic", th, h.Size()), ml.expand("s ap traffic", th, h.Size())
	exp := ml.expand("exp master", th, h.Size())
	c.logKey("CLIENT_TRAFFIC_SECRET_0", ch.random, cAP)
	c.logKey("SERVER_TRAFFIC_SECRET_0", ch.random, sAP)
	c.logKey("EXPORTER_SECRET", ch.random, exp)
	if err := c.out.hc.setKeys13(hs.suite, sAP); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}

	msg, err := c.readExpected(typeFinished, "client Finished")
	if err != nil {
		return err
	}
	got, err := parseFinished(msg, h.Size())
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, finishedMAC(h, cHS, th)) != 1 {
		return alertf(alertDecryptError, "client Finished does not verify")
	}
	if len(c.in.hs) != 0 {
		return alertf(alertUnexpectedMessage, "handshake data across a key change")
	}
	c.in.skipEarly = 0
	if err := c.in.hc.setKeys13(hs.suite, cAP); err != nil {
		return err
	}
	c.suite = hs.suite
	c.setExporter(exp, nil)
	c.state = ConnectionState{Version: VersionTLS13, CipherSuite: hs.suite.id, PSKIdentity: hs.identity,
		Group: hs.group, HelloRetryRequest: hs.hrr}
	return nil
}

// negotiate picks the suite, the key exchange mode and the group.
func (hs *server13) negotiate() error {
	cfg, ch := hs.c.config, hs.ch
	if len(ch.compression) != 1 || ch.compression[0] != 0 {
		return alertf(alertIllegalParameter, "compression offered")
	}
	if hs.suite == nil {
		for _, s := range cfg.suites13() {
			if slices.Contains(ch.suites, s.id) {
				hs.suite = s
				break
			}
		}
		if hs.suite == nil {
			return alertf(alertHandshakeFailure, "no shared cipher suite for a "+cfg.pskHash().String()+" PSK")
		}
	}
	if ch.identities == nil {
		return alertf(alertHandshakeFailure, "the client offered no PSK (this server has no certificate)")
	}
	if ch.pskModes == nil {
		return alertf(alertMissingExtension, "psk_key_exchange_modes missing")
	}
	dhe := slices.Contains(ch.pskModes, pskModeDHE)
	plain := slices.Contains(ch.pskModes, pskModePlain) && cfg.AllowPSKOnly
	hs.group, hs.share = 0, nil
	if dhe {
		if !ch.hasKeyShare || ch.groups == nil {
			return alertf(alertMissingExtension, "psk_dhe_ke without key_share or supported_groups")
		}
		ours := cfg.curves()
		for _, g := range ours { // a group the client sent a share for
			if !slices.Contains(ch.groups, g) {
				continue
			}
			for _, k := range ch.keyShares {
				if k.group == g {
					hs.group, hs.share = g, k.data
					return nil
				}
			}
		}
		for _, g := range ours { // else one it supports: HelloRetryRequest
			if slices.Contains(ch.groups, g) {
				hs.group = g
				return nil
			}
		}
	}
	if plain {
		return nil
	}
	if dhe {
		return alertf(alertHandshakeFailure, "no shared key exchange group")
	}
	return alertf(alertHandshakeFailure, "the client offers only psk_ke, which needs AllowPSKOnly")
}

// checkPSK finds the first offered identity we know and verifies its binder.
func (hs *server13) checkPSK() error {
	cfg, ch := hs.c.config, hs.ch
	h := hs.suite.hash
	for i, id := range ch.identities {
		if i >= maxIdentities {
			break
		}
		key, err := cfg.serverKey(string(id.identity))
		if err != nil {
			return alertf(alertInternalError, "key lookup failed")
		}
		if len(key) == 0 {
			continue
		}
		early := earlySecret(h, key)
		bk := binderKey(h, early, true)
		th := h.New()
		th.Write(hs.transcript)
		th.Write(ch.truncated())
		want := finishedMAC(h, bk, th.Sum(nil))
		wipe(bk)
		if subtle.ConstantTimeCompare(want, ch.binders[i]) != 1 {
			wipe(early)
			return alertf(alertDecryptError, "PSK binder does not verify: the client's key differs")
		}
		wipe(hs.early)
		hs.early, hs.pskIndex, hs.identity = early, i, string(id.identity)
		return nil
	}
	name := string(ch.identities[0].identity)
	if len(name) > 64 {
		name = name[:64]
	}
	return alertf(alertUnknownPSKIdentity, "unknown PSK identity "+strconv.Quote(name))
}

// helloRetry asks for a key share for hs.group and reads ClientHello2.
func (hs *server13) helloRetry() error {
	c := hs.c
	ch1 := hs.ch
	h := hs.suite.hash
	hrr := marshalServerHello(&serverHelloParams{random: helloRetryRandom, sessionID: ch1.sessionID,
		suite: hs.suite.id, hrrGroup: hs.group})
	hs.transcript = append(messageHash(hashOf(h, ch1.raw)), hrr...)
	hs.hrr = true
	if err := c.writeHandshakeLocked(hrr); err != nil {
		return err
	}
	if len(ch1.sessionID) > 0 {
		if err := c.writeCCSLocked(); err != nil {
			return err
		}
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	msg, err := c.readExpected(typeClientHello, "ClientHello after HelloRetryRequest")
	if err != nil {
		return err
	}
	ch2, err := parseClientHello(msg)
	if err != nil {
		return err
	}
	if ch2.legacyVersion <= versionSSL30 {
		return alertf(alertProtocolVersion, "ClientHello2 legacy_version is SSL 3.0 or older") // RFC 8446 D.5
	}
	if v, err := c.serverVersion(ch2); err != nil || v != VersionTLS13 {
		return alertf(alertIllegalParameter, "version changed after HelloRetryRequest")
	}
	if !bytes.Equal(ch2.random, ch1.random) || !bytes.Equal(ch2.sessionID, ch1.sessionID) ||
		!slices.Contains(ch2.suites, hs.suite.id) || ch2.earlyData {
		return alertf(alertIllegalParameter, "ClientHello changed inconsistently after HelloRetryRequest")
	}
	if len(ch2.keyShares) != 1 || ch2.keyShares[0].group != hs.group {
		return alertf(alertIllegalParameter, "ClientHello2 lacks the requested key share")
	}
	c.in.skipEarly = 0
	group := hs.group
	hs.ch = ch2
	if err := hs.negotiate(); err != nil {
		return err
	}
	if hs.group != group || hs.share == nil {
		return alertf(alertIllegalParameter, "ClientHello2 lacks the requested key share")
	}
	return hs.checkPSK()
}
