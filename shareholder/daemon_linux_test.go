//go:build linux

package shareholder

import (
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Many idle connections near the descriptor limit (the finding: one release
// stalled 18 s in the backlog while accept failed with EMFILE): with
// max_connections the daemon holds at most that many, closing the oldest
// idle one for a newcomer, so a real release still goes through at once.
//
// The process's descriptor limit is lowered for the test (and restored):
// 150 idle client connections plus, without a cap, as many accepted ones
// would exceed it.
func TestIdleConnectionsNearDescriptorLimit(t *testing.T) {
	f := newFixture(t)
	s := f.startCustom("alice", replacing(t, "reload_interval: 50ms\n", "reload_interval: 1h\nmax_connections: 16\n"))
	// Warm up: the verifier has the issuer's keys, so a release needs no
	// descriptor beyond its connection and the share file.
	if code, reason, err := f.tryRelease(s, "alice"); err != nil || code != http.StatusOK {
		t.Fatalf("warm-up release: %d %s %v", code, reason, err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	lim := orig
	lim.Cur = uint64(len(fds) + 200)
	if lim.Cur > orig.Cur {
		t.Fatalf("the descriptor limit %d is already below what the test needs", orig.Cur)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)

	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := range 150 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		idle = append(idle, c)
	}
	// The bound is a failure guard below the 5 s after which the daemon drops
	// idle connections: a release that had to wait for them fails here.
	code, reason, err := f.tryReleaseWithin(s, "alice", 4*time.Second)
	if err != nil || code != http.StatusOK {
		t.Fatalf("release among 150 idle connections: %d %s %v", code, reason, err)
	}
	if held := s.guard.held(); held > 16 {
		t.Fatalf("the daemon holds %d connections, max_connections is 16", held)
	}
	if m := metricsGet(t, s); !strings.Contains(m, `mcbn_shareholder_connections_shed_total{listener="release",why="evicted"}`) {
		t.Fatalf("no eviction counted:\n%s", m)
	}
	if strings.Contains(f.logs.String(), "out of file descriptors") {
		t.Fatal("the daemon ran out of descriptors")
	}
}
