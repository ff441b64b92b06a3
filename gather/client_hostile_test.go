package gather

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcbn/mcbn/shareholder"
)

// startHostile is a malicious co-participant's daemon: real TLS 1.3 with a
// pinned certificate, it reads the release request and answers with head
// followed by unit repeated until the proxy hangs up (every pause apart
// when pause is set; unit "" sends head only and holds the connection).
func startHostile(t *testing.T, name, head, unit string, pause time.Duration) ShareholderConfig {
	t.Helper()
	cert, err := shareholder.SelfSignedCert(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				// Unblock the writes below when the test ends, whatever the client does.
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				if _, err := c.Write([]byte(head)); err != nil {
					return
				}
				if unit == "" {
					c.Read(make([]byte, 1)) // until the client closes
					return
				}
				for {
					if _, err := c.Write([]byte(unit)); err != nil {
						return
					}
					if pause > 0 {
						time.Sleep(pause)
					}
				}
			}()
		}
	}()
	return ShareholderConfig{Name: name, URL: "https://" + ln.Addr().String(), Pin: shareholder.SPKIPin(cert.Leaf), Audience: "mcbn-test-" + name}
}

// countingConn counts the bytes the proxy reads from a shareholder, and
// refuses to read past hardCap so that a client without bounds fails this
// test instead of exhausting the machine's memory.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

const hardCap = 8 << 20

func (c countingConn) Read(p []byte) (int, error) {
	if c.n.Load() >= hardCap {
		return 0, errors.New("test cap: the client read 8 MiB from one shareholder")
	}
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// A hostile shareholder answering with an endless (or oversized) status
// line, header or body cannot make the proxy read more than a bounded
// number of bytes from it: the round names it, and the honest ones still
// reach T. This is the dry run of `mcbn proxy check`, which asks everyone,
// so the hostile reply is always read.
func TestClientBoundsHostileReplies(t *testing.T) {
	f := newFixture(t)
	a := f.startServer("alice", f.devPolicy, shareholder.ConsentGranted)
	b := f.startServer("bob", f.devPolicy, shareholder.ConsentGranted)
	junk := strings.Repeat("a", 4096)
	// TLS records, the read-ahead of crypto/tls and the handshake on top of
	// the reply budget.
	const bound = maxReplyBytes + 64<<10
	cases := []struct {
		name, head, unit string
		pause            time.Duration
		want             string // in the outcome's reason
	}{
		{"endless header", "HTTP/1.1 200 OK\r\n", "X-Junk: " + junk + "\r\n", 0, "reply header larger than 16384 bytes"},
		{"endless header line", "HTTP/1.1 200 OK\r\nX-Junk: ", junk, 0, "reply header larger than 16384 bytes"},
		{"endless status line", "HTTP/1.1 200 ", junk, 0, "reply header larger than 16384 bytes"},
		{"oversized finite header", "HTTP/1.1 200 OK\r\nX-Junk: " + strings.Repeat(junk, 5) + "\r\nContent-Length: 2\r\n\r\n{}", "", 0, "reply header larger than 16384 bytes"},
		{"endless body", "HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n", junk, 0, "reply body larger than 16384 bytes"},
		{"endless body until close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", junk, 0, "reply body larger than 16384 bytes"},
		{"endless refusal body", "HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n", junk, 0, "reply body larger than 16384 bytes"},
		{"endless chunk framing", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "1;" + junk[:3000] + "\r\na\r\n", 0, ""},
		{"trickled header", "HTTP/1.1 200 OK\r\n", "X: a\r\n", 20 * time.Millisecond, "timed out after 1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.sourceConfig(entry("alice", a), entry("bob", b), startHostile(t, "carol", tc.head, tc.unit, tc.pause))
			cfg.Timeout = time.Second
			p, err := prepare(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			var read atomic.Int64
			p.participants[2].(*daemonParticipant).dial = func(ctx context.Context, addr string) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					return nil, err
				}
				return countingConn{c, &read}, nil
			}
			provider, err := p.provider()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			prog, shares := gather(ctx, p, provider, false, nil)
			wipeShares(shares)
			if n := read.Load(); n > bound {
				t.Errorf("the proxy read %d bytes from the hostile shareholder, want at most %d", n, bound)
			}
			if !prog.Enough() || prog.Valid != 2 {
				t.Errorf("the honest shareholders did not reach T: %s", prog)
			}
			o := prog.Outcomes[2]
			if o.Name != "carol" || o.State != StateUnreachable || !strings.Contains(o.Reason, tc.want) || o.Local {
				t.Errorf("hostile outcome %+v, want carol unreachable: %q", o, tc.want)
			}
		})
	}
}

// The reply budget fails with its own error, never io.EOF, so a reply cut
// off at the bound cannot parse as a complete one.
func TestClientReplyBudget(t *testing.T) {
	b := &replyBudget{r: strings.NewReader(strings.Repeat("x", 100)), left: 10}
	buf := make([]byte, 64)
	n, err := b.Read(buf)
	if n != 10 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	if n, err := b.Read(buf); n != 0 || !errors.Is(err, errReplyTooLarge) {
		t.Fatalf("read past the budget: %d, %v", n, err)
	}
}

// countingReader counts what readReply takes from the connection.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzReadReply: whatever a shareholder sends, the proxy reads at most
// maxReplyBytes of it, and a refusal carries only a protocol reason code.
func FuzzReadReply(f *testing.F) {
	share := `{"version":1,"type":"share","group_id":"00","index":1,"participant":"alice","value":"00"}`
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"version\":1,\"share\":" + share + "}"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\n\r\n{\"error\":\"refused\",\"reason\":\"consent_revoked\"}"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\n\r\n{\"error\":\"refused\",\"reason\":\"\\u001b[31mforged\"}"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext\r\n{}\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxReplyHeader) + "\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n" + strings.Repeat("a", maxReplyBytes)))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200"))
	c := &daemonParticipant{name: "alice"}
	req, _ := http.NewRequest(http.MethodPost, "https://127.0.0.1:1/v1/release", nil)
	f.Fuzz(func(t *testing.T, reply []byte) {
		in := &countingReader{r: bytes.NewReader(reply)}
		sh, err := c.readReply(in, req)
		if in.n > maxReplyBytes {
			t.Fatalf("read %d bytes, at most %d allowed", in.n, maxReplyBytes)
		}
		var ref *RefusedError
		if errors.As(err, &ref) && knownReason(ref.Reason) != ref.Reason {
			t.Fatalf("refusal reason %q is not a protocol code", ref.Reason)
		}
		if err == nil {
			defer sh.Wipe()
			if sh.Participant == "" {
				t.Fatal("accepted a share without a participant")
			}
		}
	})
}
