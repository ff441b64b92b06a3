package shareholder

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// The kernel's record of a Unix socket client's user is read back: the
// test's own user, on both ends.
func TestPeerUIDOfUnixSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_PEERCRED is read on Linux only; elsewhere the socket's mode is the check")
	}
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			got <- c
		}
	}()
	cli, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var srv net.Conn
	select {
	case srv = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
	}
	defer srv.Close()
	uid, known, err := peerUID(srv)
	if err != nil || !known || uid != os.Geteuid() {
		t.Fatalf("peerUID = %d, %v, %v; want %d, true, nil", uid, known, err, os.Geteuid())
	}
	if _, known, err := peerUID(&net.TCPConn{}); known || err != nil {
		t.Fatalf("peerUID of a TCP conn: known %v, err %v", known, err)
	}
}

func TestControlPeerAllowed(t *testing.T) {
	for _, c := range []struct {
		uid, self int
		want      bool
	}{{1000, 1000, true}, {0, 1000, true}, {0, 0, true}, {1001, 1000, false}, {65534, 0, false}} {
		if got := controlPeerAllowed(c.uid, c.self); got != c.want {
			t.Errorf("uid %d, daemon %d: %v, want %v", c.uid, c.self, got, c.want)
		}
	}
}

// A client of another user, or one whose user cannot be read, gets no
// answer (and no reload); the daemon's own user still does.
func TestControlSocketRefusesOtherUsers(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	path := s.ControlSocket()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orig := controlPeerUID.Load()
	t.Cleanup(func() { controlPeerUID.Store(orig) })
	other := os.Geteuid() + 4242
	if other == 0 {
		other = 4242
	}
	for name, fake := range map[string]peerUIDFunc{
		"another user": func(net.Conn) (int, bool, error) { return other, true, nil },
		"unknown user": func(net.Conn) (int, bool, error) { return 0, false, errors.New("getsockopt failed") },
	} {
		controlPeerUID.Store(&fake)
		// Closed unanswered: the client reads an empty answer or a reset,
		// depending on whether its request was still unread.
		if st, err := RequestReload(ctx, path); err == nil {
			t.Fatalf("%s: reload answered: %+v", name, st)
		}
	}
	controlPeerUID.Store(orig)
	st, err := RequestStatus(ctx, path)
	if err != nil {
		t.Fatalf("the daemon's own user: %v", err)
	}
	if st.Generation != 1 {
		t.Fatalf("a refused reload was carried out: generation %d, want 1", st.Generation)
	}
}
