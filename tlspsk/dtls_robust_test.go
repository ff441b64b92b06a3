package tlspsk

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The DTLS listener and conns under loss, floods, replays, overflow and
// silence.

// The server's last flight (its Finished) is lost: the client retransmits
// its own, and the established session answers from the listener's read
// loop although nobody has accepted it yet.
func TestDTLSFinishedLost(t *testing.T) {
	key := randomBytes(32)
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: key}})
	var dropped atomic.Bool
	relay := newUDPRelay(t, l.Addr(), func(toServer bool, d []byte) relayAction {
		// The server's flight 6: change_cipher_spec first.
		if !toServer && d[0] == recordChangeCipherSpec && dropped.CompareAndSwap(false, true) {
			return relayDrop
		}
		return relayForward
	})
	c, err := DialDTLS("udp", relay.addr(), &DTLSConfig{Config: Config{Key: key}, HandshakeTimeout: 5 * time.Second,
		RetransmitInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	if !dropped.Load() {
		t.Fatal("the server's Finished was not dropped")
	}
	s, err := l.AcceptDTLS()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pingPong(t, c, s, 5, 100)
}

// A flood of ClientHellos from many addresses that never return a cookie
// leaves no session, no goroutine and no memory behind, and a real client
// completes its handshakes meanwhile. Hellos with a forged cookie are
// challenged again.
func TestDTLSHelloFlood(t *testing.T) {
	key := randomBytes(32)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pc.SetReadBuffer(4 << 20)
	l, err := NewDTLSListener(pc, &DTLSConfig{Config: Config{Key: key}, MaxHandshakes: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A warm-up handshake, so that the pools and the runtime have what a
	// session needs before we measure.
	warm, err := DialDTLS("udp", l.Addr().String(), &DTLSConfig{Config: Config{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := l.AcceptDTLS()
	warm.Close()
	ws.Close()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	hello := func(cookie []byte, i int) []byte {
		p := &dtlsHelloParams{random: randomBytes(32), cookie: cookie, suites: []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}}
		body := marshalDTLSClientHello(p)
		msg := dtlsMsg(typeClientHello, 0, body)
		return sealPlainDTLS(nil, recordHandshake, VersionDTLS12, uint64(i), msg)
	}
	const senders, perSender = 48, 400
	var wg sync.WaitGroup
	var maxSessions atomic.Int64
	stop := make(chan struct{})
	go func() { // watch the session count throughout the flood
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := int64(l.Stats().Sessions); n > maxSessions.Load() {
				maxSessions.Store(n)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			// Each sender has its own loopback address: 127.0.1.s.
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 1, byte(s+1))})
			if err != nil {
				t.Error(err)
				return
			}
			defer pc.Close()
			for i := 0; i < perSender; i++ {
				var cookie []byte
				if i%4 == 3 {
					cookie = randomBytes(cookieLen) // forged
				}
				pc.WriteTo(hello(cookie, i), l.Addr())
				if i%50 == 49 {
					time.Sleep(time.Millisecond) // a flood, not a socket-buffer overflow test
				}
			}
		}(s)
	}
	// The real client, during the flood.
	for i := 0; i < 3; i++ {
		c, err := DialDTLS("udp", l.Addr().String(), &DTLSConfig{Config: Config{Key: key}, RetransmitInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("real client %d during the flood: %v", i, err)
		}
		s, err := l.AcceptDTLS()
		if err != nil {
			t.Fatal(err)
		}
		// The flood may fill the socket buffer and drop a data datagram
		// (UDP); what matters is that the session carries data.
		pingPongLossy(t, c, s, 3, 100)
		c.Close()
		s.Close()
	}
	wg.Wait()
	// Let the read loop drain the socket: until the count stops moving.
	for last := uint64(0); ; {
		time.Sleep(200 * time.Millisecond)
		n := l.Stats().HelloVerifyRequests
		if n == last {
			break
		}
		last = n
	}
	close(stop)
	st := l.Stats()
	t.Logf("after the flood: %+v (max sessions seen %d)", st, maxSessions.Load())
	if maxSessions.Load() > 1 {
		t.Fatalf("cookie-less hellos created sessions: up to %d at once", maxSessions.Load())
	}
	if st.Sessions != 0 || st.Handshakes != 0 {
		t.Fatalf("sessions left: %+v", st)
	}
	// UDP may lose part of the flood in the kernel under load; most of it
	// must have reached the listener and been challenged.
	if st.HelloVerifyRequests < senders*perSender/4 || st.BadCookies == 0 {
		t.Fatalf("the flood was not answered with cookies: %+v", st)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 2<<20 {
		t.Fatalf("heap grew by %d bytes over the flood", grow)
	}
	if g := runtime.NumGoroutine(); g > goroutines+2 {
		t.Fatalf("%d goroutines after the flood, %d before", g, goroutines)
	}
}

// The cookie path (a hello without a valid cookie answered with a
// HelloVerifyRequest) allocates nothing.
func TestDTLSHelloVerifyAllocs(t *testing.T) {
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: randomBytes(32)}})
	p := &dtlsHelloParams{random: randomBytes(32), suites: []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}}
	d := sealPlainDTLS(nil, recordHandshake, VersionDTLS12, 0, dtlsMsg(typeClientHello, 0, marshalDTLSClientHello(p)))
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	key := sessionKey{ap: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	l.handle(d, key, nil) // warm the buffers
	if n := testing.AllocsPerRun(100, func() { l.handle(d, key, nil) }); n != 0 {
		t.Fatalf("%v allocations per hello", n)
	}
	if l.Stats().Sessions != 0 {
		t.Fatal("a session without a cookie")
	}
}

// A replayed record is dropped and counted; the original arrives once.
func TestDTLSReplay(t *testing.T) {
	key := randomBytes(32)
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: key}})
	accepted := acceptDTLS(t, l)
	var dups, data atomic.Int64
	relay := newUDPRelay(t, l.Addr(), func(toServer bool, d []byte) relayAction {
		// Among the first 150 of 200 datagrams (the server reads past the
		// last duplicate before we count).
		if toServer && d[0] == recordApplicationData && data.Add(1) <= 150 && d[len(d)-1]%4 == 0 {
			dups.Add(1)
			return relayDuplicate
		}
		return relayForward
	})
	c, err := DialDTLS("udp", relay.addr(), &DTLSConfig{Config: Config{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := waitAccepted(t, accepted)
	pingPong(t, c, s, 200, 300)
	if dups.Load() == 0 {
		t.Fatal("nothing duplicated")
	}
	if got := s.Drops().Replay; got != uint64(dups.Load()) {
		t.Fatalf("%d replays dropped, %d sent", got, dups.Load())
	}
	if got := l.Stats().Dropped[dropReplay]; got != uint64(dups.Load()) {
		t.Fatalf("listener counted %d replays, %d sent", got, dups.Load())
	}
}

// A session's queue is bounded: datagrams beyond it are dropped and
// counted, and the session works on.
func TestDTLSQueueOverflow(t *testing.T) {
	key := randomBytes(32)
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: key}, QueueLength: 8})
	accepted := acceptDTLS(t, l)
	c, err := DialDTLS("udp", l.Addr().String(), &DTLSConfig{Config: Config{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := waitAccepted(t, accepted)
	const n = 200
	for i := 0; i < n; i++ {
		c.Write(checkedDatagram(uint32(i), 100))
	}
	deadline := time.Now().Add(dtlsTestTimeout)
	for s.Drops().QueueFull < n-8 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if q := s.Drops().QueueFull; q < n-8 || l.Stats().Dropped[dropQueueFull] != q {
		t.Fatalf("queue_full: conn %d, listener %d", q, l.Stats().Dropped[dropQueueFull])
	}
	buf := make([]byte, 2048)
	for i := 0; i < 8; i++ {
		m, err := s.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if seq, err := verifyDatagram(buf[:m]); err != nil || seq != uint32(i) {
			t.Fatalf("queued datagram %d: seq %d %v", i, seq, err)
		}
	}
	pingPong(t, c, s, 3, 100)
}

// A server that never answers: the client retransmits with backoff and
// ends at HandshakeTimeout with an error that says what it waited for.
func TestDTLSClientHandshakeTimeout(t *testing.T) {
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var hellos atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := silent.ReadFrom(buf); err != nil {
				return
			}
			hellos.Add(1)
		}
	}()
	_, err = DialDTLS("udp", silent.LocalAddr().String(), &DTLSConfig{Config: Config{Key: randomBytes(16)},
		HandshakeTimeout: 1500 * time.Millisecond, RetransmitInterval: 100 * time.Millisecond})
	if err == nil {
		t.Fatal("handshake with a silent server succeeded")
	}
	if FailureReason(err) != "timeout" || !strings.Contains(err.Error(), "waiting for the server's ServerHello") {
		t.Fatalf("error %v (reason %q)", err, FailureReason(err))
	}
	// Sends at 0, 100, 300, 700ms (backoff): at least one retransmission,
	// and far fewer than the 15 a fixed 100ms timer would send (a loaded
	// machine can only make the count smaller).
	if n := hellos.Load(); n < 2 || n > 6 {
		t.Fatalf("%d ClientHellos sent", n)
	}
}

// A client that returns the cookie and then falls silent: the server's
// handshake ends at HandshakeTimeout, reported, and leaves no session.
func TestDTLSServerHandshakeTimeout(t *testing.T) {
	fails := newDTLSFailures()
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: randomBytes(32)}, HandshakeFailed: fails.hook,
		HandshakeTimeout: time.Second, RetransmitInterval: 100 * time.Millisecond})
	// After the first failure the relay goes dark: the client keeps
	// retransmitting its ClientHello, which would otherwise start a second
	// (legitimate) handshake while the test checks the table is empty.
	var dark atomic.Bool
	relay := newUDPRelay(t, l.Addr(), func(toServer bool, d []byte) relayAction {
		if dark.Load() {
			return relayDrop
		}
		// Let the hellos through, nothing after the ServerHello.
		if toServer && d[0] == recordHandshake && d[dtlsRecordHeaderLen] == typeClientHello {
			return relayForward
		}
		if !toServer && d[0] == recordHandshake && d[dtlsRecordHeaderLen] == typeHelloVerifyRequest {
			return relayForward
		}
		return relayDrop
	})
	go DialDTLS("udp", relay.addr(), &DTLSConfig{Config: Config{Key: randomBytes(32)}, HandshakeTimeout: 2 * time.Second})
	err, _ := fails.wait(t)
	dark.Store(true)
	if FailureReason(err) != "timeout" || !strings.Contains(err.Error(), "ClientKeyExchange") {
		t.Fatalf("server failure: %v", err)
	}
	// A retransmitted ClientHello (with its still-valid cookie) that the
	// relay was forwarding as it went dark starts a handshake of its own,
	// which times out in turn. It can arrive just after the table emptied
	// (CI caught that once), so wait until the table is empty and stays
	// empty for longer than a datagram takes through the relay.
	deadline := time.Now().Add(dtlsTestTimeout)
	var emptySince time.Time
	for time.Now().Before(deadline) {
		st := l.Stats()
		switch {
		case st.Sessions != 0 || st.Handshakes != 0:
			emptySince = time.Time{}
		case emptySince.IsZero():
			emptySince = time.Now()
		case time.Since(emptySince) > 300*time.Millisecond:
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the listener's table did not empty: stats %+v", l.Stats())
}

// close_notify ends the peer's reads with io.EOF, and the session leaves
// the listener's table.
func TestDTLSCloseNotify(t *testing.T) {
	key := randomBytes(32)
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: key}})
	accepted := acceptDTLS(t, l)
	c, err := DialDTLS("udp", l.Addr().String(), &DTLSConfig{Config: Config{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	s := waitAccepted(t, accepted)
	pingPong(t, c, s, 2, 40)
	c.Close()
	s.SetReadDeadline(time.Now().Add(dtlsTestTimeout))
	if _, err := s.Read(make([]byte, 100)); err != io.EOF {
		t.Fatalf("read after the peer's close: %v", err)
	}
	s.Close()
	if n := l.Stats().Sessions; n != 0 {
		t.Fatalf("%d sessions after close", n)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// A new handshake from the address of a session (the client restarted on
// the same port) replaces it once the client returns a cookie; a repeated
// ClientHello of the session itself does not.
func TestDTLSSessionReplaced(t *testing.T) {
	key := randomBytes(32)
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: key}})
	relay := newUDPRelay(t, l.Addr(), func(bool, []byte) relayAction { return relayForward })
	cfg := &DTLSConfig{Config: Config{Key: key}}
	c1, err := DialDTLS("udp", relay.addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	s1, _ := l.AcceptDTLS()
	pingPong(t, c1, s1, 2, 40)
	c2, err := DialDTLS("udp", relay.addr(), cfg) // same address at the server: the relay's
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s2, _ := l.AcceptDTLS()
	pingPong(t, c2, s2, 2, 40)
	s1.SetReadDeadline(time.Now().Add(dtlsTestTimeout))
	if _, err := s1.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("the replaced session reads: %v", err)
	}
	if st := l.Stats(); st.Replaced != 1 || st.Sessions != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Connection IDs (RFC 9146): our client and server negotiate one, and the
// session survives the client's address changing (a NAT rebinding) in
// the middle; the server then answers at the new address.
func TestDTLSConnectionIDRebinding(t *testing.T) {
	key := randomBytes(32)
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: key}, ConnectionIDLength: 8})
	accepted := acceptDTLS(t, l)
	relay := newUDPRelay(t, l.Addr(), func(bool, []byte) relayAction { return relayForward })
	c, err := DialDTLS("udp", relay.addr(), &DTLSConfig{Config: Config{Key: key}, ConnectionIDLength: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := waitAccepted(t, accepted)
	if len(s.ConnectionID()) != 8 {
		t.Fatalf("server CID %x", s.ConnectionID())
	}
	pingPong(t, c, s, 5, 500)
	before := s.RemoteAddr().String()
	relay.rebind(t)
	pingPong(t, c, s, 5, 500)
	if after := s.RemoteAddr().String(); after == before {
		t.Fatalf("the server still sends to %s", after)
	}
	// Records to the server carry the CID: tls12_cid.
	relay.mu.Lock()
	last := relay.seen[0][len(relay.seen[0])-1]
	relay.mu.Unlock()
	if last[0] != recordCID {
		t.Fatalf("record type %d to the server, want tls12_cid", last[0])
	}
	if st := l.Stats(); st.Sessions != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Listener.Close ends every session, accepted or not, and Accept.
func TestDTLSListenerClose(t *testing.T) {
	key := randomBytes(32)
	l, err := ListenDTLS("udp", "127.0.0.1:0", &DTLSConfig{Config: Config{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	accepted := acceptDTLS(t, l)
	c, err := DialDTLS("udp", l.Addr().String(), &DTLSConfig{Config: Config{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := waitAccepted(t, accepted)
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		done <- err
	}()
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(dtlsTestTimeout):
		t.Fatal("Read still blocked after the listener closed")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept: %v", err)
	}
}

// A server conn's read deadline works without a socket of its own, and a
// new deadline reaches a Read already waiting.
func TestDTLSServerReadDeadline(t *testing.T) {
	key := randomBytes(32)
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: key}})
	accepted := acceptDTLS(t, l)
	c, err := DialDTLS("udp", l.Addr().String(), &DTLSConfig{Config: Config{Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := waitAccepted(t, accepted)
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = s.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v", err)
	}
	s.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	select {
	case err := <-done:
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(dtlsTestTimeout):
		t.Fatal("a waiting Read missed the new deadline")
	}
	pingPong(t, c, s, 1, 40) // still usable
}

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	accept := func(seq uint64) bool {
		if !w.check(seq) {
			return false
		}
		w.mark(seq)
		return true
	}
	for _, tc := range []struct {
		seq  uint64
		want bool
	}{
		{5, true}, {5, false}, {3, true}, {3, false}, {4, true}, {6, true},
		{1000, true}, {1000 - dtlsReplayWindow + 1, true}, {1000 - dtlsReplayWindow, false},
		{999, true}, {999, false}, {5, false}, {100000, true}, {1000, false}, {99999, true},
		{100000 - 64, true}, {100000 - 64, false}, {1 << 47, true}, {1<<47 - 1, true}, {100000, false},
	} {
		if got := accept(tc.seq); got != tc.want {
			t.Fatalf("seq %d: accepted %v, want %v", tc.seq, got, tc.want)
		}
	}
	// Every sequence number inside the window is remembered after the
	// window slides by less than its size.
	var v replayWindow
	for i := uint64(0); i < 3000; i++ {
		v.mark(i * 2)
	}
	for i := uint64(6000 - dtlsReplayWindow); i < 6000; i++ {
		if got := v.check(i); got != (i%2 == 1) {
			t.Fatalf("after sliding: seq %d acceptable %v", i, got)
		}
	}
}

// Cookies: valid for the address and hello they were made for, through
// one rotation and not two.
func TestDTLSCookieRotation(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := &DTLSConfig{Config: Config{Time: func() time.Time { return now }}, CookieRotation: time.Minute}
	var j cookieJar
	if err := j.init(cfg); err != nil {
		t.Fatal(err)
	}
	p := &dtlsHelloParams{random: randomBytes(32), suites: []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}}
	hf, _ := peekDTLSClientHello(marshalDTLSClientHello(p))
	key := sessionKey{ap: mustAddrPort("192.0.2.1:4444")}
	hf.cookie = append([]byte(nil), j.compute(j.cur, hf, key)...)
	if !j.valid(hf, key) {
		t.Fatal("fresh cookie rejected")
	}
	if j.valid(hf, sessionKey{ap: mustAddrPort("192.0.2.1:4445")}) {
		t.Fatal("cookie valid for another port")
	}
	other := hf
	other.random = randomBytes(32)
	if j.valid(other, key) {
		t.Fatal("cookie valid for another hello")
	}
	now = now.Add(61 * time.Second)
	j.rotate(now, cfg)
	if !j.valid(hf, key) {
		t.Fatal("cookie rejected after one rotation")
	}
	now = now.Add(61 * time.Second)
	j.rotate(now, cfg)
	if j.valid(hf, key) {
		t.Fatal("cookie still valid after two rotations")
	}
}

func mustAddrPort(s string) netip.AddrPort {
	ua, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		panic(err)
	}
	return ua.AddrPort()
}

// The handshake-message reassembly bounds: a message above
// dtlsMaxHandshakeMsg or beyond the reassembly window is not buffered.
func TestDTLSReassemblyBounds(t *testing.T) {
	hs := &dtlsHandshake{c: &DTLSConn{}}
	frag := func(seq uint16, length, off, n int) []byte {
		b := make([]byte, dtlsHandshakeHeaderLen+n)
		putFragmentHeader(b, typeClientKeyExchange, length, seq, off, n)
		return b
	}
	hs.addFragments(frag(0, dtlsMaxHandshakeMsg+1, 0, 10), 0)
	hs.addFragments(frag(dtlsReasmSlots, 100, 0, 10), 0)
	for i, s := range hs.slots {
		if s != nil {
			t.Fatalf("slot %d buffered", i)
		}
	}
	// Out of order and overlapping fragments assemble.
	hs.addFragments(frag(1, 30, 10, 20), 0)
	hs.addFragments(frag(1, 30, 0, 15), 0)
	if r := hs.slots[1]; r == nil || r.filled != 30 {
		t.Fatalf("reassembly: %+v", hs.slots[1])
	}
	// A fragment disagreeing with the first on the length is dropped.
	hs.addFragments(frag(2, 40, 0, 10), 0)
	hs.addFragments(frag(2, 41, 10, 10), 0)
	if r := hs.slots[2]; r.filled != 10 {
		t.Fatalf("inconsistent fragment used: %d", r.filled)
	}
}

// SealRecord and OpenRecord, the API for batched socket I/O, allocate
// nothing on the caller's buffers, also sealing in place, and Write/Read
// allocate nothing per datagram.
func TestDTLSRecordAllocs(t *testing.T) {
	for _, id := range []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, TLS_PSK_WITH_AES_128_CCM_8} {
		c, s := dtlsPair(t, id)
		buf := make([]byte, 0, 2048)
		off := c.SealOffset()
		plain := buf[off : off+1200]
		for i := range plain {
			plain[i] = byte(i)
		}
		n := testing.AllocsPerRun(200, func() {
			for i := range plain {
				plain[i] = byte(i)
			}
			rec, err := c.SealRecord(buf[:0], plain) // in place
			if err != nil || len(rec) != 1200+c.SealOverhead() {
				t.Fatalf("seal: %v, %d bytes", err, len(rec))
			}
			got, err := s.OpenRecord(rec)
			if err != nil || len(got) != 1200 || got[1199] != byte(1199%256) {
				t.Fatalf("open: %v", err)
			}
		})
		if n != 0 {
			t.Fatalf("%s: %v allocations per seal and open", DTLSCipherSuiteName(id), n)
		}
		d, rb := make([]byte, 1200), make([]byte, 2048)
		s.SetReadDeadline(time.Now().Add(dtlsTestTimeout))
		n = testing.AllocsPerRun(200, func() {
			if _, err := c.Write(d); err != nil {
				t.Fatal(err)
			}
			if m, err := s.Read(rb); err != nil || m != 1200 {
				t.Fatalf("read: %v", err)
			}
		})
		if n != 0 {
			t.Fatalf("%s: %v allocations per Write and Read", DTLSCipherSuiteName(id), n)
		}
	}
}

// Our client and server tell each other what went wrong, at once: each
// side's error names the reason, and the server reports it.
func TestDTLSSelfAlerts(t *testing.T) {
	key := randomBytes(32)
	wrong := append([]byte(nil), key...)
	wrong[0] ^= 1
	for _, tc := range []struct {
		name, reason string
		client       Config
		server       Config
	}{
		{"wrong_key", "wrong_key", Config{Key: wrong}, Config{Key: key}},
		{"wrong_key_ecdhe", "wrong_key", Config{Key: wrong, CipherSuites: []uint16{TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256}}, Config{Key: key}},
		{"unknown_identity", "unknown_identity", Config{Identity: "mallory", Key: key}, Config{Key: key}},
		{"no_shared_suite", "no_shared_parameters", Config{Key: key, CipherSuites: []uint16{TLS_PSK_WITH_AES_256_CCM}}, Config{Key: key}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fails := newDTLSFailures()
			l := listenDTLSTest(t, &DTLSConfig{Config: tc.server, HandshakeFailed: fails.hook})
			_, err := DialDTLS("udp", l.Addr().String(), &DTLSConfig{Config: tc.client, HandshakeTimeout: dtlsTestTimeout})
			if FailureReason(err) != tc.reason {
				t.Fatalf("client: %v (reason %q)", err, FailureReason(err))
			}
			serr, _ := fails.wait(t)
			if FailureReason(serr) != tc.reason {
				t.Fatalf("server: %v (reason %q)", serr, FailureReason(serr))
			}
		})
	}
}

// A client over an unconnected socket talks to its server and ignores
// datagrams from anyone else.
func TestDTLSClientPacketConn(t *testing.T) {
	key := randomBytes(32)
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: key}})
	accepted := acceptDTLS(t, l)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := DTLSClientPacketConn(pc, l.Addr(), &DTLSConfig{Config: Config{Key: key}})
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	s := waitAccepted(t, accepted)
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	stranger.WriteTo(checkedDatagram(99, 100), pc.LocalAddr()) // not from the server: not even parsed
	pingPong(t, s, c, 5, 100)
	if d := c.Drops(); d.Malformed != 0 {
		t.Fatalf("a stranger's datagram reached the record layer: %+v", d)
	}
}

// pingPongLossy is pingPong over a path that may drop datagrams: each one
// is sent again every 200 ms until it arrives (late copies of earlier ones
// are skipped), within dtlsTestTimeout in all.
func pingPongLossy(t testing.TB, a, b net.Conn, n, size int) {
	t.Helper()
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(dtlsTestTimeout)
	for i := 0; i < n; i++ {
		for _, dir := range [][2]net.Conn{{a, b}, {b, a}} {
			d := checkedDatagram(uint32(i), size)
		resend:
			for {
				if time.Now().After(deadline) {
					t.Fatalf("datagram %d never arrived in %v", i, dtlsTestTimeout)
				}
				if _, err := dir[0].Write(d); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				dir[1].SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				for {
					m, err := dir[1].Read(buf)
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						continue resend
					}
					if err != nil {
						t.Fatalf("read %d: %v", i, err)
					}
					seq, err := verifyDatagram(buf[:m])
					if err != nil || m != size || seq > uint32(i) {
						t.Fatalf("datagram %d: seq %d, %d bytes, %v", i, seq, m, err)
					}
					if seq == uint32(i) {
						break resend
					}
				}
			}
		}
	}
	a.SetReadDeadline(time.Time{})
	b.SetReadDeadline(time.Time{})
}
