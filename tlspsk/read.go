package tlspsk

import (
	"errors"
	"io"
	"net"
)

// The read side: a buffered record reader, alerts, handshake message
// reassembly and post-handshake messages.

// fill makes at least n bytes available in c.in.buf[off:end]. After the
// handshake a drained buffer goes back to the pool before the wait for
// more bytes (see readIdle). The caller holds c.in and has used c.in.input.
func (c *Conn) fill(n int) error {
	in := &c.in
	if in.end-in.off >= n {
		return nil
	}
	if in.off == in.end && c.hsDone.Load() {
		c.releaseReadBuf()
		if ok, err := c.readIdle(); ok {
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
	}
	if n > len(in.buf) {
		// Small while handshaking, and for the wait with an empty buffer
		// when readIdle cannot wait without one (so a connection parked
		// in Read holds 4 KiB, not 72); big for a big record.
		size := smallBufSize
		if n > size {
			size = readBufSize
		}
		buf := getBuf(size)[:size]
		m := copy(buf, in.buf[in.off:in.end])
		c.releaseReadBuf()
		in.buf, in.off, in.end = buf, 0, m
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

// releaseReadBuf gives c.in.buf back to its pool. The caller holds c.in
// and has no use for its bytes (c.in.input is empty).
func (c *Conn) releaseReadBuf() {
	in := &c.in
	if in.buf != nil {
		putBuf(in.buf)
	}
	in.buf, in.off, in.end, in.input = nil, 0, 0, nil
}

// releaseIfDrained gives the read buffer back once every byte in it is
// used, after the handshake.
func (c *Conn) releaseIfDrained() {
	in := &c.in
	if in.buf != nil && in.off == in.end && len(in.input) == 0 && c.hsDone.Load() {
		c.releaseReadBuf()
	}
}

// recordBuffered reports whether a whole record is in c.in.buf, so that
// reading it makes no system call.
func (c *Conn) recordBuffered() bool {
	in := &c.in
	avail := in.end - in.off
	if avail < recordHeaderLen {
		return false
	}
	n := int(in.buf[in.off+3])<<8 | int(in.buf[in.off+4])
	return avail >= recordHeaderLen+n
}

// readRecord reads one record and dispatches it: application data to
// c.in.input, handshake bytes to c.in.hs. Alerts become errors. The caller
// holds c.in.
//
// With block false it reads only records already whole in c.in.buf and
// returns errNotBuffered (not sticky) when there is none.
func (c *Conn) readRecord(block bool) error {
	in := &c.in
	if in.err != nil {
		return in.err
	}
	for {
		if !block && !c.recordBuffered() {
			return errNotBuffered
		}
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

var (
	errSkip        = errors.New("skip")
	errNotBuffered = errors.New("no whole record buffered")
)

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
	in.big = recordHeaderLen+n > smallBufSize
	if err := c.fill(recordHeaderLen + n); err != nil {
		return err
	}
	rec := in.buf[in.off : in.off+recordHeaderLen+n]
	in.off += len(rec)
	handshaking := !c.hsDone.Load()
	// A handshake message split over records must not have records of
	// another type between its fragments (RFC 8446 5.1). TLS 1.3
	// protected records are checked once their type is known, below, and
	// alerts in handleAlert.
	midMessage := len(in.hs) != 0
	protected13 := typ == recordApplicationData && in.hc.encrypted() && in.hc.version != VersionTLS12

	// Records that bypass the record protection.
	switch {
	case midMessage && typ != recordHandshake && typ != recordAlert && !protected13:
		return alertf(alertUnexpectedMessage, "record between the fragments of a handshake message")
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
	case typ == recordAlert && handshaking && in.hc.encrypted() && in.hc.version != VersionTLS12:
		// TLS 1.3: a peer that cannot decrypt our flight answers in
		// plaintext. (TLS 1.2 alerts after a change_cipher_spec are
		// protected records of type alert: opened below.)
		return c.handleAlert(rec[recordHeaderLen:])
	case typ == recordApplicationData && !in.hc.encrypted():
		// Only refused 0-RTT data after a HelloRetryRequest is skipped
		// here: protected records, so never shorter than a tag and a
		// content type. An empty record would cost the skip budget
		// nothing and could be repeated without end (RFC 8446 5: no
		// application data before the handshake keys).
		if n > aeadTagLen && in.skipEarly >= n {
			in.skipEarly -= n
			return errSkip
		}
		return alertf(alertUnexpectedMessage, "application data before keys")
	}

	typ, data, err := in.hc.open(rec)
	if err != nil {
		// Refused 0-RTT data (RFC 8446 4.2.10), skipped within a byte
		// budget; never a record too short to be protected, nor one in
		// the middle of a handshake message.
		if n > aeadTagLen && in.skipEarly >= n && handshaking && !midMessage {
			in.skipEarly -= n
			return errSkip
		}
		return err
	}
	if len(data) == 0 && typ != recordApplicationData {
		return alertf(alertUnexpectedMessage, "empty record")
	}
	if midMessage && typ != recordHandshake && typ != recordAlert {
		return alertf(alertUnexpectedMessage, "record between the fragments of a handshake message")
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
	level, desc, ok := parseAlert(b)
	if !ok {
		return alertf(alertDecodeError, "malformed alert")
	}
	// Between the fragments of a handshake message (RFC 8446 5.1) only a
	// fatal alert is taken as it is: it ends the connection anyway, and
	// says why. A warning, user_canceled or close_notify there is a
	// protocol violation.
	if len(c.in.hs) != 0 && (level == 1 || desc == alertCloseNotify || desc == alertUserCanceled) {
		return alertf(alertUnexpectedMessage, "alert between the fragments of a handshake message")
	}
	// TLS 1.2 warnings (unrecognized_name, no_renegotiation, ...) are not
	// fatal (RFC 5246 7.2); a peer gets maxWarningAlerts of them. TLS 1.3
	// has no such level: every alert but these two ends the connection.
	if level == 1 && c.in.tls12 && desc != alertCloseNotify && desc != alertUserCanceled {
		if c.in.warnings++; c.in.warnings > maxWarningAlerts {
			return alertf(alertUnexpectedMessage, "too many warning alerts")
		}
		return errSkip
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
		if err := c.readRecord(true); err != nil {
			return nil, err
		}
		if len(in.input) > 0 {
			return nil, alertf(alertUnexpectedMessage, "application data during the handshake")
		}
	}
}

// Read reads application data: the plaintext of the next record, and of
// every whole record after it that is already buffered, as far as b has
// room.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	in := &c.in
	in.Lock()
	defer c.unlockIn()
	if c.closed.Load() {
		c.wipeInLocked() // Close could not: another call held c.in
		return 0, errClosed
	}
	for len(in.input) == 0 {
		if err := c.nextRecord(true); err != nil {
			return 0, err
		}
	}
	n := 0
	for {
		m := copy(b[n:], in.input)
		in.input = in.input[m:]
		n += m
		if n == len(b) {
			break
		}
		// An error here is sticky and the next call returns it; it has
		// already stopped writing and sent its alert.
		if err := c.nextRecord(false); err != nil {
			break
		}
	}
	c.releaseIfDrained()
	return n, nil
}

// nextRecord reads one record (application data goes to c.in.input) and
// handles post-handshake messages. With block false only a record already
// buffered is read. The caller holds c.in.
func (c *Conn) nextRecord(block bool) error {
	in := &c.in
	if err := c.readRecord(block); err != nil {
		if err != errNotBuffered {
			c.alertForReadError(err)
		}
		return err
	}
	if len(in.hs) > 0 {
		if err := c.postHandshake(); err != nil {
			in.err = err
			c.alertForReadError(err)
			return err
		}
	}
	return nil
}

// BuffersWriter is an io.Writer that can also take several buffers in one
// call, consuming from v what it wrote, as net.Buffers.WriteTo does. WriteTo
// uses it so that a wrapper around a socket (one that counts bytes, say)
// still gets the plaintext of several records as one writev.
type BuffersWriter interface {
	io.Writer
	WriteBuffers(v *net.Buffers) (int64, error)
}

// WriteTo writes the application data to w until the peer closes
// (close_notify, or EOF at a record boundary, gives a nil error) or an
// error occurs; it implements io.WriterTo, so io.Copy from a *Conn needs no
// buffer of its own. Records are decrypted in place in the read buffer and
// their plaintext written from there: the plaintext of every whole record
// already buffered goes out in one write (writev on a *net.TCPConn). Post-
// handshake messages, alerts and deadlines are handled as by Read; an
// error from w is returned as it is, and the plaintext w did not take
// stays for the next Read or WriteTo.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	in := &c.in
	in.Lock()
	defer c.unlockIn()
	if c.closed.Load() {
		c.wipeInLocked()
		return 0, errClosed
	}
	var total int64
	for {
		for len(in.input) == 0 {
			if err := c.nextRecord(true); err != nil {
				if err == io.EOF {
					err = nil
				}
				return total, err
			}
		}
		// Gather the plaintext of the buffered records.
		k := 0
		for {
			if len(in.input) > 0 {
				in.vec[k], in.input = in.input, nil
				k++
			}
			if k == len(in.vec) || c.nextRecord(false) != nil {
				break
			}
		}
		var n int64
		var err error
		if k == 1 {
			var m int
			m, err = w.Write(in.vec[0])
			if m < len(in.vec[0]) {
				in.input = in.vec[0][m:]
				if err == nil {
					err = io.ErrShortWrite
				}
			}
			n = int64(m)
		} else {
			in.bufs = in.vec[:k]
			if bw, ok := w.(BuffersWriter); ok {
				n, err = bw.WriteBuffers(&in.bufs)
			} else {
				n, err = in.bufs.WriteTo(w)
			}
			if len(in.bufs) > 0 {
				// Keep what w did not take, moved together in place
				// (every piece lies after the first in the buffer).
				rest := in.bufs[0]
				for _, p := range in.bufs[1:] {
					rest = append(rest, p...)
				}
				in.input = rest
				if err == nil {
					err = io.ErrShortWrite
				}
			}
			in.bufs = nil
		}
		clear(in.vec[:k])
		total += n
		if err != nil {
			return total, err
		}
		c.releaseIfDrained()
	}
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
		c.unlockOut()
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
	defer c.unlockOut()
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
				c.unlockOut()
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
