package proxy

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAdminIdleConnectionsBounded: more idle connections to the admin port
// than its bound do not pile up (the server holds at most the bound, the
// oldest idle ones cut first), /healthz still answers at once, answers
// close their connection (no keep-alive), an idle connection is cut after
// the read-header timeout, and tunnels are unaffected.
func TestAdminIdleConnectionsBounded(t *testing.T) {
	key := randomKey(t)
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`mode: server
admin: 127.0.0.1:0
routes:
  - name: web
    listen: tls://127.0.0.1:0
    connect: tcp://%s
    psk: {hex: %s}
`, echoServer(t), hexKey(key))))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p.adminMaxConns = 16
	p.adminHeaderTimeout = 2 * time.Second
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := startYAML(t, fmt.Sprintf("mode: client\nroutes:\n  - name: web\n    listen: tcp://127.0.0.1:0\n    connect: tls://%s\n    psk: {hex: %s}\n",
		p.Addr("web"), hexKey(key)))
	admin := p.AdminAddr().String()
	ln := p.adminLn.(*adminListener)

	const idle = 100
	conns := make([]net.Conn, 0, idle)
	for i := 0; i < idle; i++ {
		c, err := net.Dial("tcp", admin)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	if n := ln.open(); n > 16 {
		t.Fatalf("the admin server holds %d connections, more than its bound of 16", n)
	}
	// The probe is accepted after every idle connection (the accept queue
	// is first in, first out), so by its answer the oldest 85 are cut.
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + admin + "/healthz")
	if err != nil {
		t.Fatalf("/healthz with %d idle admin connections: %v", idle, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("/healthz = %d, close=%v; want 200 and the connection closed after the answer", resp.StatusCode, resp.Close)
	}
	if n := ln.open(); n > 16 {
		t.Fatalf("the admin server holds %d connections, more than its bound of 16", n)
	}
	cut := 0
	for _, c := range conns[:idle-16] {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			cut++
		}
	}
	if cut != idle-16 {
		t.Fatalf("%d of the %d oldest idle connections were cut, want all", cut, idle-16)
	}
	// The newest idle ones go after the read-header timeout.
	last := conns[idle-1]
	last.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := last.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("an idle admin connection outlived the read-header timeout: %v", err)
	}
	if got, err := roundTrip(t, client.url("web"), []byte("tunnel")); err != nil || string(got) != "tunnel" {
		t.Fatalf("tunnel next to the admin flood: %q, %v", got, err)
	}
	// A request on a connection is answered once, then the connection ends.
	c, err := net.Dial("tcp", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var all strings.Builder
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		all.WriteString(line)
		if err != nil {
			break
		}
	}
	if n := strings.Count(all.String(), "HTTP/1.1 200"); n != 1 {
		t.Fatalf("%d answers on one admin connection, want 1:\n%s", n, all.String())
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
