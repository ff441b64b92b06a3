package tlspsk

import (
	"crypto/subtle"
	"io"
	"slices"
)

// clientHandshake is the DTLS 1.2 PSK client (RFC 6347 4.2 with the PSK and
// ECDHE_PSK key exchanges of RFC 4279 and RFC 5489): flight 1 ClientHello;
// flight 3 the ClientHello again with the cookie of a HelloVerifyRequest;
// flight 5 ClientKeyExchange, change_cipher_spec and Finished (epoch 1);
// then the server's Finished. The caller holds c.in and c.out.
func (c *DTLSConn) clientHandshake(hs *dtlsHandshake) error {
	cfg := c.cfg
	identity, psk, err := cfg.clientKey()
	if err != nil {
		return err
	}
	suites := cfg.dtlsSuites(true)
	p := &dtlsHelloParams{random: make([]byte, 32)}
	for _, s := range suites {
		p.suites = append(p.suites, s.id)
		if s.ecdhe && p.groups == nil {
			p.groups = cfg.curves12()
		}
	}
	if cfg.ConnectionIDLength > 0 {
		// We ask the server for a CID to put in our records; we need none
		// in its records (our socket is ours alone).
		p.cid = []byte{}
	}
	if _, err := io.ReadFull(cfg.rand(), p.random); err != nil {
		return err
	}
	ch := dtlsMsg(typeClientHello, hs.sendSeq, marshalDTLSClientHello(p))
	hs.waiting = "the server's ServerHello"
	if err := hs.sendFlight(flightItem{msg: ch}); err != nil {
		return err
	}
	var m *hsMsg
	for cookies := 0; ; cookies++ {
		if m, err = hs.next(); err != nil {
			return err
		}
		if m.typ != typeHelloVerifyRequest {
			break
		}
		if cookies == dtlsMaxHelloVerify {
			return alertf(alertHandshakeFailure, "the server keeps answering with HelloVerifyRequest")
		}
		cookie, err := parseHelloVerifyRequest(m.body())
		if err != nil {
			return err
		}
		// RFC 6347 4.2.1: the same hello with the cookie added, the next
		// message_seq; it starts the transcript.
		p.cookie = cookie
		hs.sendSeq++
		ch = dtlsMsg(typeClientHello, hs.sendSeq, marshalDTLSClientHello(p))
		if err := hs.sendFlight(flightItem{msg: ch}); err != nil {
			return err
		}
	}
	if m.typ != typeServerHello || m.epoch != 0 {
		return alertf(alertUnexpectedMessage, "expected ServerHello")
	}
	hs.sendSeq++
	hs.add(ch, m.raw)
	sh, err := parseServerHello(dtlsToTLS(m.raw))
	if err != nil {
		return err
	}
	suite, ems, peerCID, err := c.checkServerHello(sh, suites, p.cid != nil)
	if err != nil {
		return err
	}
	h := suite.hash
	hs.waiting = "the server's ServerHelloDone"

	if m, err = hs.next(); err != nil {
		return err
	}
	var ske *serverKeyExchange12
	if m.typ == typeServerKeyExchange && m.epoch == 0 {
		if ske, err = parseServerKeyExchange12(dtlsToTLS(m.raw), suite.ecdhe); err != nil {
			return err
		}
		hs.add(m.raw)
		if m, err = hs.next(); err != nil {
			return err
		}
	} else if suite.ecdhe {
		return alertf(alertUnexpectedMessage, "expected ServerKeyExchange")
	}
	if m.typ != typeServerHelloDone || m.epoch != 0 {
		return alertf(alertUnexpectedMessage, "expected ServerHelloDone (a certificate is not acceptable in PSK mode)")
	}
	if err := parseEmptyMessage(dtlsToTLS(m.raw), typeServerHelloDone); err != nil {
		return err
	}
	hs.add(m.raw)

	cke := &clientKeyExchange12{identity: []byte(identity)}
	var z []byte
	var group CurveID
	if suite.ecdhe {
		if !slices.Contains(p.groups, ske.group) {
			return alertf(alertIllegalParameter, "server chose a group we did not offer")
		}
		ks, err := newClientKeyShare(ske.group, cfg.rand())
		if err != nil {
			return err
		}
		if z, err = ks.sharedSecret(ske.point); err != nil {
			return err
		}
		defer wipe(z)
		cke.point, group = ks.pub, ske.group
	}
	ckeMsg := tlsToDTLS(marshalClientKeyExchange12(cke, suite.ecdhe), hs.sendSeq)
	hs.sendSeq++
	hs.add(ckeMsg)
	pm := pskPremaster(z, psk)
	master := masterSecret12(h, pm, p.random, sh.random, hashOf(h, hs.transcript), ems)
	wipe(pm)
	defer wipe(master)
	c.logKey(p.random, master)
	if err := c.installKeys(suite, master, p.random, sh.random, peerCID); err != nil {
		return err
	}
	fin := tlsToDTLS(marshalHandshake(typeFinished, finished12(h, master, true, hashOf(h, hs.transcript))), hs.sendSeq)
	hs.sendSeq++
	hs.add(fin)
	hs.waiting = "the server's Finished"
	err = hs.sendFlight(flightItem{msg: ckeMsg}, flightItem{ccs: true}, flightItem{epoch: 1, msg: fin})
	c.out.epoch = 1
	if err != nil {
		return err
	}
	if err := hs.keysInstalled(); err != nil {
		return err
	}
	if m, err = hs.expect(typeFinished, "the server's Finished"); err != nil {
		return err
	}
	got, err := parseFinished(dtlsToTLS(m.raw), verifyDataLen)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, finished12(h, master, false, hashOf(h, hs.transcript))) != 1 {
		return alertf(alertDecryptError, "server Finished does not verify")
	}
	c.state = ConnectionState{Version: VersionDTLS12, CipherSuite: suite.id, PSKIdentity: identity, Group: group,
		ExtendedMasterSecret: ems}
	if ske != nil {
		c.state.IdentityHint = string(ske.hint)
	}
	c.setExporter(ems, master, p.random, sh.random)
	return nil
}

// checkServerHello validates a DTLS ServerHello: DTLS 1.2, no
// compression, a suite we offered, and only extensions we sent.
func (c *DTLSConn) checkServerHello(sh *serverHello, suites []*cipherSuite, offeredCID bool) (suite *cipherSuite, ems bool, peerCID []byte, err error) {
	if sh.legacyVersion != VersionDTLS12 {
		return nil, false, nil, alertf(alertProtocolVersion, "the server did not select DTLS 1.2")
	}
	if sh.compression != 0 {
		return nil, false, nil, alertf(alertIllegalParameter, "server selected compression")
	}
	for _, s := range suites {
		if s.id == sh.suite {
			suite = s
		}
	}
	if suite == nil {
		return nil, false, nil, alertf(alertIllegalParameter, "server selected a cipher suite we did not offer")
	}
	for _, e := range sh.extensions {
		switch e.typ {
		case extRenegotiationInfo:
			if v, ok := parseRenegotiationInfo(e.data); !ok || len(v) != 0 {
				return nil, false, nil, alertf(alertHandshakeFailure, "renegotiation_info is not empty")
			}
		case extExtendedMasterSecret:
			if len(e.data) != 0 {
				return nil, false, nil, alertf(alertDecodeError, "malformed extended_master_secret")
			}
			ems = true
		case extECPointFormats:
			if _, ok := parseECPointFormats(e.data); !ok {
				return nil, false, nil, alertf(alertDecodeError, "malformed ec_point_formats")
			}
		case extConnectionID:
			cid, ok := parseConnectionID(e.data)
			if !offeredCID {
				return nil, false, nil, alertf(alertUnsupportedExtension, "connection_id we did not offer")
			}
			if !ok {
				return nil, false, nil, alertf(alertDecodeError, "malformed connection_id")
			}
			if len(cid) > 0 {
				peerCID = cid
			}
		default:
			return nil, false, nil, alertf(alertUnsupportedExtension, "unexpected extension in ServerHello")
		}
	}
	return suite, ems, peerCID, nil
}

// installKeys derives the key block and sets the epoch-1 keys of both
// directions; peerCID is the CID our records carry (nil: none).
func (c *DTLSConn) installKeys(suite *cipherSuite, master, clientRandom, serverRandom, peerCID []byte) error {
	cKey, sKey, cIV, sIV := keys12(suite, master, clientRandom, serverRandom)
	defer wipe(cKey)
	defer wipe(sKey)
	defer wipe(cIV)
	defer wipe(sIV)
	rKey, rIV, wKey, wIV := sKey, sIV, cKey, cIV
	if !c.isClient {
		rKey, rIV, wKey, wIV = cKey, cIV, sKey, sIV
	}
	in, err := newDTLSCipher(suite, rKey, rIV)
	if err != nil {
		return err
	}
	out, err := newDTLSCipher(suite, wKey, wIV)
	if err != nil {
		return err
	}
	out.cid = peerCID
	c.in.k, c.out.k = in, out
	return nil
}

// setExporter keeps the exporter inputs (with the extended master secret
// only, RFC 7627 5.4).
func (c *DTLSConn) setExporter(ems bool, master, clientRandom, serverRandom []byte) {
	if !ems {
		return
	}
	c.exportMu.Lock()
	defer c.exportMu.Unlock()
	if c.closed.Load() {
		return
	}
	c.exporter = &exporter12{master: append([]byte(nil), master...), clientRandom: clientRandom, serverRandom: serverRandom}
}
