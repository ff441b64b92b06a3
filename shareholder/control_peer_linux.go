//go:build linux

package shareholder

import (
	"net"
	"syscall"
)

// peerUID returns the user ID of the process at the other end of a Unix
// socket connection: the credentials the kernel recorded when it connected
// (SO_PEERCRED), which the peer cannot forge. known is false when c is not
// a Unix socket.
func peerUID(c net.Conn) (uid int, known bool, err error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, false, nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, false, err
	}
	if credErr != nil {
		return 0, false, credErr
	}
	return int(cred.Uid), true, nil
}
