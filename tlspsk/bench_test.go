package tlspsk

import (
	"crypto"
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

// Benchmarks: tlspsk TLS 1.3 PSK and TLS 1.2 PSK / ECDHE_PSK next to
// crypto/tls TLS 1.3 and TLS 1.2 with an ECDSA P-256 certificate, over
// loopback TCP, in the same run. Handshakes include the TCP connect;
// crypto/tls has session tickets off (full handshakes). The tlspsk server
// has the default Config (TLS 1.2 and 1.3); the client names one suite, and
// for TLS 1.2 offers only TLS 1.2.

type endpoint func(net.Conn) interface {
	net.Conn
	Handshake() error
}

// benchCertConfigs returns crypto/tls configs for one version and group:
// the group must be set, or Go's client would send X25519MLKEM768 first.
func benchCertConfigs(b *testing.B, version uint16, group tls.CurveID) (client, server *tls.Config) {
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
		MinVersion: version, MaxVersion: version, SessionTicketsDisabled: true}
	client = &tls.Config{RootCAs: pool, ServerName: "bench", MinVersion: version, MaxVersion: version,
		CurvePreferences: []tls.CurveID{group}}
	if version == tls.VersionTLS12 {
		client.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	}
	return client, server
}

type benchPair struct {
	name           string
	client, server endpoint
	version        uint16  // expected version
	group          CurveID // expected group (0: none); same numbers as tls.CurveID
}

// checkState fails the benchmark unless the client negotiated what the
// pair's name says.
func (p benchPair) checkState(b *testing.B, c any) {
	var v uint16
	var g CurveID
	switch c := c.(type) {
	case *Conn:
		st := c.ConnectionState()
		v, g = st.Version, st.Group
	case *tls.Conn:
		st := c.ConnectionState()
		v, g = st.Version, CurveID(st.CurveID)
	}
	if v != p.version || g != p.group {
		b.Fatalf("%s: negotiated version %#x group %v", p.name, v, g)
	}
}

func tlsEndpoints(cc, sc *tls.Config) (client, server endpoint) {
	return func(n net.Conn) interface {
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
		}
}

func benchPairs(b *testing.B) []benchPair {
	cc13, sc13 := benchCertConfigs(b, tls.VersionTLS13, tls.X25519)
	cc13h, sc13h := benchCertConfigs(b, tls.VersionTLS13, tls.X25519MLKEM768)
	cc12, sc12 := benchCertConfigs(b, tls.VersionTLS12, tls.X25519)
	psk := func(g CurveID, suite uint16) benchPair {
		c := &Config{Key: testKey, CipherSuites: []uint16{suite}}
		if g != 0 {
			c.CurvePreferences = []CurveID{g}
		}
		if !suiteByID(suite).tls13 {
			c.MaxVersion = VersionTLS12
		}
		s := &Config{Key: testKey}
		if h := suiteByID(suite).hash; suiteByID(suite).tls13 && h != crypto.SHA256 {
			c.PSKHash, s.PSKHash = h, h // a TLS 1.3 PSK is tied to the suite's hash
		}
		v := VersionTLS13
		if !suiteByID(suite).tls13 {
			v = VersionTLS12
		}
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
			}, v, g}
	}
	p13 := benchPair{name: "crypto-tls/TLS1.3/ECDSA-P256-cert/X25519", version: VersionTLS13, group: X25519}
	p13h := benchPair{name: "crypto-tls/TLS1.3/ECDSA-P256-cert/X25519MLKEM768", version: VersionTLS13, group: X25519MLKEM768}
	p12 := benchPair{name: "crypto-tls/TLS1.2/ECDHE-ECDSA-AES128-GCM-SHA256/X25519", version: VersionTLS12, group: X25519}
	p13.client, p13.server = tlsEndpoints(cc13, sc13)
	p13h.client, p13h.server = tlsEndpoints(cc13h, sc13h)
	p12.client, p12.server = tlsEndpoints(cc12, sc12)
	return []benchPair{
		psk(X25519, TLS_AES_128_GCM_SHA256),
		psk(CurveP256, TLS_AES_128_GCM_SHA256),
		psk(X25519MLKEM768, TLS_AES_128_GCM_SHA256),
		psk(X25519, TLS_CHACHA20_POLY1305_SHA256),
		psk(X25519, TLS_AES_256_GCM_SHA384),
		p13,
		p13h,
		// TLS 1.2: plain PSK (RFC 4279, no ECDHE) and ECDHE_PSK (RFC 5489).
		psk(0, TLS_PSK_WITH_AES_128_GCM_SHA256),
		psk(0, TLS_PSK_WITH_AES_256_GCM_SHA384),
		psk(0, TLS_PSK_WITH_CHACHA20_POLY1305_SHA256),
		psk(X25519, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256),
		psk(CurveP256, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256),
		p12,
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
				if i == 0 {
					p.checkState(b, c)
				}
				rc.Close()
				rs.Close()
			}
		})
	}
}

func BenchmarkThroughput(b *testing.B) {
	for _, p := range benchPairs(b) {
		switch p.name {
		case "tlspsk/TLS_AES_128_GCM_SHA256/P-256", "tlspsk/TLS_AES_128_GCM_SHA256/X25519MLKEM768",
			"tlspsk/ECDHE-PSK-CHACHA20-POLY1305/P-256", "crypto-tls/TLS1.3/ECDSA-P256-cert/X25519MLKEM768":
			continue // same record layer as the X25519 case
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
			p.checkState(b, c)
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
