package tlspsk

import (
	"bytes"
	"net"
	"testing"
)

// Fuzz targets for the TLS 1.2 parsers and the TLS 1.2 paths of both
// endpoints. Run one with:
// go test ./tlspsk -run '^$' -fuzz FuzzServerKeyExchange12 -fuzztime 30s

func FuzzServerKeyExchange12(f *testing.F) {
	f.Add(marshalServerKeyExchange12(&serverKeyExchange12{hint: []byte("hint"), group: X25519, point: make([]byte, 32)}, true))
	f.Add(marshalServerKeyExchange12(&serverKeyExchange12{hint: []byte("hint")}, false))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, ecdhe := range []bool{false, true} {
			m, err := parseServerKeyExchange12(b, ecdhe)
			if err == nil && !bytes.Equal(marshalServerKeyExchange12(m, ecdhe), b) {
				t.Fatal("ServerKeyExchange does not round-trip")
			}
		}
	})
}

func FuzzClientKeyExchange12(f *testing.F) {
	f.Add(marshalClientKeyExchange12(&clientKeyExchange12{identity: []byte(DefaultIdentity), point: make([]byte, 65)}, true))
	f.Add(marshalClientKeyExchange12(&clientKeyExchange12{identity: []byte(DefaultIdentity)}, false))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, ecdhe := range []bool{false, true} {
			m, err := parseClientKeyExchange12(b, ecdhe)
			if err == nil && !bytes.Equal(marshalClientKeyExchange12(m, ecdhe), b) {
				t.Fatal("ClientKeyExchange does not round-trip")
			}
		}
	})
}

func FuzzTLS12Extensions(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 0})
	f.Add([]byte{2, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseRenegotiationInfo(b)
		parseECPointFormats(b)
		parseEmptyMessage(b, typeServerHelloDone)
	})
}

// FuzzRecord12 opens arbitrary records under TLS 1.2 keys of each suite.
func FuzzRecord12(f *testing.F) {
	var hc halfConn
	hc.setKeys12(suiteByID(TLS_PSK_WITH_AES_128_GCM_SHA256), make([]byte, 16), make([]byte, 4))
	f.Add(bytes.Clone(hc.seal12(make([]byte, 100), recordApplicationData, []byte("hello"))))
	f.Add([]byte{23, 3, 3, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < recordHeaderLen {
			return
		}
		for _, s := range suites12 {
			cs := suiteByID(s)
			var hc halfConn
			hc.setKeys12(cs, make([]byte, cs.keyLen), make([]byte, ivLen12(cs)))
			hc.open(bytes.Clone(b))
		}
	})
}

// serverHello12Seed is a TLS 1.2 ServerHello record for the client fuzzer.
func serverHello12Seed(suite uint16) []byte {
	sh := marshalServerHello12(make([]byte, 32), nil, suite, []extension{{extRenegotiationInfo, []byte{0}}, {extExtendedMasterSecret, nil}})
	shd := marshalHandshake(typeServerHelloDone, nil)
	msgs := append(sh, shd...)
	return append([]byte{22, 3, 3, byte(len(msgs) >> 8), byte(len(msgs))}, msgs...)
}

// FuzzClientBytes12 feeds arbitrary server bytes to a TLS 1.2 client (the
// ServerHello, ServerKeyExchange and ServerHelloDone paths).
func FuzzClientBytes12(f *testing.F) {
	f.Add(serverHello12Seed(TLS_PSK_WITH_AES_128_GCM_SHA256))
	f.Add(serverHello12Seed(TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, p := net.Pipe()
		feed(t, Client(a, &Config{Key: testKey, MaxVersion: VersionTLS12, AllowPSKOnly: true}), p, b)
		a, p = net.Pipe()
		feed(t, Client(a, &Config{Key: testKey, AllowPSKOnly: true}), p, b) // the combined hello
	})
}

// FuzzServerBytes12 feeds a TLS 1.2 ClientHello followed by arbitrary
// bytes (ClientKeyExchange, change_cipher_spec, Finished) to a server.
func FuzzServerBytes12(f *testing.F) {
	ch, _ := marshalClientHello(&clientHelloParams{random: make([]byte, 32), suites: suites12, groups: []CurveID{X25519},
		no13: true, offer12: true})
	hello := append([]byte{22, 3, 1, byte(len(ch) >> 8), byte(len(ch))}, ch...)
	cke := marshalClientKeyExchange12(&clientKeyExchange12{identity: []byte(DefaultIdentity)}, false)
	f.Add(append(bytes.Clone(hello), append([]byte{22, 3, 3, 0, byte(len(cke))}, cke...)...))
	f.Add(append(bytes.Clone(hello), 20, 3, 3, 0, 1, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, p := net.Pipe()
		feed(t, Server(a, &Config{Key: testKey}), p, append(bytes.Clone(hello), b...))
	})
}
