package shareholder

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TLS 1.2 is refused at the handshake: the channel binding needs 1.3.
func TestServerRefusesTLS12(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	c, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err == nil {
		c.Close()
		t.Fatal("TLS 1.2 handshake succeeded")
	}
}

// Refusals are counted by reason and check on the metrics listener; a wrong
// method is a bad request.
func TestServerMetricsAndMethod(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	c := dialServer(t, s)
	req, _ := http.NewRequest(http.MethodGet, "https://"+s.Addr().String()+ReleasePath, nil)
	req.Write(c.c)
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET: HTTP %d", resp.StatusCode)
	}
	c2 := dialServer(t, s)
	tok, _ := f.att.Mint("wrong-audience", []string{c2.nonce})
	c2.post(t, requestBody(tok))
	m := metricsGet(t, s)
	for _, want := range []string{
		`mcbn_shareholder_refusals_total{check="method",reason="bad_request"} 1`,
		`mcbn_shareholder_refusals_total{check="token_audience",reason="token_invalid"} 1`,
		`mcbn_shareholder_consent_granted 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, tok) || strings.Contains(m, "sub=") {
		t.Fatal("metrics hold token material")
	}
}

// metricsGet scrapes the metrics listener.
func metricsGet(t *testing.T, s *Server) string {
	t.Helper()
	if s.MetricsAddr() == nil {
		t.Fatal("no metrics listener")
	}
	resp, err := http.Get("http://" + s.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: HTTP %d", resp.StatusCode)
	}
	return string(b)
}
