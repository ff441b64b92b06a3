//go:build linux

package tlspsk

import (
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const afInet, afInet6 = unix.AF_INET, unix.AF_INET6

func sockaddrRoundTrip(domain int, ap netip.AddrPort) (netip.AddrPort, bool) {
	var sa unix.RawSockaddrInet6
	encodeSockaddr(&sa, domain, ap)
	return decodeSockaddr(&sa), true
}

// decodeSockaddr reads what the kernel wrote into a batch's name slot:
// any bytes decode without panicking, and an address decoded from either
// family encodes back to the same bytes' address.
func FuzzDecodeSockaddr(f *testing.F) {
	var sa unix.RawSockaddrInet6
	encodeSockaddr(&sa, unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:443"))
	f.Add((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:])
	encodeSockaddr(&sa, unix.AF_INET6, netip.MustParseAddrPort("[2001:db8::1]:53"))
	f.Add((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:])
	f.Add(make([]byte, unix.SizeofSockaddrInet6))
	f.Fuzz(func(t *testing.T, b []byte) {
		var sa unix.RawSockaddrInet6
		copy((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:], b)
		ap := decodeSockaddr(&sa)
		if !ap.IsValid() {
			if sa.Family == unix.AF_INET || sa.Family == unix.AF_INET6 {
				t.Fatalf("family %d decoded to nothing", sa.Family)
			}
			return
		}
		dom := unix.AF_INET6
		if ap.Addr().Is4() {
			dom = unix.AF_INET
		}
		var back unix.RawSockaddrInet6
		encodeSockaddr(&back, dom, ap)
		if got := decodeSockaddr(&back); got != ap {
			t.Fatalf("%v re-encoded decodes to %v", ap, got)
		}
	})
}

// The batch's system calls are raw (they keep the goroutine's P), so a
// loop that always finds data must yield after each Recv, or the other
// goroutines of its P wait until the 10 ms preemption. With one P: a
// reader drains a socket full of datagrams, and a goroutine it wakes after
// its first Recv must run before the socket is empty.
func TestUDPBatchRecvYields(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	rx.SetReadBuffer(1 << 20)
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const total = 256
	for i := 0; i < total; i++ {
		if _, err := tx.Write(make([]byte, 64)); err != nil {
			t.Fatal(err)
		}
	}
	b := NewUDPBatch(rx, 8, UDPPlainSlot, false)
	defer b.Release()
	var got atomic.Int64
	woken := make(chan struct{})
	atWake := make(chan int64, 1)
	go func() {
		<-woken
		atWake <- got.Load()
	}()
	rx.SetReadDeadline(time.Now().Add(2 * time.Second))
	for first := true; got.Load() < total; first = false {
		n, err := b.Recv()
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", got.Load(), total, err)
		}
		got.Add(int64(n))
		if first {
			close(woken)
		}
	}
	at := <-atWake
	if at >= total {
		t.Fatalf("the woken goroutine ran only after the reader had drained all %d datagrams: Recv does not yield", total)
	}
	t.Logf("the woken goroutine ran after %d of %d datagrams", at, total)
}
