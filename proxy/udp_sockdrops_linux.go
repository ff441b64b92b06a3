//go:build linux && (amd64 || arm64 || riscv64 || 386 || arm || ppc64 || ppc64le || s390x || loong64)

package proxy

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SO_MEMINFO (asm-generic/socket.h) and the index of the drop counter in
// the array it returns (linux/sock_diag.h SK_MEMINFO_DROPS).
const (
	soMeminfo      = 55
	skMeminfoDrops = 8
)

// socketDrops is the number of datagrams the kernel dropped on pc because
// its receive buffer was full (ok false where the kernel cannot say).
func socketDrops(pc *net.UDPConn) (uint64, bool) {
	raw, err := pc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info [16]uint32
	var ok bool
	raw.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(info))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, soMeminfo,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&l)), 0)
		ok = e == 0 && l > skMeminfoDrops*4
	})
	return uint64(info[skMeminfoDrops]), ok
}
