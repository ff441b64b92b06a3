package tlspsk

import (
	"bytes"
	"encoding/hex"
	"net"
	"testing"
	"time"
)

// Fuzz targets for every parser and for both endpoints fed arbitrary bytes.
// Run one with: go test ./tlspsk -run '^$' -fuzz FuzzServerBytes -fuzztime 30s

func seedClientHello(t testing.TB) []byte {
	raw, _ := marshalClientHello(&clientHelloParams{random: make([]byte, 32), sessionID: make([]byte, 32),
		suites: []uint16{TLS_AES_128_GCM_SHA256}, versions: []uint16{VersionTLS13}, groups: []CurveID{X25519, CurveP256},
		shares: []keyShare{{X25519, make([]byte, 32)}}, pskModes: []uint8{1, 0}, identity: []byte(DefaultIdentity),
		binderLen: 32, cookie: []byte{1, 2}})
	return raw
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzClientHello(f *testing.F) {
	f.Add(seedClientHello(f))
	f.Add(mustHex(rfc8448CH))
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := parseClientHello(b)
		if err == nil && ch.bindersLen > 0 && len(ch.truncated()) > len(b) {
			t.Fatal("truncation past the message")
		}
	})
}

func FuzzServerHello(f *testing.F) {
	f.Add(mustHex(rfc8448SH))
	f.Add(marshalServerHello(&serverHelloParams{random: helloRetryRandom, sessionID: make([]byte, 32), suite: 0x1301, hrrGroup: CurveP256}))
	f.Add(marshalServerHello(&serverHelloParams{random: make([]byte, 32), suite: 0x1301, keyShare: &keyShare{X25519, make([]byte, 32)}, withPSK: true}))
	f.Fuzz(func(t *testing.T, b []byte) { parseServerHello(b) })
}

func FuzzEncryptedExtensions(f *testing.F) {
	f.Add(mustHex(rfc8448EE))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseEncryptedExtensions(b)
		parseFinished(b, 32)
		parseKeyUpdate(b)
	})
}

func fuzzExt(f *testing.F, parse func([]byte), seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) { parse(b) })
}

func FuzzExtensionsBlock(f *testing.F) {
	fuzzExt(f, func(b []byte) { parseExtensions(b) }, []byte{0, 43, 0, 2, 3, 4, 0, 51, 0, 0})
}
func FuzzExtSupportedVersions(f *testing.F) {
	fuzzExt(f, func(b []byte) { parseSupportedVersionsCH(b); parseSupportedVersionSH(b) }, []byte{2, 3, 4}, []byte{3, 4})
}
func FuzzExtSupportedGroups(f *testing.F) {
	fuzzExt(f, func(b []byte) { parseSupportedGroups(b) }, []byte{0, 4, 0, 29, 0, 23})
}
func FuzzExtKeyShare(f *testing.F) {
	fuzzExt(f, func(b []byte) { parseKeyShareCH(b); parseKeyShareSH(b); parseKeyShareHRR(b) },
		append([]byte{0, 36, 0, 29, 0, 32}, make([]byte, 32)...), append([]byte{0, 29, 0, 32}, make([]byte, 32)...), []byte{0, 23})
}
func FuzzExtPSKModes(f *testing.F) { fuzzExt(f, func(b []byte) { parsePSKModes(b) }, []byte{1, 1}) }
func FuzzExtPreSharedKey(f *testing.F) {
	fuzzExt(f, func(b []byte) {
		ids, binders, bl, ok := parsePreSharedKeyCH(b)
		if ok && (len(ids) != len(binders) || bl > len(b)) {
			panic("inconsistent pre_shared_key")
		}
		parsePreSharedKeySH(b)
	}, append([]byte{0, 7, 0, 1, 'x', 0, 0, 0, 0, 0, 33, 32}, make([]byte, 32)...), []byte{0, 0})
}
func FuzzExtCookie(f *testing.F) { fuzzExt(f, func(b []byte) { parseCookie(b) }, []byte{0, 2, 1, 2}) }
func FuzzExtServerName(f *testing.F) {
	fuzzExt(f, func(b []byte) { parseServerName(b) }, []byte{0, 6, 0, 0, 3, 'a', '.', 'b'})
}

func FuzzAlert(f *testing.F) {
	f.Add([]byte{2, 40})
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseAlert(b)
		c := &Conn{}
		c.handleAlert(b)
	})
}

// FuzzRecord opens arbitrary records under TLS 1.3 keys and as plaintext.
func FuzzRecord(f *testing.F) {
	f.Add(mustHex(rfc8448ClientData))
	f.Add([]byte{22, 3, 3, 0, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < recordHeaderLen {
			return
		}
		for _, id := range []uint16{TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256} {
			var hc halfConn
			hc.setKeys13(suiteByID(id), make([]byte, 32))
			hc.open(bytes.Clone(b))
		}
		var plain halfConn
		plain.open(bytes.Clone(b))
	})
}

// feed runs one endpoint over a pipe whose peer writes b and closes.
func feed(t *testing.T, c *Conn, peer net.Conn, b []byte) {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	go func() {
		peer.Write(b)
		peer.Close()
	}()
	done := make(chan struct{})
	go func() {
		c.Handshake()
		close(done)
	}()
	go func() { // drain what the endpoint writes
		buf := make([]byte, 4096)
		for {
			if _, err := peer.Read(buf); err != nil {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("handshake hangs on arbitrary input")
	}
	c.Close()
}

// FuzzServerBytes feeds arbitrary bytes to a server: no panic, no hang.
func FuzzServerBytes(f *testing.F) {
	ch := seedClientHello(f)
	f.Add(append([]byte{22, 3, 1, byte(len(ch) >> 8), byte(len(ch))}, ch...))
	rfc := mustHex(rfc8448CH)
	f.Add(append([]byte{22, 3, 1, byte(len(rfc) >> 8), byte(len(rfc))}, rfc...))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	// legacy_version SSL 3.0; empty records and a CCS between the
	// fragments of a ClientHello.
	ssl3 := bytes.Clone(ch)
	ssl3[4], ssl3[5] = 3, 0
	f.Add(append([]byte{22, 3, 1, byte(len(ssl3) >> 8), byte(len(ssl3))}, ssl3...))
	f.Add(append([]byte{22, 3, 1, 0, 10}, append(append(ch[:10:10], 23, 3, 3, 0, 0, 20, 3, 3, 0, 1, 1, 22, 3, 3, 0, 0, 22, 3, 3, byte((len(ch)-10)>>8), byte(len(ch)-10)), ch[10:]...)...))
	f.Add(bytes.Repeat([]byte{23, 3, 3, 0, 0}, 200))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, p := net.Pipe()
		feed(t, Server(a, &Config{Key: testKey}), p, b)
	})
}

// FuzzClientBytes feeds arbitrary server bytes to a client.
func FuzzClientBytes(f *testing.F) {
	sh := mustHex(rfc8448SH)
	f.Add(append([]byte{22, 3, 3, 0, byte(len(sh))}, sh...))
	f.Add([]byte{21, 3, 3, 0, 2, 2, 40})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, p := net.Pipe()
		feed(t, Client(a, &Config{Key: testKey, CurvePreferences: []CurveID{X25519}}), p, b)
	})
}

// FuzzPostHandshakeRecords: after a real TLS 1.3 or TLS 1.2 handshake the
// client protects arbitrary records (type, length, content, in turn from
// the input: KeyUpdates split around other records, empty records,
// alerts, change_cipher_spec) and the server reads them. No panic, no
// hang, and no application data from a record that came between the
// fragments of a handshake message, or after one that did (RFC 8446 5.1).
func FuzzPostHandshakeRecords(f *testing.F) {
	f.Add(false, []byte{2, 3, 24, 0, 0, 3, 1, 'x', 2, 2, 1, 0})                      // appdata inside a KeyUpdate
	f.Add(false, []byte{2, 5, 24, 0, 0, 1, 2})                                       // request_update 2
	f.Add(false, []byte{2, 5, 24, 0, 0, 1, 1, 3, 3, 'a', 'b', 'c'})                  // a valid KeyUpdate request
	f.Add(false, []byte{3, 0, 3, 0, 0, 1, 1})                                        // empty records, a CCS
	f.Add(true, []byte{2, 2, 1, 0, 1, 2, 1, 112, 2, 4, 0, 2, 0xAA, 0xBB, 3, 1, 'z'}) // warning inside a ClientHello
	f.Add(true, []byte{1, 2, 1, 100, 3, 1, 'y'})
	f.Fuzz(func(t *testing.T, tls12 bool, b []byte) {
		if len(b) > 4096 {
			return
		}
		max := VersionTLS13
		if tls12 {
			max = VersionTLS12
		}
		recs, allowed := fuzzRecords(b, tls12)
		a, p := net.Pipe()
		c := Client(a, &Config{Key: testKey, MaxVersion: max, CurvePreferences: []CurveID{X25519}})
		s := Server(p, &Config{Key: testKey})
		defer c.Close()
		defer s.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		s.SetDeadline(time.Now().Add(5 * time.Second))
		if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
			t.Fatal(cerr, serr)
		}
		go func() { // what the server answers
			buf := make([]byte, 4096)
			for {
				if _, err := a.Read(buf); err != nil {
					return
				}
			}
		}()
		go func() {
			defer p.Close() // ends the server's Read if nothing else does
			c.out.Lock()
			defer c.out.Unlock()
			for _, r := range recs {
				if c.writeRecordLocked(r.typ, r.data) != nil {
					return
				}
			}
		}()
		buf := make([]byte, 512)
		read := 0
		for {
			n, err := s.Read(buf)
			read += n
			if err != nil {
				break
			}
		}
		if read > allowed {
			t.Fatalf("server read %d bytes of application data; only %d came before a record between handshake fragments", read, allowed)
		}
	})
}

type fuzzRecord struct {
	typ  uint8
	data []byte
}

// fuzzRecords cuts the input of FuzzPostHandshakeRecords into records
// (type 20 + b[0]%4, length b[1], content) and returns them with the
// number of application data bytes before the first record that comes
// between the fragments of a handshake message (all of them if none).
func fuzzRecords(b []byte, tls12 bool) ([]fuzzRecord, int) {
	var recs []fuzzRecord
	var hs []byte
	allowed, interleaved := 0, false
	for len(b) >= 2 {
		typ := recordChangeCipherSpec + b[0]%4
		if typ == recordChangeCipherSpec && tls12 {
			typ = recordApplicationData // a TLS 1.2 CCS would switch to keys nobody has
		}
		n := min(int(b[1]), len(b)-2)
		data := b[2 : 2+n]
		if len(hs) != 0 && typ != recordHandshake {
			interleaved = true
		}
		switch typ {
		case recordHandshake:
			hs = append(hs, data...)
			for len(hs) >= 4 && len(hs) >= 4+(int(hs[1])<<16|int(hs[2])<<8|int(hs[3])) {
				hs = hs[4+(int(hs[1])<<16|int(hs[2])<<8|int(hs[3])):]
			}
		case recordApplicationData:
			if !interleaved {
				allowed += n
			}
		}
		recs = append(recs, fuzzRecord{typ, data})
		b = b[2+n:]
	}
	return recs, allowed
}
