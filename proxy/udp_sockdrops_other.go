//go:build !(linux && (amd64 || arm64 || riscv64 || 386 || arm || ppc64 || ppc64le || s390x || loong64))

package proxy

import "net"

// socketDrops: this platform does not report a socket's drops.
func socketDrops(*net.UDPConn) (uint64, bool) { return 0, false }
