//go:build unix

package tlspsk

import (
	"bytes"
	"crypto"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Tests and benchmarks of the data path's performance work: batched
// writes, reads of every buffered record, WriteTo, and buffers given back
// while idle.

// perfSuites are the record layers WriteTo is tested over.
var perfSuites = []struct {
	name   string
	cc, sc *Config
}{
	{"TLS1.3-AES128", &Config{Key: testKey, CipherSuites: []uint16{TLS_AES_128_GCM_SHA256}, CurvePreferences: []CurveID{X25519}}, &Config{Key: testKey}},
	{"TLS1.3-ChaCha20", &Config{Key: testKey, CipherSuites: []uint16{TLS_CHACHA20_POLY1305_SHA256}, CurvePreferences: []CurveID{X25519}}, &Config{Key: testKey}},
	{"TLS1.2-PSK-AES128", &Config{Key: testKey, MaxVersion: VersionTLS12, CipherSuites: []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}}, &Config{Key: testKey}},
	{"TLS1.2-ECDHE-ChaCha20", &Config{Key: testKey, MaxVersion: VersionTLS12, CipherSuites: []uint16{TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256}}, &Config{Key: testKey}},
}

func connected(t testing.TB, cc, sc *Config) (*Conn, *Conn) {
	t.Helper()
	c, s := pair(t, cc, sc)
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	return c, s
}

// hashWriter hashes what it is given.
type hashWriter struct {
	h hash.Hash
	n int64
}

func newHashWriter() *hashWriter { return &hashWriter{h: sha256.New()} }

func (w *hashWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

func (w *hashWriter) sum() [32]byte { var s [32]byte; copy(s[:], w.h.Sum(nil)); return s }

// writeChunks writes data in chunks of awkward sizes, with KeyUpdates
// (requested ones, and every 7 records by the limit) on TLS 1.3.
func writeChunks(c *Conn, data []byte, keyUpdates bool) error {
	sizes := []int{1, 100, maxPlaintext - 1, maxPlaintext, maxPlaintext + 1, 70000, 5 * maxPlaintext, 300000, 17}
	if keyUpdates {
		c.out.Lock()
		c.out.hc.limit = 7
		c.out.Unlock()
	}
	for i := 0; len(data) > 0; i++ {
		m := min(sizes[i%len(sizes)], len(data))
		if n, err := c.Write(data[:m]); n != m || err != nil {
			return err
		}
		data = data[m:]
		if keyUpdates && i%4 == 2 {
			c.out.Lock()
			err := c.sendKeyUpdateLocked(true)
			c.out.Unlock()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteTo carries everything up to the peer's CloseWrite (nil error), the
// connection then still writes, and the other direction ends with a nil
// error at Close; KeyUpdates mid-stream are followed both ways.
func TestWriteToHalfCloseAndKeyUpdate(t *testing.T) {
	for _, tc := range perfSuites {
		t.Run(tc.name, func(t *testing.T) {
			c, s := connected(t, tc.cc, tc.sc)
			tls13 := c.ConnectionState().Version == VersionTLS13
			var c0, s0 []byte
			if tls13 {
				c0, s0 = bytes.Clone(c.out.hc.secret), bytes.Clone(s.out.hc.secret)
			}
			req := randomBytes(3<<20 + 12345)
			errc := make(chan error, 1)
			go func() {
				err := writeChunks(c, req, tls13)
				if err == nil {
					err = c.CloseWrite()
				}
				errc <- err
			}()
			w := newHashWriter()
			n, err := s.WriteTo(w)
			if err != nil || n != int64(len(req)) || w.n != n || w.sum() != sha256.Sum256(req) {
				t.Fatalf("server WriteTo: %d of %d bytes, %v", n, len(req), err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if _, err := s.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after close_notify: %v", err)
			}
			if n, err := s.WriteTo(w); n != 0 || err != nil {
				t.Fatalf("WriteTo after close_notify: %d, %v", n, err)
			}
			// The other direction still works.
			resp := randomBytes(1<<20 + 3)
			var sOut, sIn []byte // s's keys before Close wipes them
			go func() {
				_, err := s.Write(resp)
				sOut, sIn = bytes.Clone(s.out.hc.secret), bytes.Clone(s.in.hc.secret)
				s.Close()
				errc <- err
			}()
			w = newHashWriter()
			n, err = c.WriteTo(w)
			if err != nil || n != int64(len(resp)) || w.sum() != sha256.Sum256(resp) {
				t.Fatalf("client WriteTo: %d of %d bytes, %v", n, len(resp), err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if tls13 {
				if bytes.Equal(c.out.hc.secret, c0) || bytes.Equal(sOut, s0) {
					t.Fatal("keys did not change in both directions")
				}
				if !bytes.Equal(c.out.hc.secret, sIn) || !bytes.Equal(sOut, c.in.hc.secret) {
					t.Fatal("peers disagree on keys")
				}
			}
		})
	}
}

// A TLS 1.2 HelloRequest reaching WriteTo is refused with no_renegotiation
// (a warning) and the data around it still arrives.
func TestWriteToRenegotiationRefused(t *testing.T) {
	c, s := connected(t, perfSuites[2].cc, perfSuites[2].sc)
	a, b := randomBytes(100000), randomBytes(5000)
	go func() {
		s.Write(a)
		s.out.Lock()
		s.writeRecordLocked(recordHandshake, []byte{typeHelloRequest, 0, 0, 0})
		s.out.Unlock()
		s.Write(b)
		s.CloseWrite()
	}()
	w := newHashWriter()
	n, err := c.WriteTo(w)
	if err != nil || n != int64(len(a)+len(b)) || w.sum() != sha256.Sum256(append(a, b...)) {
		t.Fatalf("WriteTo: %d, %v", n, err)
	}
	// The warning reaches the server, which goes on (a TLS 1.2 warning is
	// not fatal) and then sees the client's close_notify.
	c.Close()
	if _, err = s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server read %v, want EOF after the no_renegotiation warning", err)
	}
	if s.in.warnings != 1 {
		t.Fatalf("server saw %d warning alerts, want 1 (no_renegotiation)", s.in.warnings)
	}
}

// Errors in WriteTo: a fatal alert is returned and sticky; a deadline is
// a timeout and is not; Close from another goroutine unblocks it.
func TestWriteToErrors(t *testing.T) {
	c, s := connected(t, &Config{Key: testKey}, &Config{Key: testKey})
	s.Write([]byte("before"))
	s.out.Lock()
	s.sendAlertLocked(alertInternalError)
	s.out.Unlock()
	var got bytes.Buffer
	n, err := c.WriteTo(&got)
	var ae *AlertError
	if !errors.As(err, &ae) || !ae.Received || ae.Alert != alertInternalError || n != 6 || got.String() != "before" {
		t.Fatalf("WriteTo: %d %q, %v", n, got.String(), err)
	}
	if _, err2 := c.Read(make([]byte, 1)); err2 != err {
		t.Fatalf("read after the alert: %v", err2)
	}
	if n, err2 := c.WriteTo(&got); n != 0 || err2 != err {
		t.Fatalf("second WriteTo: %v", err2)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write after a fatal alert")
	}

	c, s = connected(t, &Config{Key: testKey}, &Config{Key: testKey})
	exchange(t, c, s, 100000)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = c.WriteTo(io.Discard)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || FailureReason(err) != "timeout" {
		t.Fatalf("WriteTo past the deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	go func() { s.Write([]byte("after")); s.CloseWrite() }()
	got.Reset()
	if _, err := c.WriteTo(&got); err != nil || got.String() != "after" {
		t.Fatalf("WriteTo after the deadline: %q %v", got.String(), err)
	}

	done := make(chan error)
	go func() { _, err := s.WriteTo(io.Discard); done <- err }()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("WriteTo after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock WriteTo")
	}
}

// failWriter takes n bytes, then fails.
type failWriter struct {
	bytes.Buffer
	n int
}

var errFull = errors.New("full")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.Len()+len(p) <= w.n {
		return w.Buffer.Write(p)
	}
	m := w.n - w.Len()
	w.Buffer.Write(p[:m])
	return m, errFull
}

// What w does not take stays readable, in order, after several records
// were gathered for one write.
func TestWriteToKeepsWhatWriterRefused(t *testing.T) {
	for _, limit := range []int{0, 1000, 50000, maxPlaintext} {
		c, s := connected(t, &Config{Key: testKey}, &Config{Key: testKey})
		data := randomBytes(4*maxPlaintext - 10)
		if _, err := s.Write(data); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // all of it in the socket: one read, four records
		w := &failWriter{n: limit}
		n, err := c.WriteTo(w)
		if err != errFull || n != int64(limit) || !bytes.Equal(w.Bytes(), data[:limit]) {
			t.Fatalf("limit %d: WriteTo %d, %v", limit, n, err)
		}
		rest := make([]byte, len(data)-limit)
		if _, err := io.ReadFull(c, rest); err != nil || !bytes.Equal(rest, data[limit:]) {
			t.Fatalf("limit %d: the rest: %v", limit, err)
		}
	}
}

// countConn counts the Read and Write calls made on a connection.
type countConn struct {
	net.Conn
	reads, writes atomic.Int64
}

func (c *countConn) Read(b []byte) (int, error)  { c.reads.Add(1); return c.Conn.Read(b) }
func (c *countConn) Write(b []byte) (int, error) { c.writes.Add(1); return c.Conn.Write(b) }

// countedPair is pair with both raw connections counted (which also hides
// their descriptors: reads go through Read).
func countedPair(t testing.TB, cc, sc *Config) (*Conn, *Conn, *countConn, *countConn) {
	t.Helper()
	c0, s0 := pair(t, cc, sc)
	rc, rs := &countConn{Conn: c0.conn}, &countConn{Conn: s0.conn}
	c, s := Client(rc, cc), Server(rs, sc)
	t.Cleanup(func() { c.Close(); s.Close() })
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	return c, s, rc, rs
}

// A large Write goes out in batches of writeBatch records, one write(2)
// each, and arrives intact.
func TestBigWriteBatched(t *testing.T) {
	for _, tc := range perfSuites {
		t.Run(tc.name, func(t *testing.T) {
			c, s, rc, _ := countedPair(t, tc.cc, tc.sc)
			data := randomBytes(1<<20 + 7) // 65 records
			got := make([]byte, len(data))
			errc := make(chan error, 1)
			go func() { _, err := io.ReadFull(s, got); errc <- err }()
			before := rc.writes.Load()
			if n, err := c.Write(data); n != len(data) || err != nil {
				t.Fatal(n, err)
			}
			if calls, want := rc.writes.Load()-before, int64((65+writeBatch-1)/writeBatch); calls != want {
				t.Fatalf("%d write calls for 65 records, want %d", calls, want)
			}
			if err := <-errc; err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
				t.Fatalf("received data differs (%v)", err)
			}
		})
	}
}

// Read with a large buffer returns every record already buffered.
func TestReadReturnsBufferedRecords(t *testing.T) {
	for _, counted := range []bool{false, true} {
		var c, s *Conn
		var rs *countConn
		if counted {
			c, s, _, rs = countedPair(t, &Config{Key: testKey}, &Config{Key: testKey})
		} else {
			c, s = connected(t, &Config{Key: testKey}, &Config{Key: testKey})
		}
		data := randomBytes(writeBatch * maxPlaintext)
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		var reads int64
		if rs != nil {
			reads = rs.reads.Load()
		}
		buf := make([]byte, 1<<20)
		n, err := s.Read(buf)
		if err != nil || n != len(data) || !bytes.Equal(buf[:n], data) {
			t.Fatalf("Read returned %d of %d bytes, %v", n, len(data), err)
		}
		// A small first buffer, then one read for the rest.
		if rs != nil && rs.reads.Load()-reads > 2 {
			t.Fatalf("%d reads for one batch", rs.reads.Load()-reads)
		}
	}
}

type idleState struct {
	readBuf  int // len(c.in.buf)
	input    int
	handshke int
}

// hookIdle reports, for each listed Conn, its read-side buffers at the
// moment it starts waiting for the peer without a buffer.
func hookIdle(t *testing.T, conns ...*Conn) <-chan idleState {
	ch := make(chan idleState, 16)
	f := func(c *Conn) {
		for _, x := range conns {
			if x == c {
				ch <- idleState{len(c.in.buf), len(c.in.input), cap(c.in.hs)}
			}
		}
	}
	testHookIdleWait.Store(&f)
	t.Cleanup(func() { testHookIdleWait.Store(nil) })
	return ch
}

func waitIdle(t *testing.T, ch <-chan idleState) {
	t.Helper()
	select {
	case st := <-ch:
		if st != (idleState{}) {
			t.Fatalf("waiting with buffers held: %+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no wait without a buffer (RawConn path not taken)")
	}
}

func checkNoWriteBuffers(t *testing.T, c *Conn) {
	t.Helper()
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.buf != nil || c.out.pending != nil {
		t.Fatalf("write side holds %d + %d bytes", cap(c.out.buf), cap(c.out.pending))
	}
}

// After traffic, a Conn over TCP parked in Read or WriteTo holds no read
// or write buffer.
func TestIdleConnHoldsNoBuffers(t *testing.T) {
	for _, tc := range perfSuites {
		t.Run(tc.name, func(t *testing.T) {
			c, s := connected(t, tc.cc, tc.sc)
			exchange(t, c, s, 1<<20)
			exchange(t, c, s, 10)
			for _, x := range []*Conn{c, s} {
				x.in.Lock()
				if x.in.buf != nil {
					t.Errorf("read buffer of %d bytes held after Read", cap(x.in.buf))
				}
				x.in.Unlock()
				checkNoWriteBuffers(t, x)
			}
			ch := hookIdle(t, c, s)
			got := make(chan string, 1)
			done := make(chan error, 1)
			go func() { b := make([]byte, 100); n, _ := c.Read(b); got <- string(b[:n]) }()
			go func() { _, err := s.WriteTo(io.Discard); done <- err }()
			waitIdle(t, ch)
			waitIdle(t, ch)
			checkNoWriteBuffers(t, c)
			checkNoWriteBuffers(t, s)
			// The parked goroutines still work.
			if _, err := s.Write([]byte("wake")); err != nil {
				t.Fatal(err)
			}
			if g := <-got; g != "wake" {
				t.Fatalf("client read %q", g)
			}
			c.Close()
			if err := <-done; err != nil {
				t.Fatalf("server WriteTo at the client's close: %v", err)
			}
		})
	}
}

// Deadlines, Close and EOF through the buffer-free wait behave as Read on
// the socket does.
func TestRawReadDeadlineAndClose(t *testing.T) {
	c, s := connected(t, &Config{Key: testKey}, &Config{Key: testKey})
	exchange(t, c, s, 100000)
	ch := hookIdle(t, s)
	s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	_, err := s.Read(make([]byte, 10))
	waitIdle(t, ch)
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || !oe.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) || FailureReason(err) != "timeout" {
		t.Fatalf("read past the deadline: %#v", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("timed out after %v", d)
	}
	// A deadline in the past fails at once; no deadline waits again.
	s.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := s.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}
	waitIdle(t, ch)
	s.SetReadDeadline(time.Time{})
	go func() { time.Sleep(20 * time.Millisecond); c.Write([]byte("late")) }()
	buf := make([]byte, 10)
	if n, err := s.Read(buf); err != nil || string(buf[:n]) != "late" {
		t.Fatalf("read after the timeout: %q %v", buf[:n], err)
	}
	waitIdle(t, ch)

	// Close from another goroutine.
	done := make(chan error)
	go func() { _, err := s.Read(buf); done <- err }()
	waitIdle(t, ch)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}

	// The peer's socket closes without close_notify: EOF.
	c, s = connected(t, &Config{Key: testKey}, &Config{Key: testKey})
	exchange(t, c, s, 10)
	c.conn.Close()
	if _, err := s.Read(buf); err != io.EOF {
		t.Fatalf("Read at the peer's EOF: %v", err)
	}

	// A reset: the error of a socket Read, wrapped alike.
	c, s = connected(t, &Config{Key: testKey}, &Config{Key: testKey})
	exchange(t, c, s, 10)
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.conn.(*net.TCPConn).SetLinger(0)
		c.conn.Close()
	}()
	_, err = s.Read(buf)
	if !errors.As(err, &oe) || oe.Op != "read" || !errors.Is(err, syscall.ECONNRESET) || FailureReason(err) != "peer_closed" {
		t.Fatalf("Read at a reset: %#v", err)
	}
	if _, err2 := s.Read(buf); err2 != err {
		t.Fatalf("the reset is not sticky: %v", err2)
	}
}

// cpuTime is the CPU time (user and system) the process has used: on a
// shared machine a steadier figure than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWriteTo: one direction over loopback TCP, Writes of 16 KiB (as
// BenchmarkThroughput) or 64 KiB, received by WriteTo (as io.Copy from a
// *Conn does) or by Read into 32 KiB (the proxy's old copy loop).
// cpu-ns/op counts both ends.
func BenchmarkWriteTo(b *testing.B) {
	for _, tc := range []struct {
		name string
		cc   *Config
	}{
		{"TLS1.3-AES128", perfSuites[0].cc},
		{"TLS1.2-PSK-AES128", perfSuites[2].cc},
	} {
		for _, size := range []int{16 << 10, 64 << 10} {
			for _, mode := range []string{"WriteTo", "Read32KiB"} {
				b.Run(fmt.Sprintf("%s/%dKiB/%s", tc.name, size>>10, mode), func(b *testing.B) {
					c, s := connected(b, tc.cc, &Config{Key: testKey})
					done := make(chan struct{})
					go func() {
						defer close(done)
						if mode == "WriteTo" {
							s.WriteTo(io.Discard)
						} else {
							io.CopyBuffer(io.Discard, struct{ io.Reader }{s}, make([]byte, 32<<10))
						}
					}()
					buf := make([]byte, size)
					b.SetBytes(int64(len(buf)))
					b.ReportAllocs()
					b.ResetTimer()
					cpu := cpuTime()
					for i := 0; i < b.N; i++ {
						if _, err := c.Write(buf); err != nil {
							b.Fatal(err)
						}
					}
					c.Close()
					<-done
					b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
				})
			}
		}
	}
}

// BenchmarkAllocsPerRecord: one op is one record of 1 KiB sent and
// received (WriteTo); allocs/op counts both ends.
func BenchmarkAllocsPerRecord(b *testing.B) {
	for _, tc := range perfSuites {
		b.Run(tc.name, func(b *testing.B) {
			c, s := connected(b, tc.cc, tc.sc)
			done := make(chan struct{})
			go func() { s.WriteTo(io.Discard); close(done) }()
			buf := make([]byte, 1024)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
			<-done
		})
	}
}

// BenchmarkIdleConnBytes reports the live heap per Conn (client and server
// ends counted separately) of connections that carried 256 KiB each way
// and are parked in Read.
func BenchmarkIdleConnBytes(b *testing.B) {
	const conns = 100
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var wg sync.WaitGroup
		var all []*Conn
		for j := 0; j < conns; j++ {
			c, s := connected(b, &Config{Key: testKey, CurvePreferences: []CurveID{X25519}}, &Config{Key: testKey})
			exchange(b, c, s, 256<<10)
			all = append(all, c, s)
			wg.Add(2)
			go func() { defer wg.Done(); c.Read(make([]byte, 1)) }()
			go func() { defer wg.Done(); s.Read(make([]byte, 1)) }()
		}
		time.Sleep(100 * time.Millisecond)
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(2*conns), "heap-B/conn")
		b.ReportMetric(float64(int64(after.HeapObjects)-int64(before.HeapObjects))/(2*conns), "objects/conn")
		for _, x := range all {
			x.Close()
		}
		wg.Wait()
	}
}

// Read with buffers of any size and WriteTo into writers that give up
// anywhere, mixed, over both wait paths, carry the stream intact.
func TestMixedReadAndWriteTo(t *testing.T) {
	for _, counted := range []bool{false, true} {
		for _, tc := range perfSuites {
			var c, s *Conn
			if counted {
				c, s, _, _ = countedPair(t, tc.cc, tc.sc)
			} else {
				c, s = connected(t, tc.cc, tc.sc)
			}
			data := randomBytes(2 << 20)
			seed := sha256.Sum256([]byte(tc.name))
			rnd := func(i int, n int) int { // deterministic sizes
				h := sha256.Sum256(append(seed[:], byte(i), byte(i>>8), byte(i>>16)))
				return int(uint32(h[0])|uint32(h[1])<<8|uint32(h[2])<<16) % n
			}
			go func() {
				rest := data
				for i := 0; len(rest) > 0; i++ {
					m := min(1+rnd(i, 100000), len(rest))
					if _, err := c.Write(rest[:m]); err != nil {
						return
					}
					rest = rest[m:]
					if i%7 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				c.CloseWrite()
			}()
			var got []byte
			for i := 0; ; i++ {
				if i%2 == 0 {
					buf := make([]byte, 1+rnd(i+1000, 150000))
					n, err := s.Read(buf)
					got = append(got, buf[:n]...)
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					continue
				}
				w := &failWriter{n: rnd(i+2000, 300000)}
				_, err := s.WriteTo(w)
				got = append(got, w.Bytes()...)
				if err == nil {
					break
				}
				if err != errFull {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s (counted %v): %d bytes received of %d, or different", tc.name, counted, len(got), len(data))
			}
		}
	}
}

// failConn lets allow bytes through Write once armed, then fails.
type failConn struct {
	net.Conn
	armed bool
	allow int
}

var errWire = errors.New("wire cut")

func (c *failConn) Write(b []byte) (int, error) {
	if !c.armed {
		return c.Conn.Write(b)
	}
	m := min(len(b), c.allow)
	n, _ := c.Conn.Write(b[:m])
	c.allow -= n
	if n < len(b) {
		return n, errWire
	}
	return n, nil
}

// A Write cut short counts the records that went out whole; the TLS 1.2
// record limit stops a batch where it falls.
func TestBatchedWriteErrors(t *testing.T) {
	c0, s0 := pair(t, perfSuites[0].cc, perfSuites[0].sc)
	fc := &failConn{Conn: c0.conn}
	c, s := Client(fc, perfSuites[0].cc), Server(s0.conn, perfSuites[0].sc)
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	go io.Copy(io.Discard, s)
	c.out.Lock()
	fc.armed, fc.allow = true, 2*sealedLen(maxPlaintext)+100
	c.out.Unlock()
	n, err := c.Write(make([]byte, 5*maxPlaintext))
	if n != 2*maxPlaintext || err != errWire {
		t.Fatalf("cut Write: %d, %v", n, err)
	}
	if _, err := c.Write([]byte("x")); err != errWire {
		t.Fatalf("Write after the cut: %v", err)
	}

	c, s = connected(t, perfSuites[2].cc, perfSuites[2].sc)
	go io.Copy(io.Discard, s)
	c.out.Lock()
	c.out.hc.limit = c.out.hc.seq + 2
	c.out.Unlock()
	n, err = c.Write(make([]byte, 5*maxPlaintext))
	if n != 2*maxPlaintext || err != errTLS12Limit {
		t.Fatalf("Write at the TLS 1.2 limit: %d, %v", n, err)
	}
}

// BenchmarkPingPong: 64-byte request and answer, one round trip per op
// (small records: the buffer-free wait on every read).
func BenchmarkPingPong(b *testing.B) {
	c, s := connected(b, perfSuites[0].cc, perfSuites[0].sc)
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				return
			}
			if _, err := s.Write(buf); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// The reused-HMAC HKDF-Expand-Label equals crypto/hkdf's Expand over the
// same HkdfLabel, for one block and several, label after label.
func TestLabelerMatchesHKDF(t *testing.T) {
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		secret := randomBytes(h.Size())
		l := newLabeler(h, secret)
		for _, length := range []int{1, 12, 16, 32, 48, 64, 97, 200, 255 * h.Size()} {
			for _, label := range []string{"key", "iv", "c ap traffic", "exporter"} {
				ctx := randomBytes(length % 49)
				info := []byte{byte(length >> 8), byte(length), byte(6 + len(label))}
				info = append(append(info, "tls13 "+label...), byte(len(ctx)))
				info = append(info, ctx...)
				want, err := hkdf.Expand(h.New, secret, string(info), length)
				if err != nil {
					t.Fatal(err)
				}
				if got := l.expand(label, ctx, length); !bytes.Equal(got, want) {
					t.Fatalf("%v %q %d: %x, want %x", h, label, length, got, want)
				}
				if got := expandLabel(h, secret, label, ctx, length); !bytes.Equal(got, want) {
					t.Fatalf("expandLabel %v %q %d differs", h, label, length)
				}
			}
		}
	}
}

// buffersRecorder is a BuffersWriter that hashes what it is given and
// counts the gathered writes.
type buffersRecorder struct {
	*hashWriter
	gathered int
}

func (b *buffersRecorder) WriteBuffers(v *net.Buffers) (int64, error) {
	b.gathered++
	var n int64
	for _, p := range *v {
		m, _ := b.Write(p)
		n += int64(m)
	}
	*v = nil
	return n, nil
}

// WriteTo gives a BuffersWriter the plaintext of several buffered records
// in one WriteBuffers call, so a counting wrapper around a socket still
// gets one writev per batch.
func TestWriteToUsesBuffersWriter(t *testing.T) {
	c, s := connected(t, &Config{Key: testKey}, &Config{Key: testKey})
	data := randomBytes(8 * writeBatch * maxPlaintext)
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	time.Sleep(50 * time.Millisecond) // let several records arrive before WriteTo reads
	w := &buffersRecorder{hashWriter: newHashWriter()}
	if n, err := s.WriteTo(w); err != nil || n != int64(len(data)) {
		t.Fatalf("WriteTo: %d of %d bytes, %v", n, len(data), err)
	}
	if w.sum() != sha256.Sum256(data) {
		t.Fatal("data differs")
	}
	if w.gathered == 0 {
		t.Fatal("several records were buffered, but WriteBuffers was never called")
	}
}

// TLS 1.2 warning alerts are skipped, up to maxWarningAlerts; past that the
// connection ends.
func TestTLS12WarningAlertsBounded(t *testing.T) {
	c, s := connected(t, perfSuites[2].cc, perfSuites[2].sc)
	go func() {
		s.out.Lock()
		for i := 0; i <= maxWarningAlerts; i++ {
			s.writeRecordLocked(recordAlert, []byte{1, 112}) // unrecognized_name
		}
		s.flushLocked()
		s.out.Unlock()
	}()
	_, err := c.Read(make([]byte, 1))
	if err == nil || !strings.Contains(err.Error(), "too many warning alerts") {
		t.Fatalf("after %d warnings: %v", maxWarningAlerts+1, err)
	}
}
