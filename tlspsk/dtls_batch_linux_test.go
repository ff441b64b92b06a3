//go:build linux

package tlspsk

import (
	"net/netip"
	"testing"
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
