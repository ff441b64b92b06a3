//go:build !linux

package tlspsk

import "net/netip"

const afInet, afInet6 = 2, 10

func sockaddrRoundTrip(int, netip.AddrPort) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
