package tlspsk

import "errors"

// The write side: sealing, flight buffering, alerts, KeyUpdate.

// writeRecordLocked protects and sends (or buffers) one record of at most
// maxPlaintext bytes. The caller holds c.out.
func (c *Conn) writeRecordLocked(typ uint8, data []byte) error {
	out := &c.out
	if need := recordHeaderLen + explicitNonceLen + len(data) + 1 + aeadTagLen; len(out.buf) < need {
		size := recordHeaderLen + explicitNonceLen + maxPlaintext + 1 + aeadTagLen
		if need <= handshakeBufSize {
			size = handshakeBufSize
		}
		out.buf = make([]byte, size)
	}
	var rec []byte
	if typ == recordChangeCipherSpec {
		rec = append(out.buf[:0], recordChangeCipherSpec, 3, 3, 0, 1, 1)
	} else {
		rec = out.hc.seal(out.buf, typ, data)
	}
	if out.buffering {
		out.pending = append(out.pending, rec...)
		return nil
	}
	if _, err := c.conn.Write(rec); err != nil {
		out.err = err
		return err
	}
	return nil
}

func (c *Conn) flushLocked() error {
	out := &c.out
	if len(out.pending) == 0 {
		return nil
	}
	_, err := c.conn.Write(out.pending)
	out.pending = out.pending[:0]
	if err != nil {
		out.err = err
	}
	return err
}

// writeHandshakeLocked sends a handshake message, fragmented as needed.
func (c *Conn) writeHandshakeLocked(msg []byte) error {
	for len(msg) > 0 {
		n := min(len(msg), maxPlaintext)
		if err := c.writeRecordLocked(recordHandshake, msg[:n]); err != nil {
			return err
		}
		msg = msg[n:]
	}
	return nil
}

// writeCCSLocked sends the middlebox-compatibility change_cipher_spec once.
func (c *Conn) writeCCSLocked() error {
	if c.out.wroteCCS {
		return nil
	}
	c.out.wroteCCS = true
	return c.writeRecordLocked(recordChangeCipherSpec, nil)
}

func (c *Conn) sendAlertLocked(a Alert) error {
	level := byte(2)
	if a == alertCloseNotify || a == alertUserCanceled || a == alertNoRenegotiation {
		level = 1
	}
	buffering := c.out.buffering
	c.out.buffering = false
	err := c.writeRecordLocked(recordAlert, []byte{level, byte(a)})
	c.out.buffering = buffering
	return err
}

// sendKeyUpdateLocked sends a KeyUpdate and switches to the next key.
func (c *Conn) sendKeyUpdateLocked(requestPeer bool) error {
	req := byte(0)
	if requestPeer {
		req = 1
	}
	if err := c.writeRecordLocked(recordHandshake, []byte{typeKeyUpdate, 0, 0, 1, req}); err != nil {
		return err
	}
	return c.out.hc.setKeys13(c.suite, nextTrafficSecret(c.suite.hash, c.out.hc.secret))
}

var errTLS12Limit = errors.New("tlspsk: TLS 1.2 AES-GCM key used for 2^24 records, which cannot be updated: reconnect")

// Write writes application data in records of up to 16 KiB.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return 0, c.out.err
	}
	n := 0
	for len(b) > 0 {
		if c.out.hc.seq >= c.out.hc.limit {
			if c.out.hc.version == VersionTLS12 {
				c.out.err = errTLS12Limit
				return n, c.out.err
			}
			if err := c.sendKeyUpdateLocked(false); err != nil {
				return n, err
			}
		}
		m := min(len(b), maxPlaintext)
		if err := c.writeRecordLocked(recordApplicationData, b[:m]); err != nil {
			return n, err
		}
		n += m
		b = b[m:]
	}
	return n, nil
}
