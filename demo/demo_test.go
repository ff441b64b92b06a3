package demo

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/tlspsk"
)

// syncBuffer is the narration, written by Run and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The demo runs non-interactively. Run itself checks every step's traffic
// outcome (it returns an error when a step goes wrong), so a nil error is
// the main proof; the narration must also show the steps in order, finish
// well under a minute, and hold neither a share nor the PSK.
func TestDemoRuns(t *testing.T) { testDemoRuns(t, false) }

// The same story with a group from the dealer-free ceremony (--dkg).
func TestDemoRunsWithDKG(t *testing.T) { testDemoRuns(t, true) }

func testDemoRuns(t *testing.T, useDKG bool) {
	dir := t.TempDir()
	var out syncBuffer
	// A bound so that a stuck step fails the test instead of hanging it;
	// how long the demo takes is logged, not asserted (it prints it too).
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	if err := Run(ctx, Options{Out: &out, Dir: dir, DKG: useDKG}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Logf("demo took %s:\n%s", time.Since(start), text)
	setup := "the demo plays the dealer"
	if useDKG {
		setup = "dealer-free ceremony (DKG)"
	}
	pos := 0
	for _, want := range []string{
		"Key setup", setup, "dev attester", "three shareholders", "server proxy and the client proxy",
		"TCP: GET /consent", "UDP: 3 datagrams",
		"bob revokes", "bob refused", "TCP: GET /consent",
		"carol revokes", "TCP: a new tunnel is refused", "UDP: a new session gets no echo",
		"bob grants", "ready again", "TCP: GET /consent", "UDP: 3 datagrams",
		"openssl s_client -tls1_3 -psk_identity Client_identity", "Done in",
	} {
		i := strings.Index(text[pos:], want)
		if i < 0 {
			t.Fatalf("narration lacks %q after position %d", want, pos)
		}
		pos += i + len(want)
	}
	checkNoSecret(t, dir, text)
}

// checkNoSecret fails if the narration holds a share value or the PSK.
func checkNoSecret(t *testing.T, dir, text string) {
	t.Helper()
	g, err := psk.LoadGroup(filepath.Join(dir, "group.json"))
	if err != nil {
		t.Fatal(err)
	}
	var shares []*psk.Share
	for _, p := range participants {
		s, err := psk.LoadShare(filepath.Join(dir, p+".share.json"))
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
		if strings.Contains(text, hex.EncodeToString(s.Value)) {
			t.Errorf("the narration holds %s's share", p)
		}
	}
	key := derive(t, g, shares[:2])
	if strings.Contains(strings.ToLower(text), hex.EncodeToString(key)) {
		t.Error("the narration holds the PSK")
	}
}

func derive(t *testing.T, g *psk.Group, shares []*psk.Share) []byte {
	t.Helper()
	secret, err := psk.Combine(g, shares)
	if err != nil {
		t.Fatal(err)
	}
	defer psk.Wipe(secret)
	key, err := psk.DerivePSK(secret, g.ID, psk.DefaultIdentity, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// With Keep, the network stays up: the key 'mcbn psk combine' gives from
// the demo's key directory (what the printed openssl line uses) opens a
// TLS-PSK connection to the printed server proxy address, and an HTTP
// request through it reaches the backend. Cancelling (Ctrl-C) stops the
// demo cleanly and the temporary directory is removed.
func TestDemoKeepAndHandTry(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo a second time")
	}
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var info Info
	tried := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Out: &out, Keep: true, OnKeep: func(in Info) {
			info = in
			tried <- handTry(t, in)
			cancel()
		}})
	}()
	select {
	case err := <-done:
		t.Fatalf("demo ended before keeping: %v\n%s", err, out.String())
	case err := <-tried:
		if err != nil {
			t.Fatalf("by-hand connection: %v\n%s", err, out.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("demo did not reach --keep:\n%s", out.String())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo after Ctrl-C: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop after cancel")
	}
	text := out.String()
	if !strings.Contains(text, "openssl s_client") || !strings.Contains(text, info.ServerTLS) || !strings.Contains(text, info.Dir) {
		t.Fatalf("the openssl line does not name the server proxy and key directory:\n%s", text)
	}
	if _, err := os.Stat(info.Dir); !os.IsNotExist(err) {
		t.Fatalf("temporary directory %s left behind (%v)", info.Dir, err)
	}
}

// handTry does what the printed openssl line does, with package tlspsk.
func handTry(t *testing.T, in Info) error {
	g, err := psk.LoadGroup(filepath.Join(in.Dir, "group.json"))
	if err != nil {
		return err
	}
	var shares []*psk.Share
	for _, p := range []string{"alice", "bob"} {
		s, err := psk.LoadShare(filepath.Join(in.Dir, p+".share.json"))
		if err != nil {
			return err
		}
		shares = append(shares, s)
	}
	c, err := tlspsk.Dial("tcp", in.ServerTLS, &tlspsk.Config{Identity: in.Identity, Key: derive(t, g, shares), MinVersion: tlspsk.VersionTLS13})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /by-hand HTTP/1.0\r\n\r\n"); err != nil {
		return err
	}
	b, _ := io.ReadAll(c)
	if !strings.Contains(string(b), backendGreeting) {
		return errUnexpected(string(b))
	}
	return nil
}

type errUnexpected string

func (e errUnexpected) Error() string { return "unexpected answer: " + string(e) }
