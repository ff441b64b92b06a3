package tlspsk

import (
	"errors"
	"io"
	"net"
)

// The read side: a buffered record reader, alerts, handshake message
// reassembly and post-handshake messages.

// fill makes at least n bytes available in c.in.buf[off:end].
func (c *Conn) fill(n int) error {
	in := &c.in
	if in.end-in.off >= n {
		return nil
	}
	if n > len(in.buf) {
		// Small while handshaking; full size with the first big record.
		size := handshakeBufSize
		if n > size {
			size = readBufSize
		}
		buf := make([]byte, size)
		in.end = copy(buf, in.buf[in.off:in.end])
		in.buf, in.off = buf, 0
	}
	if in.off+n > len(in.buf) {
		copy(in.buf, in.buf[in.off:in.end])
		in.end -= in.off
		in.off = 0
	}
	for in.end-in.off < n {
		m, err := c.conn.Read(in.buf[in.end:])
		in.end += m
		if in.end-in.off >= n {
			return nil
		}
		if err != nil {
			if err == io.EOF && in.end-in.off > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readRecord reads one record and dispatches it: application data to
// c.in.input, handshake bytes to c.in.hs. Alerts become errors. The caller
// holds c.in.
func (c *Conn) readRecord() error {
	in := &c.in
	if in.err != nil {
		return in.err
	}
	for {
		err := c.readOneRecord()
		if err == nil {
			return nil
		}
		if err == errSkip {
			continue
		}
		var ne net.Error
		if !(errors.As(err, &ne) && ne.Timeout()) {
			in.err = err
		}
		return err
	}
}

var errSkip = errors.New("skip")

func (c *Conn) readOneRecord() error {
	in := &c.in
	if err := c.fill(recordHeaderLen); err != nil {
		return err
	}
	hdr := in.buf[in.off : in.off+recordHeaderLen]
	typ := hdr[0]
	n := int(hdr[3])<<8 | int(hdr[4])
	switch typ {
	case recordChangeCipherSpec, recordAlert, recordHandshake, recordApplicationData:
	default:
		return alertf(alertUnexpectedMessage, "not a TLS record")
	}
	limit := maxPlaintext
	if in.hc.encrypted() && (typ == recordApplicationData || in.hc.version == VersionTLS12) {
		limit = maxCiphertext13
	}
	if n > limit {
		return alertf(alertRecordOverflow, "record too long")
	}
	if err := c.fill(recordHeaderLen + n); err != nil {
		return err
	}
	rec := in.buf[in.off : in.off+recordHeaderLen+n]
	in.off += len(rec)
	handshaking := !c.hsDone.Load()

	// Records that bypass the record protection.
	switch {
	case typ == recordChangeCipherSpec && in.tls12:
		// TLS 1.2: installs the read keys the handshake prepared.
		if !handshaking || in.next == nil || n != 1 || rec[5] != 1 {
			return alertf(alertUnexpectedMessage, "unexpected change_cipher_spec")
		}
		if len(in.hs) != 0 {
			return alertf(alertUnexpectedMessage, "handshake data across a key change")
		}
		in.hc, in.next = *in.next, nil
		return errSkip
	case typ == recordChangeCipherSpec:
		if !handshaking || n != 1 || rec[5] != 1 || in.ccs >= maxCCSInHandshake {
			return alertf(alertUnexpectedMessage, "unexpected change_cipher_spec")
		}
		in.ccs++
		return errSkip
	case typ == recordAlert && handshaking && in.hc.encrypted():
		// A peer that cannot decrypt our flight answers in plaintext.
		return c.handleAlert(rec[recordHeaderLen:])
	case typ == recordApplicationData && !in.hc.encrypted():
		if in.skipEarly >= n {
			in.skipEarly -= n
			return errSkip
		}
		return alertf(alertUnexpectedMessage, "application data before keys")
	}

	typ, data, err := in.hc.open(rec)
	if err != nil {
		if in.skipEarly >= n && handshaking {
			in.skipEarly -= n // refused 0-RTT data (RFC 8446 4.2.10)
			return errSkip
		}
		return err
	}
	if len(data) == 0 && typ != recordApplicationData {
		return alertf(alertUnexpectedMessage, "empty record")
	}
	switch typ {
	case recordAlert:
		return c.handleAlert(data)
	case recordHandshake:
		in.empty = 0
		if len(in.hs)+len(data) > maxHandshakeMsg+4 {
			return alertf(alertUnexpectedMessage, "handshake message too long")
		}
		in.hs = append(in.hs, data...)
		return nil
	case recordApplicationData:
		if handshaking {
			return alertf(alertUnexpectedMessage, "application data during the handshake")
		}
		if len(data) == 0 {
			in.empty++
			if in.empty > maxEmptyRecords {
				return alertf(alertUnexpectedMessage, "too many empty records")
			}
			return errSkip
		}
		in.empty = 0
		in.input = data
		return nil
	}
	return alertf(alertUnexpectedMessage, "unexpected record type")
}

func (c *Conn) handleAlert(b []byte) error {
	_, desc, ok := parseAlert(b)
	if !ok {
		return alertf(alertDecodeError, "malformed alert")
	}
	switch desc {
	case alertCloseNotify:
		if !c.hsDone.Load() {
			return &AlertError{Alert: desc, Received: true}
		}
		return io.EOF
	case alertUserCanceled:
		return errSkip // a close_notify follows
	}
	return &AlertError{Alert: desc, Received: true}
}

// readHandshakeMsg returns the next whole handshake message.
func (c *Conn) readHandshakeMsg() ([]byte, error) {
	in := &c.in
	for {
		if len(in.hs) >= 4 {
			n := int(in.hs[1])<<16 | int(in.hs[2])<<8 | int(in.hs[3])
			if n > maxHandshakeMsg {
				return nil, alertf(alertUnexpectedMessage, "handshake message too long")
			}
			if len(in.hs) >= 4+n {
				msg := append([]byte(nil), in.hs[:4+n]...)
				in.hs = in.hs[4+n:]
				if len(in.hs) == 0 {
					in.hs = in.hs[:0:0]
				}
				return msg, nil
			}
		}
		if err := c.readRecord(); err != nil {
			return nil, err
		}
		if len(in.input) > 0 {
			return nil, alertf(alertUnexpectedMessage, "application data during the handshake")
		}
	}
}

// Read reads application data.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	c.in.Lock()
	defer c.in.Unlock()
	for len(c.in.input) == 0 {
		if err := c.readRecord(); err != nil {
			c.alertForReadError(err)
			return 0, err
		}
		if len(c.in.hs) > 0 {
			if err := c.postHandshake(); err != nil {
				c.in.err = err
				c.alertForReadError(err)
				return 0, err
			}
		}
	}
	n := copy(b, c.in.input)
	c.in.input = c.in.input[n:]
	return n, nil
}

// alertForReadError tells the peer why we stop reading, and stops writing
// after any fatal alert.
func (c *Conn) alertForReadError(err error) {
	var ae *AlertError
	if errors.As(err, &ae) {
		c.out.Lock()
		if c.out.err == nil {
			if !ae.Received {
				c.sendAlertLocked(ae.Alert)
			}
			c.out.err = err
		}
		c.out.Unlock()
	}
}

// refuseRenegotiation answers a TLS 1.2 HelloRequest (to a client) or
// ClientHello (to a server) after the handshake with a no_renegotiation
// warning (RFC 5246 7.2.2, RFC 5746 4.2 and 4.4); anything else is fatal.
func (c *Conn) refuseRenegotiation(msg []byte) error {
	switch {
	case c.isClient && msg[0] == typeHelloRequest:
		if err := parseEmptyMessage(msg, typeHelloRequest); err != nil {
			return err
		}
	case !c.isClient && msg[0] == typeClientHello:
	default:
		return alertf(alertUnexpectedMessage, "unexpected handshake message after the TLS 1.2 handshake")
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err == nil {
		if err := c.sendAlertLocked(alertNoRenegotiation); err != nil {
			c.out.err = err
		}
	}
	return nil
}

// postHandshake handles NewSessionTicket (ignored: no resumption) and
// KeyUpdate messages after the handshake.
func (c *Conn) postHandshake() error {
	in := &c.in
	for len(in.hs) >= 4 {
		n := int(in.hs[1])<<16 | int(in.hs[2])<<8 | int(in.hs[3])
		if n > maxHandshakeMsg {
			return alertf(alertUnexpectedMessage, "handshake message too long")
		}
		if len(in.hs) < 4+n {
			return nil
		}
		msg := in.hs[:4+n]
		in.hs = in.hs[4+n:]
		if c.state.Version == VersionTLS12 {
			if err := c.refuseRenegotiation(msg); err != nil {
				return err
			}
			continue
		}
		switch msg[0] {
		case typeNewSessionTicket:
			if c.isClient {
				continue
			}
		case typeKeyUpdate:
			req, err := parseKeyUpdate(msg)
			if err != nil {
				return err
			}
			if len(in.hs) != 0 {
				return alertf(alertUnexpectedMessage, "KeyUpdate not at a record boundary")
			}
			if err := in.hc.setKeys13(c.suite, nextTrafficSecret(c.suite.hash, in.hc.secret)); err != nil {
				return err
			}
			if req {
				c.out.Lock()
				if c.out.err == nil {
					if err := c.sendKeyUpdateLocked(false); err != nil {
						c.out.err = err
					}
				}
				c.out.Unlock()
			}
			continue
		}
		return alertf(alertUnexpectedMessage, "unexpected post-handshake message")
	}
	if len(in.hs) == 0 {
		in.hs = in.hs[:0:0]
	}
	return nil
}
