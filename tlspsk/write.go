package tlspsk

import "errors"

// The write side: sealing, flight buffering, alerts, KeyUpdate.

// writeRecordLocked protects and sends (or buffers) one record of at most
// maxPlaintext bytes. The caller holds c.out.
func (c *Conn) writeRecordLocked(typ uint8, data []byte) error {
	out := &c.out
	need := sealedLen(len(data))
	if out.buffering {
		// Seal straight into the flight buffer.
		if cap(out.pending)-len(out.pending) < need {
			grown := getBuf(2*len(out.pending) + need)
			grown = append(grown[:0], out.pending...)
			c.releasePendingLocked()
			out.pending = grown
		}
		rec := c.sealRecord(out.pending[len(out.pending):cap(out.pending)], typ, data)
		out.pending = out.pending[:len(out.pending)+len(rec)]
		return nil
	}
	held := out.buf != nil
	rec := c.sealRecord(c.sealBufLocked(need), typ, data)
	_, err := c.conn.Write(rec)
	if !held {
		c.releaseWriteBufLocked()
	}
	if err != nil {
		out.err = err
		return err
	}
	return nil
}

func (c *Conn) sealRecord(buf []byte, typ uint8, data []byte) []byte {
	if typ == recordChangeCipherSpec {
		return append(buf[:0], recordChangeCipherSpec, 3, 3, 0, 1, 1)
	}
	return c.out.hc.seal(buf, typ, data)
}

// sealBufLocked returns c.out.buf, taken from a pool or replaced by a
// bigger one if it has less than need bytes.
func (c *Conn) sealBufLocked(need int) []byte {
	out := &c.out
	if len(out.buf) < need {
		c.releaseWriteBufLocked()
		out.buf = getBuf(need)
	}
	return out.buf
}

// releaseWriteBufLocked gives the seal buffer (ciphertext only: sealing
// is in place) back to its pool.
func (c *Conn) releaseWriteBufLocked() {
	if c.out.buf != nil {
		putBuf(c.out.buf)
		c.out.buf = nil
	}
}

// releasePendingLocked gives the flight buffer back, cleared: it held
// handshake messages.
func (c *Conn) releasePendingLocked() {
	if c.out.pending != nil {
		b := c.out.pending[:cap(c.out.pending)]
		clear(b)
		putBuf(b)
		c.out.pending = nil
	}
}

func (c *Conn) flushLocked() error {
	out := &c.out
	if len(out.pending) == 0 {
		return nil
	}
	_, err := c.conn.Write(out.pending)
	c.releasePendingLocked()
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

// Write writes application data in records of up to 16 KiB, sealing up to
// writeBatch records into one buffer for each write(2).
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.out.Lock()
	defer c.unlockOut()
	if c.closed.Load() {
		c.wipeOutLocked() // Close could not: another call held c.out
	}
	if c.out.err != nil {
		return 0, c.out.err
	}
	defer c.releaseWriteBufLocked()
	hc := &c.out.hc
	n := 0
	for len(b) > 0 {
		if hc.seq >= hc.limit {
			if hc.version == VersionTLS12 {
				c.out.err = errTLS12Limit
				return n, c.out.err
			}
			if err := c.sendKeyUpdateLocked(false); err != nil {
				return n, err
			}
		}
		// Records in this batch: as many as b needs, up to writeBatch,
		// and none past the key's limit.
		recs := min((len(b)+maxPlaintext-1)/maxPlaintext, writeBatch)
		if left := hc.limit - hc.seq; left < uint64(recs) {
			recs = int(left)
		}
		size := min(len(b), recs*maxPlaintext)
		buf := c.sealBufLocked((recs-1)*maxSealedLen + sealedLen(size-(recs-1)*maxPlaintext))
		var ends [writeBatch]int // where each sealed record ends in buf
		off := 0
		for i := 0; i < recs; i++ {
			m := min(len(b)-i*maxPlaintext, maxPlaintext)
			p := b[i*maxPlaintext : i*maxPlaintext+m]
			off += len(hc.seal(buf[off:], recordApplicationData, p))
			ends[i] = off
		}
		w, err := c.conn.Write(buf[:off])
		if err != nil {
			c.out.err = err
			// Count the records that went out whole.
			for i := 0; i < recs && ends[i] <= w; i++ {
				n += min(len(b)-i*maxPlaintext, maxPlaintext)
			}
			return n, err
		}
		n += size
		b = b[size:]
	}
	return n, nil
}
