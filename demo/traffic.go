package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// httpThrough sends one HTTP request to the client proxy on a new
// connection, hence a new tunnel, and returns the first line of the answer.
func httpThrough(ctx context.Context, addr string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/consent", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	line := strings.TrimSpace(string(body))
	if !strings.HasPrefix(line, backendGreeting) {
		return "", fmt.Errorf("unexpected answer %q", line)
	}
	return line, nil
}

// udpThrough sends datagrams from a new local socket (so the client proxy
// opens a new DTLS session) and returns how many came back echoed.
func udpThrough(addr string, count int, wait time.Duration) (int, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	got := 0
	buf := make([]byte, 2048)
	for i := range count {
		msg := fmt.Sprintf("datagram %d", i+1)
		if _, err := c.Write([]byte(msg)); err != nil {
			return got, err
		}
		c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		if string(buf[:n]) == "echo: "+msg {
			got++
		}
	}
	return got, nil
}

// waitUntil polls cond every 50ms until it holds, ctx ends, or stepTimeout.
func waitUntil(ctx context.Context, what string, cond func() bool) error {
	deadline := time.Now().Add(stepTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", stepTimeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
