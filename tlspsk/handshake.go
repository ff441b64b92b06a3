package tlspsk

import (
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"sync"
)

// Version negotiation happens here, in one place, for both roles. Only TLS
// 1.3 is implemented; TLS 1.2 (issue 4) adds its branch below.

// implemented reports whether this build can complete a handshake at v.
func implemented(v uint16) bool { return v == VersionTLS13 }

// clientVersions lists the versions the client offers, highest first.
func (c *Conn) clientVersions() ([]uint16, error) {
	var vs []uint16
	for v := c.config.maxVersion(); v >= c.config.minVersion() && v >= VersionTLS12; v-- {
		if implemented(v) {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return nil, errors.New("tlspsk: no implemented TLS version in MinVersion..MaxVersion (TLS 1.2 is not implemented yet)")
	}
	return vs, nil
}

// serverVersion picks the version for a ClientHello.
func (c *Conn) serverVersion(ch *clientHello) (uint16, error) {
	if ch.hasVersions {
		for v := c.config.maxVersion(); v >= c.config.minVersion() && v >= VersionTLS12; v-- {
			if implemented(v) && slices.Contains(ch.versions, v) {
				return v, nil
			}
		}
		return 0, alertf(alertProtocolVersion, "no shared TLS version")
	}
	return 0, alertf(alertProtocolVersion, "client offers only TLS 1.2 or older; this build implements TLS 1.3 only")
}

// clientHandshake sends the ClientHello for the highest offered version and
// continues with the state machine of the version the server picks.
func (c *Conn) clientHandshake() error {
	vs, err := c.clientVersions()
	if err != nil {
		return errors.Join(errConfig, err)
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
