package tlspsk

import (
	"bytes"
	"crypto/aes"
	"net"
	"net/netip"
	"testing"
	"time"

	pionccm "github.com/pion/dtls/v3/pkg/crypto/ccm"
)

// Fuzz targets for the DTLS parsers: record headers, handshake fragments
// and their reassembly, ClientHello (both parsers), HelloVerifyRequest,
// connection_id, protected records of each suite, CCM against pion's, the
// listener's datagram routing and a handshake's datagram processing. Run
// one with: go test ./tlspsk -run '^$' -fuzz FuzzDTLSRecord -fuzztime 30s

func dtlsSeedHello() []byte {
	p := &dtlsHelloParams{random: make([]byte, 32), cookie: make([]byte, cookieLen), groups: []CurveID{X25519},
		suites: []uint16{TLS_PSK_WITH_AES_128_CCM_8, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256}, cid: []byte{}}
	return marshalDTLSClientHello(p)
}

func FuzzDTLSRecordHeader(f *testing.F) {
	f.Add(sealPlainDTLS(nil, recordHandshake, VersionDTLS12, 5, []byte("hello")), 0)
	f.Add(append([]byte{recordCID, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 0, 2, 'h', 'i'}, 0), 8)
	f.Fuzz(func(t *testing.T, d []byte, cidLen int) {
		if cidLen < 0 || cidLen > maxCIDLen {
			return
		}
		total := 0
		for len(d) > 0 {
			h, rec, rest, ok := nextDTLSRecord(d, cidLen)
			if !ok {
				break
			}
			if len(rec) < h.hdrLen || len(rec)+len(rest) != len(d) || h.seq > dtlsMaxSeq {
				t.Fatalf("bad split: %d + %d of %d", len(rec), len(rest), len(d))
			}
			total += len(rec)
			d = rest
		}
	})
}

func FuzzDTLSFragments(f *testing.F) {
	f.Add(dtlsMsg(typeClientKeyExchange, 0, []byte("identity")))
	frag := make([]byte, dtlsHandshakeHeaderLen+4)
	putFragmentHeader(frag, typeServerKeyExchange, 10, 1, 6, 4)
	f.Add(append(dtlsMsg(typeServerHelloDone, 0, nil), frag...))
	f.Fuzz(func(t *testing.T, b []byte) {
		hs := &dtlsHandshake{c: &DTLSConn{}}
		hs.addFragments(b, 0)
		hs.addFragments(b, 1)
		for _, r := range hs.slots {
			if r != nil && (r.filled > r.length || len(r.body) != r.length || r.length > dtlsMaxHandshakeMsg) {
				t.Fatalf("reassembly state %d/%d", r.filled, r.length)
			}
		}
		if r := hs.slots[0]; r != nil && r.filled == r.length {
			hs.deadline = farFuture
			m, err := hs.next()
			if err != nil || m.typ != r.typ || len(m.body()) != r.length {
				t.Fatalf("complete message not returned: %v", err)
			}
		}
	})
}

func FuzzDTLSClientHello(f *testing.F) {
	f.Add(dtlsSeedHello())
	f.Add([]byte{0xfe, 0xfd})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, peekOK := peekDTLSClientHello(b)
		ch, cookie, err := parseDTLSClientHello(b)
		if err == nil {
			if !peekOK {
				t.Fatal("full parse accepted what the listener's parse refused")
			}
			if len(cookie) > maxCookieLen || len(ch.random) != 32 {
				t.Fatal("bad fields")
			}
		}
	})
}

func FuzzDTLSHelloVerifyRequest(f *testing.F) {
	f.Add(appendHelloVerifyRequest(nil, make([]byte, cookieLen)))
	f.Add([]byte{0xfe, 0xff, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cookie, err := parseHelloVerifyRequest(b)
		if err == nil && !bytes.Equal(appendHelloVerifyRequest(nil, cookie)[2:], b[2:]) {
			t.Fatal("HelloVerifyRequest does not round-trip")
		}
		parseConnectionID(b)
	})
}

// FuzzDTLSOpenRecord opens arbitrary records under keys of each suite,
// with and without a CID, and sealed records must open.
func FuzzDTLSOpenRecord(f *testing.F) {
	k, _ := newDTLSCipher(dtlsSuiteByID(TLS_PSK_WITH_AES_128_CCM_8), make([]byte, 16), make([]byte, 4))
	rec, _ := k.seal(nil, recordApplicationData, 1<<48|7, []byte("hello"))
	f.Add(rec, []byte("payload"))
	f.Add([]byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, rec, payload []byte) {
		if len(payload) > maxPlaintext {
			return
		}
		for _, id := range DTLSCipherSuites() {
			s := dtlsSuiteByID(id)
			for _, cid := range [][]byte{nil, {1, 2, 3}} {
				k, err := newDTLSCipher(s, make([]byte, s.keyLen), make([]byte, 12))
				if err != nil {
					t.Fatal(err)
				}
				k.cid = cid
				if h, r, _, ok := nextDTLSRecord(rec, len(cid)); ok {
					k.open(bytes.Clone(r), h.hdrLen)
				}
				sealed, err := k.seal(nil, recordApplicationData, 1<<48|9, payload)
				if err != nil {
					t.Fatal(err)
				}
				h, r, _, ok := nextDTLSRecord(sealed, len(cid))
				if !ok {
					t.Fatal("sealed record does not parse")
				}
				typ, plain, err := k.open(r, h.hdrLen)
				if err != nil || typ != recordApplicationData || !bytes.Equal(plain, payload) {
					t.Fatalf("%s cid %v: sealed record does not open: %v", s.name, cid, err)
				}
			}
		}
	})
}

// FuzzCCM opens arbitrary ciphertexts with our CCM and pion's: they agree.
func FuzzCCM(f *testing.F) {
	b, _ := aes.NewCipher(make([]byte, 16))
	c, _ := newCCM(b, 8, 12)
	f.Add(c.Seal(nil, make([]byte, 12), []byte("plaintext"), []byte("ad")), []byte("ad"), true)
	f.Fuzz(func(t *testing.T, ct, ad []byte, short bool) {
		tag := 16
		if short {
			tag = 8
		}
		b, _ := aes.NewCipher(make([]byte, 16))
		ours, _ := newCCM(b, tag, 12)
		theirs, _ := pionccm.NewCCM(b, tag, 12)
		nonce := make([]byte, 12)
		p1, err1 := ours.Open(nil, nonce, ct, ad)
		p2, err2 := theirs.Open(nil, nonce, ct, ad)
		if (err1 == nil) != (err2 == nil) || !bytes.Equal(p1, p2) {
			t.Fatalf("CCM open differs from pion's: %v / %v", err1, err2)
		}
	})
}

// FuzzDTLSListener routes arbitrary datagrams from arbitrary addresses:
// nothing panics, and without a cookie no session appears.
func FuzzDTLSListener(f *testing.F) {
	f.Add(sealPlainDTLS(nil, recordHandshake, VersionDTLS12, 0, dtlsMsg(typeClientHello, 0, dtlsSeedHello())), uint16(4000))
	f.Add([]byte{recordCID, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0}, uint16(9))
	f.Fuzz(func(t *testing.T, d []byte, port uint16) {
		l := fuzzListener(t)
		l.handle(d, sessionKey{ap: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)}, nil)
		if st := l.Stats(); st.Sessions != 0 {
			t.Fatal("a session without a cookie")
		}
	})
}

var farFuture = time.Now().Add(time.Hour)

var fuzzListenerOnce struct {
	l *DTLSListener
}

// fuzzListener is one listener for the whole fuzzing process (a socket
// per input would run out of descriptors); its replies go to loopback
// ports nobody reads.
func fuzzListener(t *testing.T) *DTLSListener {
	if fuzzListenerOnce.l == nil {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		l, err := NewDTLSListener(pc, &DTLSConfig{Config: Config{Key: make([]byte, 16)}, ConnectionIDLength: 8})
		if err != nil {
			t.Fatal(err)
		}
		fuzzListenerOnce.l = l
	}
	return fuzzListenerOnce.l
}

// FuzzDTLSHandshakeDatagram feeds arbitrary datagrams to a handshake that
// has its read keys (both epochs are live).
func FuzzDTLSHandshakeDatagram(f *testing.F) {
	s := dtlsSuiteByID(TLS_PSK_WITH_AES_128_GCM_SHA256)
	k, _ := newDTLSCipher(s, make([]byte, 16), make([]byte, 4))
	fin, _ := k.seal(nil, recordHandshake, 1<<48, dtlsMsg(typeFinished, 2, make([]byte, 12)))
	f.Add(append(sealPlainDTLS(nil, recordHandshake, VersionDTLS12, 3, dtlsMsg(typeClientKeyExchange, 1, []byte{0, 1, 'a'})), fin...))
	f.Add(sealPlainDTLS(nil, recordAlert, VersionDTLS12, 3, []byte{2, 40}))
	f.Fuzz(func(t *testing.T, d []byte) {
		c := &DTLSConn{isClient: true}
		c.in.k, _ = newDTLSCipher(s, make([]byte, 16), make([]byte, 4))
		hs := &dtlsHandshake{c: c, recvSeq: 1, keysReady: true}
		hs.processDatagram(bytes.Clone(d))
		if len(hs.early) > dtlsMaxEarly || len(c.in.early) > dtlsMaxEarly {
			t.Fatal("unbounded early buffers")
		}
	})
}
