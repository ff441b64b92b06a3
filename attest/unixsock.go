package attest

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

// maxSocketPath is below the sun_path limit of Linux (108) and macOS (104).
const maxSocketPath = 100

// listenUnix listens on a Unix socket at path with permission mode, without
// a window in which the socket exists with looser permissions: it binds in
// a fresh private directory next to path, sets the mode, then renames the
// socket into place. A stale socket at path (no listener) is replaced; a
// live one or any other file is an error. Closing the listener removes path.
func listenUnix(path string, mode os.FileMode) (*net.UnixListener, error) {
	if mode != 0o600 && mode != 0o660 {
		return nil, fmt.Errorf("socket mode %#o not allowed (0600 or 0660)", mode)
	}
	if len(path) > maxSocketPath-20 {
		return nil, fmt.Errorf("socket path %s is %d bytes; keep it under %d", path, len(path), maxSocketPath-20)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".mcbn")
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	tmpSock := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpSock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmpSock, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Rename(tmpSock, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return l, nil
}

// removeStaleSocket removes path if it is a socket nobody listens on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket %s: a file that is not a socket is in the way", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("socket %s: already in use by another process", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("socket %s: removing stale socket: %w", path, err)
	}
	return nil
}
