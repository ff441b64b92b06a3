package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/tlspsk"
)

// requestLoop is a client app sending one HTTP request every 10 ms, each
// on a new connection (so a new tunnel, with the key the client proxy
// holds at that moment), counting what fails.
type requestLoop struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	lastErr      string
	stop, done   chan struct{}
	once         sync.Once
}

func startLoop(ctx context.Context, addr string) *requestLoop {
	l := &requestLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.sent.Add(1)
			if _, err := httpThrough(ctx, addr); err != nil && ctx.Err() == nil {
				l.failed.Add(1)
				l.mu.Lock()
				l.lastErr = err.Error()
				l.mu.Unlock()
			}
		}
	}()
	return l
}

// more waits until the loop has sent k more requests, so that traffic
// straddles the step just taken.
func (l *requestLoop) more(ctx context.Context, k int64) error {
	target := l.sent.Load() + k
	return waitUntil(ctx, fmt.Sprintf("%d more requests", k), func() bool { return l.sent.Load() >= target })
}

// halt stops the loop (idempotent) and returns its counts and the last
// failure.
func (l *requestLoop) halt() (sent, failed int64, lastErr string) {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent.Load(), l.failed.Load(), l.lastErr
}

// longConn is one keep-alive HTTP connection through the client proxy:
// one tunnel, kept open across the key change.
type longConn struct {
	c  net.Conn
	br *bufio.Reader
	n  int // requests answered on it
}

func openLong(addr string) (*longConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &longConn{c: c, br: bufio.NewReader(c)}, nil
}

// roundTrip sends one request on the connection and returns the answer's
// first line.
func (l *longConn) roundTrip() (string, error) {
	l.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(l.c, "GET /long-lived HTTP/1.1\r\nHost: demo\r\n\r\n"); err != nil {
		return "", fmt.Errorf("long-lived connection: %w", err)
	}
	resp, err := http.ReadResponse(l.br, nil)
	if err != nil {
		return "", fmt.Errorf("long-lived connection: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if err != nil {
		return "", fmt.Errorf("long-lived connection: %w", err)
	}
	line := strings.TrimSpace(string(body))
	if !strings.HasPrefix(line, backendGreeting) {
		return "", fmt.Errorf("long-lived connection: unexpected answer %q", line)
	}
	l.n++
	return line, nil
}

func (l *longConn) close() {
	if l != nil {
		l.c.Close()
	}
}

// epochKey is the PSK of an epoch in share mode, from alice's and bob's
// shares in the demo's key directory: what `mcbn psk combine --epoch N`
// gives. Only the demo can do this, because it plays every participant;
// the key is used for one connection and never printed.
func epochKey(dir string, epoch uint64) ([]byte, error) {
	g, err := psk.LoadGroup(filepath.Join(dir, "group.json"))
	if err != nil {
		return nil, err
	}
	var shares []*psk.Share
	defer func() { wipeAll(shares) }()
	for _, p := range []string{"alice", "bob"} {
		s, err := psk.LoadShare(filepath.Join(dir, p+".share.json"))
		if err != nil {
			return nil, err
		}
		shares = append(shares, s)
	}
	secret, err := psk.Combine(g, shares)
	if err != nil {
		return nil, err
	}
	defer psk.Wipe(secret)
	return psk.DerivePSK(secret, g.KeyID(), psk.DefaultIdentity, epoch, 0)
}

// byHand connects to the server proxy as a TLS-PSK client would by hand
// (openssl s_client -psk_identity ID/EPOCH), with the epoch's right key,
// and sends one request.
func byHand(ctx context.Context, dir, serverTLS string, epoch uint64) error {
	key, err := epochKey(dir, epoch)
	if err != nil {
		return err
	}
	defer psk.Wipe(key)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	id := fmt.Sprintf("%s/%d", psk.DefaultIdentity, epoch)
	c, err := tlspsk.DialContext(ctx, "tcp", serverTLS, &tlspsk.Config{Identity: id, Key: key, MinVersion: tlspsk.VersionTLS13})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /by-hand HTTP/1.0\r\n\r\n"); err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(c, 4096))
	if !strings.Contains(string(b), backendGreeting) {
		return fmt.Errorf("no answer from the server app (%v)", err)
	}
	return nil
}
