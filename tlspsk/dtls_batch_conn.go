package tlspsk

import (
	"net"
	"time"
)

// dtlsBatchLen is how many datagrams the DTLS paths move per system call.
const dtlsBatchLen = 32

// releaseHeldLocked gives back the buffers the last ReadBatch returned
// plaintext in. The caller holds c.in.
func (c *DTLSConn) releaseHeldLocked() {
	for i, b := range c.in.held {
		putDgram(b)
		c.in.held[i] = nil
	}
	c.in.held = c.in.held[:0]
}

// readyLocked reports whether a datagram is waiting that recv returns
// without blocking (a server conn's queue; a client's socket cannot be
// asked). The caller holds c.in.
func (c *DTLSConn) readyLocked() bool {
	return c.l != nil && len(c.queue) > 0
}

// ReadBatch waits for the next datagram and returns in ms[:n] its
// application data and that of the datagrams already waiting behind it
// (a server conn's queue), up to len(ms), without copying: ms[i].B points
// into the conn's pooled buffers and stays valid until the next Read or
// ReadBatch, which gives them back. An error comes with n == 0; data read
// before it is returned first.
func (c *DTLSConn) ReadBatch(ms []UDPMsg) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.in.Lock()
	defer c.in.Unlock()
	return c.readBatchLocked(ms)
}

// readBatchLocked is ReadBatch under c.in.
func (c *DTLSConn) readBatchLocked(ms []UDPMsg) (int, error) {
	c.releaseHeldLocked()
	n := 0
	for n < len(ms) && c.in.err == nil {
		if len(c.in.early) > 0 {
			ms[n] = UDPMsg{B: c.in.early[0]}
			c.in.early = c.in.early[1:]
			n++
			continue
		}
		if len(c.in.pend) == 0 {
			if c.in.buf != nil {
				if n > 0 {
					c.in.held = append(c.in.held, c.in.buf) // ms may point into it
				} else {
					putDgram(c.in.buf)
				}
				c.in.buf = nil
			}
			if n > 0 && !c.readyLocked() {
				break
			}
			d, from, err := c.recv(time.Time{})
			if err != nil {
				if n > 0 {
					break // the error comes again on the next call
				}
				if c.closed.Load() {
					err = c.closedErr()
				}
				return 0, err
			}
			c.in.buf, c.in.pend, c.in.from = d, d, from
		}
		h, rec, rest, ok := nextDTLSRecord(c.in.pend, len(c.ourCID))
		if !ok {
			c.in.pend = nil
			c.countDrop(&c.drops.malformed, dropMalformed)
			continue
		}
		c.in.pend = rest
		plain, err := c.openLocked(h, rec)
		if err != nil {
			c.in.err = err
			break
		}
		if plain != nil {
			ms[n] = UDPMsg{B: plain}
			n++
		}
	}
	if n == 0 && c.in.err != nil {
		return 0, c.in.err
	}
	return n, nil
}

// batchSocketLocked is the UDP socket WriteBatch sends on, or nil (then
// it writes one record at a time). The caller holds c.out.
func (c *DTLSConn) batchSocketLocked() *net.UDPConn {
	if c.l != nil {
		if c.l.udp != nil && c.peer.Load().ap.IsValid() {
			return c.l.udp
		}
		return nil
	}
	if uc, ok := c.nc.(*net.UDPConn); ok && c.nc != nil {
		return uc
	}
	if c.udp != nil && c.peer.Load().ap.IsValid() {
		return c.udp
	}
	return nil
}

// WriteBatch sends each ms[i].B as one datagram (one record) to the peer,
// sealing them into pooled buffers and sending them with as few system
// calls as the platform allows (ms[i].Addr is ignored). It returns how
// many were sent; with an error, the error is about ms[n] (the caller
// may drop it and send the rest).
func (c *DTLSConn) WriteBatch(ms []UDPMsg) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return 0, c.out.err
	}
	uc := c.batchSocketLocked()
	if uc == nil {
		return c.writeEachLocked(ms)
	}
	if c.out.batch == nil {
		c.out.batch = NewUDPBatch(uc, dtlsBatchLen, 0, true) // sends only: no arena
		if c.cfg.UDPOffload {
			c.out.batch.EnableGSO()
		}
		c.out.msgs = make([]UDPMsg, dtlsBatchLen)
	}
	b := c.out.batch
	peer := c.peer.Load().ap
	over := dtlsRecordHeaderLen + c.out.k.overhead()
	sent := 0
	for sent < len(ms) {
		k := min(len(ms)-sent, b.Len())
		var sealErr error
		for i := 0; i < k; i++ {
			p := ms[sent+i].B
			if len(p) > maxPlaintext {
				sealErr, k = errDTLSTooLong, i
				break
			}
			// Each record in a pooled datagram buffer (2 KiB for the
			// common size), given back once sent.
			rec, err := c.sealOutLocked(getDgram(len(p) + over)[:0], 1, recordApplicationData, p)
			if err != nil {
				putDgram(rec)
				c.out.err = err
				sealErr, k = err, i
				break
			}
			c.out.msgs[i] = UDPMsg{B: rec, Addr: peer}
		}
		m, err := b.Send(c.out.msgs[:k])
		for i := range c.out.msgs[:k] {
			putDgram(c.out.msgs[i].B)
			c.out.msgs[i] = UDPMsg{}
		}
		sent += m
		if err != nil {
			if c.closed.Load() {
				err = errDTLSClosed
			}
			return sent, err
		}
		if sealErr != nil {
			return sent, sealErr
		}
	}
	return sent, nil
}

// writeEachLocked is WriteBatch one record at a time.
func (c *DTLSConn) writeEachLocked(ms []UDPMsg) (int, error) {
	for i := range ms {
		p := ms[i].B
		if len(p) > maxPlaintext {
			return i, errDTLSTooLong
		}
		if need := len(p) + dtlsRecordHeaderLen + c.out.k.overhead(); cap(c.out.buf) < need {
			c.out.buf = make([]byte, 0, max(need, dgramSmall))
		}
		rec, err := c.sealOutLocked(c.out.buf[:0], 1, recordApplicationData, p)
		if err != nil {
			c.out.err = err
			return i, err
		}
		if err := c.send(rec); err != nil {
			if c.closed.Load() {
				return i, errDTLSClosed
			}
			return i, err
		}
	}
	return len(ms), nil
}

// OffloadStats reports WriteBatch's UDP segmentation offload (zero
// before the first WriteBatch on a UDP socket).
func (c *DTLSConn) OffloadStats() UDPOffloadStats {
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.batch == nil {
		return UDPOffloadStats{}
	}
	return c.out.batch.OffloadStats()
}

// OffloadStats reports the listener read loop's UDP offload (GRO).
func (l *DTLSListener) OffloadStats() UDPOffloadStats {
	if b := l.recvBatch.Load(); b != nil {
		return b.OffloadStats()
	}
	return UDPOffloadStats{}
}
