package tlspsk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// The DTLS handshake's reliability layer (RFC 6347 4.2.4): each side sends
// its messages as a flight and waits for the peer's next flight; a timer
// (RetransmitInterval, doubling up to 60s) retransmits the last flight
// when nothing complete arrives, and so does receiving the peer's previous
// flight again (its retransmission means ours was lost). Messages are
// fragmented to the MTU on the way out and reassembled on the way in
// (4.2.3), with bounds: a message is at most dtlsMaxHandshakeMsg bytes and
// only the next dtlsReasmSlots messages are buffered. The whole handshake
// ends at HandshakeTimeout with an error saying what was missing.

const (
	dtlsMaxHandshakeMsg = 8 << 10
	dtlsReasmSlots      = 4
	// dtlsMaxEarly bounds the epoch-1 records kept while the keys to open
	// them are not derived yet (a Finished overtaking its
	// ClientKeyExchange), and the application data kept while the
	// handshake ends.
	dtlsMaxEarly = 8
	// dtlsMaxHelloVerify bounds the HelloVerifyRequests a client answers
	// in one handshake.
	dtlsMaxHelloVerify = 4
)

// hsMsg is a reassembled handshake message in its unfragmented DTLS form
// (as it is hashed into the transcript) and the epoch it came in.
type hsMsg struct {
	typ   uint8
	epoch uint16
	raw   []byte
}

func (m *hsMsg) body() []byte { return m.raw[dtlsHandshakeHeaderLen:] }

// flightItem is one message of our current flight: a handshake message
// (unfragmented DTLS form) or a change_cipher_spec, and its epoch.
type flightItem struct {
	ccs   bool
	epoch uint16
	msg   []byte
}

// reasm collects the fragments of one message.
type reasm struct {
	typ    uint8
	epoch  uint16
	length int
	body   []byte
	have   []byte // one bit per byte received
	filled int
}

func (r *reasm) add(off int, data []byte) {
	copy(r.body[off:], data)
	for i := off; i < off+len(data); i++ {
		if r.have[i>>3]&(1<<(i&7)) == 0 {
			r.have[i>>3] |= 1 << (i & 7)
			r.filled++
		}
	}
}

type dtlsHandshake struct {
	c          *DTLSConn
	sendSeq    uint16 // message_seq of our next message
	recvSeq    uint16 // message_seq of the peer's next message
	flight     []flightItem
	slots      [dtlsReasmSlots]*reasm
	transcript []byte

	timeout    time.Duration
	deadline   time.Time
	rto        time.Duration
	nextTimer  time.Time
	sends      int // transmissions of the current flight
	lastResend time.Time
	peerResent bool
	early      [][]byte // epoch-1 records received before the read keys
	keysReady  bool     // read keys set: an epoch-1 handshake record that fails to open is a wrong key
	waiting    string   // what the handshake waits for, for the timeout error
	lastErr    error    // a socket error seen while waiting (e.g. connection refused)
	out, frag  []byte
}

// release clears the handshake's buffers (they held handshake messages).
func (hs *dtlsHandshake) release() {
	clear(hs.transcript)
	clear(hs.out)
	clear(hs.frag)
	for i := range hs.slots {
		hs.slots[i] = nil
	}
	hs.early = nil
}

// add appends messages to the transcript.
func (hs *dtlsHandshake) add(msgs ...[]byte) {
	for _, m := range msgs {
		hs.transcript = append(hs.transcript, m...)
	}
}

// sendFlight makes items the current flight and sends it.
func (hs *dtlsHandshake) sendFlight(items ...flightItem) error {
	hs.flight = items
	hs.rto = hs.c.cfg.retransmitInterval()
	hs.sends = 0
	return hs.transmit()
}

// transmit sends the current flight: messages packed into datagrams of at
// most MTU bytes, fragmented where they do not fit, each record with a new
// sequence number (RFC 6347 4.2.4: retransmissions are new records). A
// ClientHello is never fragmented: a stateless server cannot reassemble
// it.
func (hs *dtlsHandshake) transmit() error {
	c := hs.c
	mtu := c.cfg.mtu()
	hs.sends++
	hs.nextTimer = time.Now().Add(hs.rto)
	dg := hs.out[:0]
	var werr error
	flush := func() {
		if len(dg) > 0 {
			if err := c.send(dg); err != nil && werr == nil {
				werr = err
			}
			dg = dg[:0]
		}
	}
	for _, it := range hs.flight {
		over := dtlsRecordHeaderLen
		if it.epoch == 1 {
			over += c.out.k.overhead()
		}
		var err error
		if it.ccs {
			if len(dg)+over+1 > mtu {
				flush()
			}
			if dg, err = c.sealOutLocked(dg, it.epoch, recordChangeCipherSpec, []byte{1}); err != nil {
				return err
			}
			continue
		}
		typ, seq := it.msg[0], binary.BigEndian.Uint16(it.msg[4:])
		body := it.msg[dtlsHandshakeHeaderLen:]
		for off := 0; ; {
			room := mtu - len(dg) - over - dtlsHandshakeHeaderLen
			if len(dg) > 0 && room < min(len(body)-off, 64) {
				flush()
				continue
			}
			n := min(max(room, 1), len(body)-off)
			if typ == typeClientHello {
				n = len(body)
			}
			hs.frag = append(hs.frag[:0], make([]byte, dtlsHandshakeHeaderLen)...)
			putFragmentHeader(hs.frag, typ, len(body), seq, off, n)
			hs.frag = append(hs.frag, body[off:off+n]...)
			if dg, err = c.sealOutLocked(dg, it.epoch, recordHandshake, hs.frag); err != nil {
				return err
			}
			off += n
			if off >= len(body) {
				break
			}
		}
	}
	flush()
	hs.out = dg[:0]
	if werr != nil {
		hs.lastErr = werr
		if c.closed.Load() {
			return c.closedErr()
		}
	}
	return nil
}

// retransmit sends the flight again after the timer fired, doubling it.
func (hs *dtlsHandshake) retransmit() error {
	hs.rto = min(2*hs.rto, maxRetransmitInterval)
	return hs.transmit()
}

// next returns the peer's next handshake message, in order, reassembled,
// retransmitting our flight as needed until the handshake's deadline.
func (hs *dtlsHandshake) next() (*hsMsg, error) {
	c := hs.c
	for {
		if r := hs.slots[0]; r != nil && r.filled == r.length {
			copy(hs.slots[:], hs.slots[1:])
			hs.slots[len(hs.slots)-1] = nil
			m := &hsMsg{typ: r.typ, epoch: r.epoch, raw: dtlsMsg(r.typ, hs.recvSeq, r.body)}
			hs.recvSeq++
			return m, nil
		}
		now := time.Now()
		if !now.Before(hs.deadline) {
			return nil, hs.timeoutErr()
		}
		until := hs.nextTimer
		if hs.deadline.Before(until) {
			until = hs.deadline
		}
		d, _, err := c.recv(until)
		if err != nil {
			if err == errRecvTimer {
				if !time.Now().Before(hs.deadline) {
					return nil, hs.timeoutErr()
				}
				if !time.Now().Before(hs.nextTimer) {
					if err := hs.retransmit(); err != nil {
						return nil, err
					}
				}
				continue
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				// The peer's port is closed for now (ICMP): keep
				// retransmitting; the error is named if we time out.
				hs.lastErr = err
				if c.isClient && c.nc != nil {
					// A connected socket reports this at once: wait for
					// the timer instead of spinning.
					time.Sleep(min(time.Until(hs.nextTimer), time.Until(hs.deadline), 100*time.Millisecond))
				}
				continue
			}
			if c.closed.Load() {
				return nil, c.closedErr()
			}
			return nil, err
		}
		err = hs.processDatagram(d)
		clear(d)
		putDgram(d)
		if err != nil {
			return nil, err
		}
		if hs.peerResent {
			hs.peerResent = false
			if time.Since(hs.lastResend) >= min(hs.rto/4, 250*time.Millisecond) {
				hs.lastResend = time.Now()
				if err := hs.transmit(); err != nil {
					return nil, err
				}
			}
		}
	}
}

func (hs *dtlsHandshake) timeoutErr() error {
	s := fmt.Sprintf("tlspsk: DTLS handshake timed out after %v waiting for %s (our last flight was sent %d times)",
		hs.timeout.Round(time.Millisecond), hs.waiting, hs.sends)
	if hs.lastErr != nil {
		s += "; last socket error: " + hs.lastErr.Error()
	}
	return fmt.Errorf("%s: %w", s, os.ErrDeadlineExceeded)
}

// processDatagram handles the records of one datagram during the
// handshake. Invalid records are dropped (RFC 6347 4.1.2.7), with one
// exception: a handshake record in epoch 1 that fails to authenticate once
// our read keys exist is the peer's Finished under another key, and the
// handshake fails with decrypt_error at once, so that the peer hears why
// instead of retransmitting until it times out.
func (hs *dtlsHandshake) processDatagram(d []byte) error {
	c := hs.c
	for len(d) > 0 {
		h, rec, rest, ok := nextDTLSRecord(d, len(c.ourCID))
		if !ok {
			c.countDrop(&c.drops.malformed, dropMalformed)
			return nil
		}
		d = rest
		if err := hs.processRecord(h, rec); err != nil {
			return err
		}
	}
	return nil
}

func (hs *dtlsHandshake) processRecord(h dtlsHeader, rec []byte) error {
	c := hs.c
	typ, payload := h.typ, rec[h.hdrLen:]
	switch h.epoch {
	case 0:
		if h.typ == recordCID {
			return nil
		}
	case 1:
		if c.in.k == nil {
			if len(hs.early) < dtlsMaxEarly {
				hs.early = append(hs.early, append([]byte(nil), rec...))
			}
			return nil
		}
		c.in.from = nil
		t, plain, err := c.openEpoch1Locked(h, rec)
		if err != nil {
			if err == errDTLSBadRecord && hs.keysReady && (h.typ == recordHandshake || h.typ == recordCID) {
				return alertf(alertDecryptError, "the peer's Finished does not authenticate: its PSK differs from ours")
			}
			return nil
		}
		typ, payload = t, plain
	default:
		return nil
	}
	switch typ {
	case recordHandshake:
		hs.addFragments(payload, h.epoch)
	case recordAlert:
		level, desc, ok := parseAlert(payload)
		if ok && (level == 2 || desc == alertCloseNotify) {
			return &AlertError{Alert: desc, Received: true}
		}
	case recordApplicationData:
		// The server's first data can overtake its Finished.
		if h.epoch == 1 && c.isClient && len(c.in.early) < dtlsMaxEarly {
			c.in.early = append(c.in.early, append([]byte(nil), payload...))
		}
	}
	// change_cipher_spec: each record names its epoch, so it tells us
	// nothing we need.
	return nil
}

// addFragments stores the handshake fragments of one record.
func (hs *dtlsHandshake) addFragments(b []byte, epoch uint16) {
	for len(b) > 0 {
		f, rest, ok := nextFragment(b)
		if !ok {
			hs.c.countDrop(&hs.c.drops.malformed, dropMalformed)
			return
		}
		b = rest
		if f.seq < hs.recvSeq {
			hs.peerResent = true
			continue
		}
		idx := int(f.seq - hs.recvSeq)
		if idx >= dtlsReasmSlots || f.length > dtlsMaxHandshakeMsg {
			continue
		}
		r := hs.slots[idx]
		if r == nil {
			r = &reasm{typ: f.typ, epoch: epoch, length: f.length, body: make([]byte, f.length), have: make([]byte, (f.length+7)/8)}
			hs.slots[idx] = r
		} else if r.typ != f.typ || r.length != f.length || r.epoch != epoch {
			continue // inconsistent with the first fragment: drop it
		}
		r.add(f.off, f.data)
	}
}

// keysInstalled is called once the read keys exist: the epoch-1 records
// that came too early are processed now.
func (hs *dtlsHandshake) keysInstalled() error {
	hs.keysReady = true
	early := hs.early
	hs.early = nil
	for _, rec := range early {
		h, r, _, ok := nextDTLSRecord(rec, len(hs.c.ourCID))
		if !ok {
			continue
		}
		if err := hs.processRecord(h, r); err != nil {
			return err
		}
	}
	return nil
}

// expect reads the next message and checks its type and epoch.
func (hs *dtlsHandshake) expect(typ uint8, what string) (*hsMsg, error) {
	m, err := hs.next()
	if err != nil {
		return nil, err
	}
	if m.typ != typ {
		return nil, alertf(alertUnexpectedMessage, "expected "+what)
	}
	if want := uint16(0); typ == typeFinished && m.epoch != 1 || typ != typeFinished && m.epoch != want {
		return nil, alertf(alertUnexpectedMessage, what+" in the wrong epoch")
	}
	return m, nil
}
