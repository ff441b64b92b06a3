package tlspsk

import (
	"crypto/ecdh"
	"crypto/subtle"
	"io"
	"slices"
	"strconv"
)

// serverHandshake is the DTLS 1.2 PSK server after the cookie exchange,
// which the listener did statelessly (dtls_listener.go): the first
// datagram in the queue holds a ClientHello with a valid cookie. Flight 4
// is ServerHello, ServerKeyExchange (for ECDHE_PSK or an identity hint)
// and ServerHelloDone; flight 6 change_cipher_spec and Finished, after the
// client's flight 5. The caller holds c.in and c.out.
func (c *DTLSConn) serverHandshake(hs *dtlsHandshake) error {
	cfg := c.cfg
	d, _, err := c.recv(hs.deadline)
	if err == errRecvTimer {
		return hs.timeoutErr()
	}
	if err != nil {
		return err
	}
	defer putDgram(d)
	h, rec, _, ok := nextDTLSRecord(d, 0)
	if !ok || h.epoch != 0 || h.typ != recordHandshake {
		return alertf(alertUnexpectedMessage, "expected ClientHello")
	}
	f, _, ok := nextFragment(rec[dtlsRecordHeaderLen:])
	if !ok || f.typ != typeClientHello || f.off != 0 || len(f.data) != f.length {
		return alertf(alertDecodeError, "malformed ClientHello")
	}
	ch, _, err := parseDTLSClientHello(f.data)
	if err != nil {
		return err
	}
	chMsg := dtlsMsg(typeClientHello, f.seq, f.data)
	clear(d)
	// RFC 6347 4.2.1-4.2.2: our first message and record after the cookie
	// exchange take the ClientHello's message_seq and record sequence
	// number (the errata reading and the text both hold).
	hs.recvSeq, hs.sendSeq = f.seq+1, f.seq
	c.out.seq[0] = h.seq
	hs.add(chMsg)

	if ch.legacyVersion > VersionDTLS12 || ch.legacyVersion>>8 != 0xFE {
		return alertf(alertProtocolVersion, "client offers only DTLS 1.0")
	}
	suite, group, err := c.negotiateDTLS(ch)
	if err != nil {
		return err
	}
	if ch.hasReneg && len(ch.renegotiation) != 0 {
		return alertf(alertHandshakeFailure, "renegotiation_info is not empty in an initial handshake")
	}
	h2 := suite.hash

	random := make([]byte, 32)
	if _, err := io.ReadFull(cfg.rand(), random); err != nil {
		return err
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
	var peerCID []byte
	if cfg.ConnectionIDLength > 0 {
		for _, e := range ch.extensions {
			if e.typ != extConnectionID {
				continue
			}
			cid, ok := parseConnectionID(e.data)
			if !ok {
				return alertf(alertDecodeError, "malformed connection_id")
			}
			if len(cid) > 0 {
				peerCID = cid
			}
			if err := c.l.issueCID(c); err != nil {
				return err
			}
			exts = append(exts, extension{extConnectionID, append([]byte{byte(len(c.ourCID))}, c.ourCID...)})
		}
	}
	shTLS := marshalServerHello12(random, nil, suite.id, exts)
	shTLS[4], shTLS[5] = byte(VersionDTLS12>>8), byte(VersionDTLS12&0xff)
	flight := []flightItem{{msg: tlsToDTLS(shTLS, hs.sendSeq)}}
	hs.sendSeq++

	var priv *ecdh.PrivateKey
	if suite.ecdhe || cfg.IdentityHint != "" {
		ske := &serverKeyExchange12{hint: []byte(cfg.IdentityHint)}
		if suite.ecdhe {
			if priv, err = ecdhCurve(group).GenerateKey(cfg.rand()); err != nil {
				return err
			}
			ske.group, ske.point = group, priv.PublicKey().Bytes()
		}
		flight = append(flight, flightItem{msg: tlsToDTLS(marshalServerKeyExchange12(ske, suite.ecdhe), hs.sendSeq)})
		hs.sendSeq++
	}
	flight = append(flight, flightItem{msg: dtlsMsg(typeServerHelloDone, hs.sendSeq, nil)})
	hs.sendSeq++
	for _, it := range flight {
		hs.add(it.msg)
	}
	hs.waiting = "the client's ClientKeyExchange"
	if err := hs.sendFlight(flight...); err != nil {
		return err
	}

	m, err := hs.expect(typeClientKeyExchange, "ClientKeyExchange")
	if err != nil {
		return err
	}
	cke, err := parseClientKeyExchange12(dtlsToTLS(m.raw), suite.ecdhe)
	if err != nil {
		return err
	}
	c.identity = string(cke.identity)
	psk, err := cfg.serverKey(c.identity)
	if err != nil {
		return alertf(alertInternalError, "key lookup failed")
	}
	if len(psk) == 0 {
		name := c.identity
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
	hs.add(m.raw)
	pm := pskPremaster(z, psk)
	master := masterSecret12(h2, pm, ch.random, random, hashOf(h2, hs.transcript), ch.ems)
	wipe(pm)
	defer wipe(master)
	c.logKey(ch.random, master)
	if err := c.installKeys(suite, master, ch.random, random, peerCID); err != nil {
		return err
	}
	hs.waiting = "the client's Finished"
	if err := hs.keysInstalled(); err != nil {
		return err
	}
	if m, err = hs.expect(typeFinished, "the client's Finished"); err != nil {
		return err
	}
	got, err := parseFinished(dtlsToTLS(m.raw), verifyDataLen)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, finished12(h2, master, true, hashOf(h2, hs.transcript))) != 1 {
		return alertf(alertDecryptError, "client Finished does not verify: the client's PSK differs from ours")
	}
	hs.add(m.raw)
	fin := tlsToDTLS(marshalHandshake(typeFinished, finished12(h2, master, false, hashOf(h2, hs.transcript))), hs.sendSeq)
	hs.sendSeq++
	err = hs.sendFlight(flightItem{ccs: true}, flightItem{epoch: 1, msg: fin})
	c.out.epoch = 1
	if err != nil {
		return err
	}
	c.finalMu.Lock()
	c.final = fin
	c.finalMu.Unlock()
	c.state = ConnectionState{Version: VersionDTLS12, CipherSuite: suite.id, PSKIdentity: c.identity, Group: group,
		ExtendedMasterSecret: ch.ems, IdentityHint: cfg.IdentityHint}
	c.setExporter(ch.ems, master, ch.random, random)
	return nil
}

// negotiateDTLS picks the suite (ours first: ECDHE_PSK before plain PSK in
// the default order) and, for ECDHE_PSK, the group.
func (c *DTLSConn) negotiateDTLS(ch *clientHello) (*cipherSuite, CurveID, error) {
	cfg := c.cfg
	if !slices.Contains(ch.compression, 0) {
		return nil, 0, alertf(alertIllegalParameter, "null compression not offered")
	}
	for _, s := range cfg.dtlsSuites(false) {
		if !slices.Contains(ch.suites, s.id) {
			continue
		}
		if !s.ecdhe {
			return s, 0, nil
		}
		if ch.pointFormats && !ch.uncompressed {
			continue
		}
		for _, g := range cfg.curves12() {
			if slices.Contains(ch.groups, g) {
				return s, g, nil
			}
		}
	}
	return nil, 0, alertf(alertHandshakeFailure, "no shared DTLS PSK cipher suite")
}
