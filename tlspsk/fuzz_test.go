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
