//go:build !linux

package tlspsk

// batchSys elsewhere: one datagram per system call through net.UDPConn.
type batchSys struct{ connected bool }

type recvHeaders struct{}

func (r *recvHeaders) init(*recvKit, int, int, bool) {}

func (s *batchSys) init(b *UDPBatch) { s.connected = b.conn.RemoteAddr() != nil }

// Recv waits for one datagram and returns it.
func (b *UDPBatch) Recv() (int, error) {
	b.takeKit()
	buf := b.slotBuf(0)
	n, ap, err := b.conn.ReadFromUDPAddrPort(buf[:cap(buf)])
	if err != nil {
		b.Release()
		return 0, err
	}
	// Without the kernel's truncation flag, a datagram that filled the
	// slot exactly counts as cut (the slot is one byte larger than the
	// callers' limits need).
	b.Msgs[0] = UDPMsg{B: buf[:n], Addr: unmap(ap), Trunc: n >= b.slot}
	b.kit.used = 1
	return 1, nil
}

// Send sends ms one by one.
func (b *UDPBatch) Send(ms []UDPMsg) (int, error) {
	for i := range ms {
		var err error
		if b.sys.connected {
			_, err = b.conn.Write(ms[i].B)
		} else {
			_, err = b.conn.WriteToUDPAddrPort(ms[i].B, ms[i].Addr)
		}
		if err != nil {
			return i, err
		}
	}
	return len(ms), nil
}
