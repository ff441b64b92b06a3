package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// A route pair held to TLS 1.2 carries a megabyte each way intact, over
// ECDHE-PSK by default and over plain PSK when the client asks for it.
func TestTCPRoutesAtTLS12(t *testing.T) {
	for _, c := range []struct {
		name, suite, logSuite string
	}{
		{"default", "", tlspsk.CipherSuiteName(tlspsk.DefaultCipherSuites12()[0])},
		{"plain", "PSK-AES128-GCM-SHA256", "PSK-AES128-GCM-SHA256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := randomKey(t)
			srv := serverProxy(t, "tls://127.0.0.1:0", "tcp://"+echoServer(t).String(), PSKConfig{Hex: hexKey(key)}, nil)
			cli := clientProxy(t, "tcp://127.0.0.1:0", "tls://"+srv.url("svc"), PSKConfig{Hex: hexKey(key)}, func(r *Route) {
				r.TLS.MaxVersion = "1.2"
				if c.suite != "" {
					r.TLS.CipherSuites = []string{c.suite}
				}
			})
			msg := make([]byte, 1<<20)
			rand.Read(msg)
			got, err := roundTrip(t, cli.url("app"), msg)
			if err != nil || sha256.Sum256(got) != sha256.Sum256(msg) {
				t.Fatalf("echo through a TLS 1.2 route pair: %d of %d bytes, %v", len(got), len(msg), err)
			}
			waitFor(t, 5*time.Second, "the server's tunnel log line", func() bool {
				return strings.Contains(srv.logs.String(), "version=TLS1.2") && strings.Contains(srv.logs.String(), "suite="+c.logSuite)
			})
		})
	}
}

// tls.require_forward_secrecy on a server refuses a client that offers
// only plain PSK suites, and still serves ECDHE-PSK.
func TestTCPRequireForwardSecrecy(t *testing.T) {
	key := randomKey(t)
	srv := serverProxy(t, "tls://127.0.0.1:0", "tcp://"+echoServer(t).String(), PSKConfig{Hex: hexKey(key)}, func(r *Route) {
		r.TLS.RequireForwardSecrecy = true
	})
	plain := clientProxy(t, "tcp://127.0.0.1:0", "tls://"+srv.url("svc"), PSKConfig{Hex: hexKey(key)}, func(r *Route) {
		r.TLS.MaxVersion = "1.2"
		r.TLS.CipherSuites = []string{"PSK-AES128-GCM-SHA256"}
	})
	if got, err := roundTrip(t, plain.url("app"), []byte("no forward secrecy")); err == nil && len(got) > 0 {
		t.Fatalf("a plain-PSK client got %q through a server that requires forward secrecy", got)
	}
	waitFor(t, 5*time.Second, "no_shared_parameters on the server", func() bool {
		return metricValue(srv.met.handshakeFailures.WithLabelValues("svc", "no_shared_parameters")) >= 1
	})
	fs := clientProxy(t, "tcp://127.0.0.1:0", "tls://"+srv.url("svc"), PSKConfig{Hex: hexKey(key)}, func(r *Route) {
		r.TLS.MaxVersion = "1.2"
	})
	if got, err := roundTrip(t, fs.url("app"), []byte("ecdhe")); err != nil || !bytes.Equal(got, []byte("ecdhe")) {
		t.Fatalf("an ECDHE-PSK client: %q, %v", got, err)
	}
}

func TestAllowPSKOnlyAndRequireForwardSecrecyConflict(t *testing.T) {
	r := testRoute("svc", "tls://127.0.0.1:0", "tcp://127.0.0.1:1")
	r.TLS.AllowPSKOnly, r.TLS.RequireForwardSecrecy = true, true
	r.TLS.PSKHash = "sha256"
	if _, err := tlsSettings(&r); err == nil || !strings.Contains(err.Error(), "require_forward_secrecy") {
		t.Fatalf("got %v", err)
	}
}
