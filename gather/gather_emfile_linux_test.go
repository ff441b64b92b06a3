package gather

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcbn/mcbn/shareholder"
)

// exhaustFDs leaves this process without a free file descriptor: it lowers
// the soft RLIMIT_NOFILE to a little above the highest descriptor in use and
// fills every free slot below it. The returned function (also run at
// cleanup) gives them back.
func exhaustFDs(t *testing.T) func() {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	highest := 0
	for _, e := range fds {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > highest {
			highest = n
		}
	}
	var held []int
	var once sync.Once
	restore := func() {
		once.Do(func() {
			for _, fd := range held {
				syscall.Close(fd)
			}
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
				t.Errorf("restoring RLIMIT_NOFILE: %v", err)
			}
		})
	}
	t.Cleanup(restore)
	lim := old
	lim.Cur = uint64(highest + 64)
	if lim.Cur > old.Cur {
		t.Fatalf("descriptor %d is already near the limit %d", highest, old.Cur)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	for {
		fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EMFILE {
			return restore
		}
		if err != nil || len(held) > 1024 {
			restore()
			t.Fatalf("filling descriptors: %v (%d held)", err, len(held))
		}
		held = append(held, fd)
	}
}

// A ready proxy that runs out of file descriptors drops its key (it cannot
// gather), and its log says the shareholders were unreachable because of a
// local error, not that consent was withdrawn.
func TestSourceFDExhaustionNotWordedAsConsent(t *testing.T) {
	f := newFixture(t)
	var entries []ShareholderConfig
	for _, n := range names {
		entries = append(entries, entry(n, f.startServer(n, f.devPolicy, shareholder.ConsentGranted)))
	}
	cfg := f.sourceConfig(entries...)
	cfg.Refresh = time.Hour // only kickRound starts the next round
	cfg.Timeout = 2 * time.Second
	src, err := NewSharesSource(cfg, nil, f.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitFor(t, "ready", func() bool { return src.Status().Ready })

	restore := exhaustFDs(t)
	// Not Reload: that re-reads the group file first, and fails (keeping
	// the key) without descriptors.
	src.kickRound()
	waitFor(t, "a round without file descriptors", func() bool { return src.Rounds() >= 2 })
	restore()

	prog := src.Progress()
	local := 0
	for _, o := range prog.Outcomes {
		if o.State == StateRefused {
			t.Errorf("%s counted as a refusal: %s", o.Name, prog)
		}
		if o.Local && o.Reason == "local error: too many open files" {
			local++
		}
	}
	if local == 0 || src.Status().Ready {
		t.Fatalf("round without descriptors: %s (ready %v)", prog, src.Status().Ready)
	}
	var logs []string // the source's, not the daemons'
	for _, l := range strings.Split(f.logs.String(), "\n") {
		if strings.Contains(l, "source=shares") {
			logs = append(logs, l)
		}
	}
	all := strings.Join(logs, "\n")
	if !strings.Contains(all, `msg="PSK dropped: shareholders unreachable: 0/3 valid, threshold 2; `) ||
		!strings.Contains(all, "local error: too many open files") {
		t.Fatalf("log does not say the shareholders were unreachable for a local error:\n%s", all)
	}
	if strings.Contains(all, "consent") {
		t.Fatalf("log blames consent:\n%s", all)
	}
	t.Logf("source log:\n%s", all)
}
