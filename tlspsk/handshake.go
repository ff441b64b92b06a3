package tlspsk

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// Version negotiation happens here, in one place, for both roles: TLS 1.3
// and TLS 1.2. A client whose Config allows both sends one ClientHello for
// both (supported_versions for 1.3, the TLS 1.2 suites beside the 1.3 ones);
// a server picks the highest version both allow.

// versionSSL30 is SSL 3.0's version number: a hello whose legacy_version
// is this or lower is refused at once (RFC 8446 D.5).
const versionSSL30 = 0x0300

// implemented reports whether this build can complete a handshake at v.
func implemented(v uint16) bool { return v == VersionTLS13 || v == VersionTLS12 }

// clientVersions lists the versions the client offers, highest first: those
// in MinVersion..MaxVersion for which the Config has a usable suite.
func (c *Conn) clientVersions() ([]uint16, error) {
	var vs []uint16
	cfg := c.config
	for v := cfg.maxVersion(); v >= cfg.minVersion() && v >= VersionTLS12; v-- {
		if !implemented(v) || v == VersionTLS13 && len(cfg.suites13()) == 0 || v == VersionTLS12 && len(cfg.suites12(true)) == 0 {
			continue
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		if cfg.maxVersion() >= VersionTLS13 && cfg.minVersion() <= VersionTLS13 {
			return nil, fmt.Errorf("no TLS 1.3 cipher suite in CipherSuites matches PSKHash %v, and no usable TLS 1.2 suite", cfg.pskHash())
		}
		return nil, errors.New("no usable cipher suite for the TLS versions in MinVersion..MaxVersion")
	}
	return vs, nil
}

// serverVersion picks the version for a ClientHello: from
// supported_versions, or TLS 1.2 for a client without it whose
// legacy_version is 1.2 (RFC 8446 4.2.1).
func (c *Conn) serverVersion(ch *clientHello) (uint16, error) {
	// RFC 8446 D.5: a legacy_version of SSL 3.0 or lower is refused even
	// when supported_versions offers TLS 1.3; no TLS 1.3 client sends it.
	if ch.legacyVersion <= versionSSL30 {
		return 0, alertf(alertProtocolVersion, "ClientHello legacy_version is SSL 3.0 or older")
	}
	offered := ch.versions
	if !ch.hasVersions && ch.legacyVersion >= VersionTLS12 {
		offered = []uint16{VersionTLS12}
	}
	for v := c.config.maxVersion(); v >= c.config.minVersion() && v >= VersionTLS12; v-- {
		if implemented(v) && slices.Contains(offered, v) {
			return v, nil
		}
	}
	if len(offered) == 0 {
		return 0, alertf(alertProtocolVersion, "client offers only TLS 1.1 or older")
	}
	return 0, alertf(alertProtocolVersion, "no shared TLS version")
}

// clientHandshake sends the ClientHello for the offered versions and
// continues with the state machine of the version the server picks.
func (c *Conn) clientHandshake() error {
	vs, err := c.clientVersions()
	if err != nil {
		return fmt.Errorf("%w: %v", errConfig, err)
	}
	if vs[0] == VersionTLS12 {
		hs, err := newClient12(c)
		if err != nil {
			return err
		}
		return hs.runAlone()
	}
	hs := &client13{c: c, versions: vs}
	return hs.run()
}

func (c *Conn) serverHandshake() error {
	msg, err := c.readHandshakeMsg()
	if err != nil {
		return err
	}
	if msg[0] != typeClientHello {
		return alertf(alertUnexpectedMessage, "expected ClientHello")
	}
	ch, err := parseClientHello(msg)
	if err != nil {
		return err
	}
	v, err := c.serverVersion(ch)
	if err != nil {
		return err
	}
	switch v {
	case VersionTLS13:
		hs := &server13{c: c, ch: ch}
		return hs.run()
	case VersionTLS12:
		hs := &server12{c: c, ch: ch}
		return hs.run()
	}
	return alertf(alertInternalError, "unhandled version")
}

// messageHash replaces ClientHello1 in the transcript after a
// HelloRetryRequest (RFC 8446 4.4.1).
func messageHash(h []byte) []byte {
	return append([]byte{typeMessageHash, 0, 0, byte(len(h))}, h...)
}

var keyLogMu sync.Mutex

// logKey writes one NSS key log line.
func (c *Conn) logKey(label string, clientRandom, secret []byte) {
	w := c.config.KeyLogWriter
	if w == nil {
		return
	}
	line := make([]byte, 0, len(label)+2+2*len(clientRandom)+2*len(secret)+1)
	line = append(line, label...)
	line = append(line, ' ')
	line = hex.AppendEncode(line, clientRandom)
	line = append(line, ' ')
	line = hex.AppendEncode(line, secret)
	line = append(line, '\n')
	keyLogMu.Lock()
	io.Writer.Write(w, line)
	keyLogMu.Unlock()
	wipe(line)
}

// readExpected reads the peer's next handshake message, which must be of
// type typ; what names it in the unexpected_message alert otherwise.
func (c *Conn) readExpected(typ uint8, what string) ([]byte, error) {
	msg, err := c.readHandshakeMsg()
	if err != nil {
		return nil, err
	}
	if msg[0] != typ {
		return nil, alertf(alertUnexpectedMessage, "expected "+what)
	}
	return msg, nil
}
