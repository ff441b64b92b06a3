package shareholder

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// faultFile is an audit file on a disk that fills up: once room bytes are
// written, a write stops mid-buffer with ENOSPC, as write(2) does on a
// full disk. It can also fail the next syncs or every truncate.
type faultFile struct {
	auditFile
	mu        sync.Mutex
	room      int // bytes that still fit; < 0: unlimited
	syncFails int // the next syncFails syncs fail
	truncErr  error
}

func (f *faultFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.room < 0 || len(p) <= f.room {
		if f.room >= 0 {
			f.room -= len(p)
		}
		return f.auditFile.Write(p)
	}
	n, err := f.auditFile.Write(p[:f.room])
	f.room -= n
	if err == nil {
		err = &fs.PathError{Op: "write", Path: "audit", Err: syscall.ENOSPC}
	}
	return n, err
}

func (f *faultFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.syncFails > 0 {
		f.syncFails--
		return &fs.PathError{Op: "sync", Path: "audit", Err: syscall.EIO}
	}
	return f.auditFile.Sync()
}

func (f *faultFile) Truncate(n int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.truncErr != nil {
		return f.truncErr
	}
	return f.auditFile.Truncate(n)
}

func (f *faultFile) set(fn func(f *faultFile)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// injectFault puts a faultFile under a's active file.
func injectFault(a *AuditLog, room int) *faultFile {
	a.mu.Lock()
	defer a.mu.Unlock()
	ff := &faultFile{auditFile: a.f, room: room}
	a.f = ff
	return ff
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func verifyPath(t *testing.T, path string) AuditSummary {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum, err := VerifyAudit(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return sum
}

var refuseRec = AuditRecord{Remote: "127.0.0.1:1", Decision: DecisionRefuse, Reason: ReasonBadRequest, Detail: "json: test"}

// A full disk in the middle of a line, a failing fsync and a failing cut:
// the file always ends on the last good line, the head does not move, the
// error says the record was not written, and writing resumes on the same
// chain once the disk has room again.
func TestAuditDiskFullRollsBack(t *testing.T) {
	path, _ := writeAuditLog(t, 3)
	a, err := OpenAuditLogWith(path, AuditOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	good, head := readBytes(t, path), a.Head()
	ff := injectFault(a, 40) // 40 bytes of room: the disk fills mid-line

	unchanged := func(what string) {
		t.Helper()
		if !bytes.Equal(readBytes(t, path), good) {
			t.Fatalf("%s: the file changed:\n%s", what, readBytes(t, path)[len(good):])
		}
		if a.Head() != head {
			t.Fatalf("%s: head moved", what)
		}
		verifyPath(t, path)
	}
	for i := range 2 { // the cut-off line, then a disk still full
		if _, err := a.Append(refuseRec); !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "record 4 not written") {
			t.Fatalf("append %d on a full disk: %v", i, err)
		}
		unchanged("disk full")
	}

	ff.set(func(f *faultFile) { f.room, f.syncFails = -1, 1 })
	if _, err := a.Append(refuseRec); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with a failing fsync: %v", err)
	}
	unchanged("fsync failed")

	// The cut itself fails: nothing more is written after the fragment
	// until it succeeds.
	ff.set(func(f *faultFile) { f.room, f.truncErr = 10, errors.New("truncate: injected") })
	if _, err := a.Append(refuseRec); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append: %v", err)
	}
	ff.set(func(f *faultFile) { f.room = -1 })
	if _, err := a.Append(refuseRec); err == nil || !strings.Contains(err.Error(), "still cannot cut") {
		t.Fatalf("append after a failed cut: %v", err)
	}
	if got := readBytes(t, path); len(got) != len(good)+10 {
		t.Fatalf("after a failed cut the file is %d bytes, want the good %d plus the 10-byte fragment", len(got), len(good))
	}
	ff.set(func(f *faultFile) { f.truncErr = nil })

	newHead, err := a.Append(refuseRec)
	if err != nil {
		t.Fatal(err)
	}
	if sum := verifyPath(t, path); sum.Lines != 4 || sum.Head != newHead || sum.LastSeq != 4 {
		t.Fatalf("after the disk has room again: %+v", sum)
	}
	a.Close()
	b, err := OpenAuditLog(path) // restart
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Head() != newHead {
		t.Fatal("reopened log has another head")
	}
}

// The daemon refuses a release (503 unavailable) while its audit log
// cannot be written, the chain still verifies afterwards, releases resume
// once the disk has room, and the daemon restarts cleanly on the log.
func TestAuditDiskFullDaemonRefuses(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	release := func(s *Server) (int, Refusal) {
		t.Helper()
		c := dialServer(t, s)
		tok, err := f.att.Mint("mcbn-test-alice", []string{c.nonce})
		if err != nil {
			t.Fatal(err)
		}
		code, ref, _ := c.post(t, requestBody(tok))
		return code, ref
	}
	if code, ref := release(s); code != http.StatusOK {
		t.Fatalf("release before the disk fills: %d %+v", code, ref)
	}
	ff := injectFault(s.audit, 50)
	for i := range 2 {
		if code, ref := release(s); code != http.StatusServiceUnavailable || ref.Reason != ReasonUnavailable {
			t.Fatalf("release %d on a full disk: %d %+v, want 503 %s", i, code, ref, ReasonUnavailable)
		}
	}
	if rec := lastAudit(t, f.auditPath("alice")); rec.Seq != 1 || rec.Decision != DecisionRelease {
		t.Fatalf("last record after the refusals: %+v", rec)
	}
	if !strings.Contains(f.logs.String(), "audit log write failed; refusing the release") {
		t.Fatal("the daemon did not log why it refused")
	}
	ff.set(func(f *faultFile) { f.room = -1 })
	if code, ref := release(s); code != http.StatusOK {
		t.Fatalf("release after the disk has room: %d %+v", code, ref)
	}
	s.Close()

	cfg, err := LoadConfig(f.configPath("alice"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewServer(context.Background(), cfg, ServerOptions{Logger: f.logger()})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer s2.Close()
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	if code, ref := release(s2); code != http.StatusOK {
		t.Fatalf("release after restart: %d %+v", code, ref)
	}
	if rec := lastAudit(t, f.auditPath("alice")); rec.Seq != 3 || rec.Decision != DecisionRelease {
		t.Fatalf("last record after restart: %+v", rec)
	}
}

// A torn last line (a crash mid-write) is cut off at start with a warning
// and the daemon starts; damage anywhere else still stops it, and the file
// is left as it was.
func TestAuditTornTailDaemonRestarts(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	c := dialServer(t, s)
	c.post(t, requestBody("not-a-token")) // one refusal on the log
	s.Close()
	path := f.auditPath("alice")
	good := readBytes(t, path)
	line, _, _ := encodeAuditLine(AuditRecord{Seq: 2, Time: "2026-01-01T00:00:00Z", Decision: DecisionRelease, Prev: lastHash(t, good)})
	cfg, err := LoadConfig(f.configPath("alice"))
	if err != nil {
		t.Fatal(err)
	}

	for _, torn := range [][]byte{line[:37], line} { // cut mid-line; whole but for its newline
		os.WriteFile(path, append(bytes.Clone(good), torn...), 0o600)
		s2, err := NewServer(context.Background(), cfg, ServerOptions{Logger: f.logger()})
		if err != nil {
			t.Fatalf("torn tail of %d bytes: %v", len(torn), err)
		}
		s2.Close()
		if !bytes.Equal(readBytes(t, path), good) {
			t.Fatalf("torn tail of %d bytes not cut off", len(torn))
		}
	}
	// The repair is logged (the daemon passes its logger once server.go
	// opens the log with OpenAuditLogWith; checked here directly).
	os.WriteFile(path, append(bytes.Clone(good), line[:37]...), 0o600)
	var logs lockedBuffer
	a, err := OpenAuditLogWith(path, AuditOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if !strings.Contains(logs.String(), "dropped a torn last line") || !strings.Contains(logs.String(), "bytes=37") {
		t.Fatalf("no warning about the torn line: %s", logs.String())
	}

	edited := bytes.Replace(good, []byte(`"refuse"`), []byte(`"release"`), 1)
	for name, data := range map[string][]byte{
		"edited line":             edited,
		"edited line, torn after": append(bytes.Clone(edited), line[:20]...),
	} {
		os.WriteFile(path, data, 0o600)
		_, err := NewServer(context.Background(), cfg, ServerOptions{Logger: quietLogger()})
		if err == nil || !strings.Contains(err.Error(), "line 1: content does not match its hash") {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(readBytes(t, path), data) {
			t.Fatalf("%s: refusing to start changed the file", name)
		}
	}
}

// lastHash is the hash of the last line of a log.
func lastHash(t *testing.T, data []byte) string {
	t.Helper()
	sum, err := VerifyAuditFile(bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	return sum.Head
}

// A log damaged by a write that was not cut back (older mcbn on a full
// disk: a fragment, then the next line right after it) is refused with a
// message saying so, and removing the fragment as it says restores it.
func TestAuditSplicedFragmentExplained(t *testing.T) {
	path, lines := writeAuditLog(t, 3)
	frag := lines[2][:30]
	data := append(bytes.Join(lines[:2], nil), frag...)
	data = append(data, lines[2]...)
	os.WriteFile(path, data, 0o600)
	_, err := OpenAuditLogWith(path, AuditOptions{Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "line 3: a cut-off record (its first 30 bytes) runs into a complete one") {
		t.Fatalf("spliced log: %v", err)
	}
	os.WriteFile(path, append(bytes.Join(lines[:2], nil), lines[2]...), 0o600)
	a, err := OpenAuditLogWith(path, AuditOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("after removing the fragment: %v", err)
	}
	a.Close()
}
