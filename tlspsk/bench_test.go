package tlspsk

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// Benchmarks: tlspsk TLS 1.3 PSK next to crypto/tls TLS 1.3 with an ECDSA
// P-256 certificate, over loopback TCP, in the same run. Handshakes include
// the TCP connect; crypto/tls has session tickets off (full handshakes).

type endpoint func(net.Conn) interface {
	net.Conn
	Handshake() error
}

func benchCertConfigs(b *testing.B) (client, server *tls.Config) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion: tls.VersionTLS13, SessionTicketsDisabled: true}
	client = &tls.Config{RootCAs: pool, ServerName: "bench", MinVersion: tls.VersionTLS13}
	return client, server
}

type benchPair struct {
	name           string
	client, server endpoint
}

func benchPairs(b *testing.B) []benchPair {
	cc, sc := benchCertConfigs(b)
	psk := func(g CurveID, suite uint16) benchPair {
		c := &Config{Key: testKey, CurvePreferences: []CurveID{g}, CipherSuites: []uint16{suite}}
		s := &Config{Key: testKey}
		return benchPair{"tlspsk/" + CipherSuiteName(suite) + "/" + g.String(),
			func(n net.Conn) interface {
				net.Conn
				Handshake() error
			} {
				return Client(n, c)
			},
			func(n net.Conn) interface {
				net.Conn
				Handshake() error
			} {
				return Server(n, s)
			}}
	}
	return []benchPair{
		psk(X25519, TLS_AES_128_GCM_SHA256),
		psk(CurveP256, TLS_AES_128_GCM_SHA256),
		psk(X25519MLKEM768, TLS_AES_128_GCM_SHA256),
		psk(X25519, TLS_CHACHA20_POLY1305_SHA256),
		{"crypto-tls/ECDSA-P256-cert/X25519",
			func(n net.Conn) interface {
				net.Conn
				Handshake() error
			} {
				return tls.Client(n, cc)
			},
			func(n net.Conn) interface {
				net.Conn
				Handshake() error
			} {
				return tls.Server(n, sc)
			}},
	}
}

func loopback(b *testing.B) (net.Listener, func() (net.Conn, net.Conn)) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return l, func() (net.Conn, net.Conn) {
		ch := make(chan net.Conn, 1)
		go func() { s, _ := l.Accept(); ch <- s }()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		return c, <-ch
	}
}

func BenchmarkHandshake(b *testing.B) {
	for _, p := range benchPairs(b) {
		b.Run(p.name, func(b *testing.B) {
			l, dial := loopback(b)
			defer l.Close()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				rc, rs := dial()
				c, s := p.client(rc), p.server(rs)
				errc := make(chan error, 1)
				go func() { errc <- s.Handshake() }()
				if err := c.Handshake(); err != nil {
					b.Fatal(err)
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				rc.Close()
				rs.Close()
			}
		})
	}
}

func BenchmarkThroughput(b *testing.B) {
	for _, p := range benchPairs(b) {
		if p.name == "tlspsk/TLS_AES_128_GCM_SHA256/P-256" || p.name == "tlspsk/TLS_AES_128_GCM_SHA256/X25519MLKEM768" {
			continue // same record layer as X25519
		}
		b.Run(p.name, func(b *testing.B) {
			l, dial := loopback(b)
			defer l.Close()
			rc, rs := dial()
			defer rc.Close()
			defer rs.Close()
			c, s := p.client(rc), p.server(rs)
			go s.Handshake()
			if err := c.Handshake(); err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() { io.Copy(io.Discard, s); close(done) }()
			buf := make([]byte, 16<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
			<-done
		})
	}
}
