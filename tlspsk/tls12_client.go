package tlspsk

import (
	"bytes"
	"crypto/subtle"
	"io"
	"slices"
)

// client12 is the TLS 1.2 PSK client (RFC 5246 7.3 with RFC 4279 and
// RFC 5489 key exchange). It runs alone for a TLS 1.2-only Config, or takes
// over from client13 when the server answers a combined ClientHello with
// TLS 1.2.
type client12 struct {
	c          *Conn
	identity   string
	psk        []byte
	suites     []*cipherSuite
	groups     []CurveID
	random     []byte
	sessionID  []byte
	transcript []byte
	offered13  bool // the ClientHello also offered TLS 1.3
}

// newClient12 prepares the TLS 1.2 side of a client.
func newClient12(c *Conn) (*client12, error) {
	identity, psk, err := c.config.clientKey()
	if err != nil {
		return nil, err
	}
	return &client12{c: c, identity: identity, psk: psk, suites: c.config.suites12(true), groups: c.config.curves12()}, nil
}

// suiteIDs12 lists the TLS 1.2 suites for the ClientHello.
func (hs *client12) suiteIDs() []uint16 {
	ids := make([]uint16, len(hs.suites))
	for i, s := range hs.suites {
		ids[i] = s.id
	}
	return ids
}

// runAlone sends a TLS 1.2-only ClientHello and completes the handshake.
func (hs *client12) runAlone() error {
	c := hs.c
	hs.random = make([]byte, 32)
	if _, err := io.ReadFull(c.config.rand(), hs.random); err != nil {
		return err
	}
	ch, _ := marshalClientHello(&clientHelloParams{random: hs.random, suites: hs.suiteIDs(), groups: hs.groups,
		no13: true, offer12: true})
	hs.transcript = append(hs.transcript, ch...)
	if err := c.writeHandshakeLocked(ch); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	msg, err := c.readExpected(typeServerHello, "ServerHello")
	if err != nil {
		return err
	}
	sh, err := parseServerHello(msg)
	if err != nil {
		return err
	}
	if sh.version != 0 {
		return alertf(alertUnsupportedExtension, "supported_versions in answer to a TLS 1.2 ClientHello")
	}
	return hs.finish(sh)
}

// checkServerHello validates a TLS 1.2 ServerHello and returns the suite
// and whether the extended master secret is in use.
func (hs *client12) checkServerHello(sh *serverHello) (*cipherSuite, bool, error) {
	if sh.legacyVersion != VersionTLS12 {
		return nil, false, alertf(alertProtocolVersion, "the server selected TLS 1.1 or older")
	}
	if hs.offered13 && (bytes.Equal(sh.random[24:], downgradeTLS12) || bytes.Equal(sh.random[24:], downgradeTLS11)) {
		return nil, false, alertf(alertIllegalParameter, "TLS 1.3 downgrade sentinel in the server random: the connection was downgraded to TLS 1.2")
	}
	if sh.compression != 0 {
		return nil, false, alertf(alertIllegalParameter, "server selected compression")
	}
	if len(hs.sessionID) > 0 && bytes.Equal(sh.sessionID, hs.sessionID) {
		return nil, false, alertf(alertIllegalParameter, "server resumed a session we did not offer")
	}
	var suite *cipherSuite
	for _, s := range hs.suites {
		if s.id == sh.suite {
			suite = s
		}
	}
	if suite == nil {
		return nil, false, alertf(alertIllegalParameter, "server selected a cipher suite we did not offer")
	}
	ems := false
	for _, e := range sh.extensions {
		switch e.typ {
		case extRenegotiationInfo:
			if v, ok := parseRenegotiationInfo(e.data); !ok || len(v) != 0 {
				return nil, false, alertf(alertHandshakeFailure, "renegotiation_info is not empty")
			}
		case extExtendedMasterSecret:
			if len(e.data) != 0 {
				return nil, false, alertf(alertDecodeError, "malformed extended_master_secret")
			}
			ems = true
		case extECPointFormats:
			if _, ok := parseECPointFormats(e.data); !ok {
				return nil, false, alertf(alertDecodeError, "malformed ec_point_formats")
			}
		default:
			return nil, false, alertf(alertUnsupportedExtension, "unexpected extension in ServerHello")
		}
	}
	return suite, ems, nil
}

// finish runs the rest of the handshake after the ServerHello.
func (hs *client12) finish(sh *serverHello) error {
	c := hs.c
	c.in.tls12 = true
	suite, ems, err := hs.checkServerHello(sh)
	if err != nil {
		return err
	}
	h := suite.hash
	hs.transcript = append(hs.transcript, sh.raw...)

	msg, err := c.readHandshakeMsg()
	if err != nil {
		return err
	}
	var ske *serverKeyExchange12
	if msg[0] == typeServerKeyExchange {
		if ske, err = parseServerKeyExchange12(msg, suite.ecdhe); err != nil {
			return err
		}
		hs.transcript = append(hs.transcript, msg...)
		if msg, err = c.readHandshakeMsg(); err != nil {
			return err
		}
	} else if suite.ecdhe {
		return alertf(alertUnexpectedMessage, "expected ServerKeyExchange")
	}
	if msg[0] != typeServerHelloDone {
		return alertf(alertUnexpectedMessage, "expected ServerHelloDone (a certificate is not acceptable in PSK mode)")
	}
	if err := parseEmptyMessage(msg, typeServerHelloDone); err != nil {
		return err
	}
	hs.transcript = append(hs.transcript, msg...)

	cke := &clientKeyExchange12{identity: []byte(hs.identity)}
	var z []byte
	var group CurveID
	if suite.ecdhe {
		if !slices.Contains(hs.groups, ske.group) {
			return alertf(alertIllegalParameter, "server chose a group we did not offer")
		}
		ks, err := newClientKeyShare(ske.group, c.config.rand())
		if err != nil {
			return err
		}
		if z, err = ks.sharedSecret(ske.point); err != nil {
			return err
		}
		defer wipe(z)
		cke.point, group = ks.pub, ske.group
	}
	ckeRaw := marshalClientKeyExchange12(cke, suite.ecdhe)
	hs.transcript = append(hs.transcript, ckeRaw...)
	pm := pskPremaster(z, hs.psk)
	master := masterSecret12(h, pm, hs.random, sh.random, hashOf(h, hs.transcript), ems)
	wipe(pm)
	defer wipe(master)
	c.logKey("CLIENT_RANDOM", hs.random, master)
	cKey, sKey, cIV, sIV := keys12(suite, master, hs.random, sh.random)
	defer wipe(cIV)
	defer wipe(sIV)
	var next halfConn
	err = next.setKeys12(suite, sKey, sIV)
	wipe(sKey)
	if err != nil {
		wipe(cKey)
		return err
	}
	c.in.next = &next

	if err := c.writeHandshakeLocked(ckeRaw); err != nil {
		wipe(cKey)
		return err
	}
	if err := c.writeRecordLocked(recordChangeCipherSpec, nil); err != nil {
		wipe(cKey)
		return err
	}
	err = c.out.hc.setKeys12(suite, cKey, cIV)
	wipe(cKey)
	if err != nil {
		return err
	}
	fin := marshalHandshake(typeFinished, finished12(h, master, true, hashOf(h, hs.transcript)))
	hs.transcript = append(hs.transcript, fin...)
	if err := c.writeHandshakeLocked(fin); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}

	if msg, err = c.readHandshakeMsg(); err != nil {
		return err
	}
	if msg[0] != typeFinished || c.in.next != nil {
		return alertf(alertUnexpectedMessage, "expected change_cipher_spec and server Finished")
	}
	got, err := parseFinished(msg, verifyDataLen)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, finished12(h, master, false, hashOf(h, hs.transcript))) != 1 {
		return alertf(alertDecryptError, "server Finished does not verify")
	}
	if len(c.in.hs) != 0 {
		return alertf(alertUnexpectedMessage, "handshake data after Finished")
	}
	c.suite = suite
	if ems {
		c.setExporter(nil, &exporter12{master: bytes.Clone(master), clientRandom: hs.random, serverRandom: sh.random})
	}
	c.state = ConnectionState{Version: VersionTLS12, CipherSuite: suite.id, PSKIdentity: hs.identity, Group: group,
		ExtendedMasterSecret: ems}
	if ske != nil {
		c.state.IdentityHint = string(ske.hint)
	}
	return nil
}
