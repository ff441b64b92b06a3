package tlspsk

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"testing"
)

// RFC 8448 section 4 ("Resumed 0-RTT Handshake"): a PSK handshake with an
// X25519 key share. Its PSK is a resumption PSK, so the binder key uses the
// "res binder" label; external PSKs differ only in that label.
const (
	rfc8448CH = "010001fc03031bc3ceb6bbe39cff938355b5a50adb6db21b7a6af649d7b4bc419d7876487d95000006130113031302010001cd0000000b0009000006736572766572ff01000100000a00140012001d00170018001901000101010201030104003300260024001d0020e4ffb68ac05f8d96c99da26698346c6be16482badddafe051a66b4f18d668f0b002a0000002b0003020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00020101001c0002400100150057000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002900dd00b800b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf1b0070ad3c498883c9367c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827db279cce145077d454a3664d4e6da4d29ee03725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228bda40dda721470f9fbf297b5aea617646fac5c03272e970727c621a79141ef5f7de6505e5bfbc388e93343694093934ae4d357fad6aacb0021203add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d"
	rfc8448SH = "0200005c03033ccfd2dec890222763472ae8136777c9d7358777bb66e91ea5122495f559ea2d00130100003400290002000000330024001d0020121761ee42c333e1b9e77b60dd57c2053cd94512ab47f115e86eff50942cea31002b00020304"
	rfc8448EE = "080000280026000a00140012001d00170018001901000101010201030104001c0002400100000000002a0000"
	rfc8448SF = "1400002048d3e0e1b3d907c6acff145e16090388c77b05c050b634ab1a88bbd0dd1a34b2"
	// The server's encrypted EncryptedExtensions + Finished record.
	rfc8448ServerFlight = "1703030061dc48237b4b879f50d0d4d262ea8b4716eb40ddc1eb957e11126e8a7149c2d012d37a7115957e64ce30008b9e0323f2c05a9c1c77b4f37849a695ab255060a33fee770ca95cb8486bfd0843b87024865ca35cc41c4e515c64dcb1369f98635bc7a5"
	// Client application data (seq 0) and close_notify (seq 1).
	rfc8448ClientData  = "1703030043b1cebce242aa201be9ae5e1cb2a9aa4b33d4e866af1edb068919237741aa031d7a74d491c99b9d4e232b74206bc6fbaa04fe78be44a9b4f54320a17eb76992afac3103"
	rfc8448ClientAlert = "17030300130facce3246bdfc6369838d6a82ae6de5d422dc"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func eqHex(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if hex.EncodeToString(got) != want {
		t.Errorf("%s = %x, want %s", what, got, want)
	}
}

func TestRFC8448Binder(t *testing.T) {
	h := crypto.SHA256
	psk := unhex(t, "4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3")
	early := earlySecret(h, psk)
	eqHex(t, "early secret", early, "9b2188e9b2fc6d64d71dc329900e20bb41915000f678aa839cbb797cb7d8332c")
	bk := binderKey(h, early, false)
	eqHex(t, "binder key", bk, "69fe131a3bbad5d63c64eebcc30e395b9d8107726a13d074e389dbc8a4e47256")
	eqHex(t, "binder finished key", expandLabel(h, bk, "finished", nil, 32), "5588673e72cb59c87d220caffe94f2dea9a3b1609f7d50e90a48227db9ed7eaa")

	ch, err := parseClientHello(unhex(t, rfc8448CH))
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.truncated()) != 477 || len(ch.identities) != 1 || len(ch.identities[0].identity) != 178 {
		t.Fatalf("truncated %d bytes, %d identities", len(ch.truncated()), len(ch.identities))
	}
	th := hashOf(h, ch.truncated())
	eqHex(t, "binder hash", th, "63224b2e4573f2d3454ca84b9d009a04f6be9e05711a8396473aefa01e924a14")
	binder := finishedMAC(h, bk, th)
	eqHex(t, "binder", binder, "3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d")
	if !bytes.Equal(binder, ch.binders[0]) {
		t.Error("parsed binder differs")
	}
	if !ch.earlyData || len(ch.keyShares) != 1 || ch.keyShares[0].group != X25519 || !bytes.Equal(ch.pskModes, []byte{pskModeDHE}) {
		t.Errorf("parsed ClientHello: %+v", ch)
	}
	// The external label gives a different key.
	if bytes.Equal(binderKey(h, early, true), bk) {
		t.Error("ext binder equals res binder")
	}
}

func TestRFC8448KeySchedule(t *testing.T) {
	h := crypto.SHA256
	s := suiteByID(TLS_AES_128_GCM_SHA256)
	early := earlySecret(h, unhex(t, "4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3"))
	chRaw, shRaw := unhex(t, rfc8448CH), unhex(t, rfc8448SH)
	sh, err := parseServerHello(shRaw)
	if err != nil {
		t.Fatal(err)
	}
	if sh.version != VersionTLS13 || sh.suite != TLS_AES_128_GCM_SHA256 || sh.selectedIdentity != 0 || sh.keyShare.group != X25519 {
		t.Fatalf("parsed ServerHello: %+v", sh)
	}
	ecdhe := unhex(t, "f44194756ff9ec9d25180635d66ea6824c6ab3bf179977be37f723570e7ccb2e")
	hsSecret := nextSecret(h, early, ecdhe)
	eqHex(t, "handshake secret", hsSecret, "005cb112fd8eb4ccc623bb88a07c64b3ede1605363fc7d0df8c7ce4ff0fb4ae6")
	transcript := append(append([]byte{}, chRaw...), shRaw...)
	th := hashOf(h, transcript)
	cHS := deriveSecret(h, hsSecret, "c hs traffic", th)
	sHS := deriveSecret(h, hsSecret, "s hs traffic", th)
	eqHex(t, "c hs traffic", cHS, "2faac08f851d35fea3604fcb4de82dc62c9b164a70974d0462e27f1ab278700f")
	eqHex(t, "s hs traffic", sHS, "fe927ae271312e8bf0275b581c54eef020450dc4ecffaa05a1a35d27518e7803")
	key, iv := trafficKeys(s, sHS)
	eqHex(t, "server handshake key", key, "27c6bdc0a3dcea39a47326d79bc9e4ee")
	eqHex(t, "server handshake iv", iv, "9569ecdd4d0536705e9ef725")

	// Decrypt the server's flight with our record layer.
	var in halfConn
	if err := in.setKeys13(s, append([]byte(nil), sHS...)); err != nil {
		t.Fatal(err)
	}
	typ, plain, err := in.open(unhex(t, rfc8448ServerFlight))
	if err != nil || typ != recordHandshake {
		t.Fatalf("open server flight: %v type %d", err, typ)
	}
	if hex.EncodeToString(plain) != rfc8448EE+rfc8448SF {
		t.Fatalf("server flight plaintext %x", plain)
	}
	transcript = append(transcript, unhex(t, rfc8448EE)...)
	eqHex(t, "server Finished", finishedMAC(h, sHS, hashOf(h, transcript)), rfc8448SF[8:])
	transcript = append(transcript, unhex(t, rfc8448SF)...)

	master := nextSecret(h, hsSecret, nil)
	eqHex(t, "master secret", master, "e2d32d4ed66dd37897a0e80c84107503ce58bf8aad4cb55a5002d77ecb890ece")
	th = hashOf(h, transcript)
	cAP := deriveSecret(h, master, "c ap traffic", th)
	eqHex(t, "c ap traffic", cAP, "2abbf2b8e381d23dbebe1dd2a7d16a8bf484cb4950d23fb7fb7fa8547062d9a1")
	eqHex(t, "s ap traffic", deriveSecret(h, master, "s ap traffic", th), "cc21f1bf8feb7dd5fa505bd9c4b468a9984d554a993dc49e6d285598fb672691")
	eqHex(t, "exp master", deriveSecret(h, master, "exp master", th), "3fd93d4ffddc98e64b14dd107aedf8ee4add23f4510f58a4592d0b201bee56b4")
	key, iv = trafficKeys(s, cAP)
	eqHex(t, "client application key", key, "3cf122f301c6358ca7989553250efd72")
	eqHex(t, "client application iv", iv, "ab1aec26aa78b8fc1176b9ac")

	// Client application data (0x00..0x31) and close_notify.
	var cin halfConn
	cin.setKeys13(s, append([]byte(nil), cAP...))
	typ, plain, err = cin.open(unhex(t, rfc8448ClientData))
	if err != nil || typ != recordApplicationData || len(plain) != 50 || plain[0] != 0 || plain[49] != 0x31 {
		t.Fatalf("application data: %v type %d %x", err, typ, plain)
	}
	typ, plain, err = cin.open(unhex(t, rfc8448ClientAlert))
	if err != nil || typ != recordAlert || !bytes.Equal(plain, []byte{1, 0}) {
		t.Fatalf("close_notify: %v type %d %x", err, typ, plain)
	}
	// Sealing the same plaintext at the same sequence reproduces the record.
	var cout halfConn
	cout.setKeys13(s, append([]byte(nil), cAP...))
	cout.seq = 1
	buf := make([]byte, 64)
	if rec := cout.seal(buf, recordAlert, []byte{1, 0}); hex.EncodeToString(rec) != rfc8448ClientAlert {
		t.Fatalf("sealed close_notify %x", rec)
	}
}

// The client's ClientHello parses back, and its binder verifies over the
// truncated message.
func TestClientHelloRoundTrip(t *testing.T) {
	h := crypto.SHA384
	raw, bl := marshalClientHello(&clientHelloParams{random: make([]byte, 32), sessionID: make([]byte, 32),
		suites: []uint16{TLS_AES_256_GCM_SHA384}, versions: []uint16{VersionTLS13}, groups: []CurveID{X25519},
		shares: []keyShare{{X25519, make([]byte, 32)}}, pskModes: []uint8{1}, identity: []byte("id"), binderLen: h.Size(),
		cookie: []byte("c")})
	ch, err := parseClientHello(raw)
	if err != nil {
		t.Fatal(err)
	}
	if ch.bindersLen != bl || len(ch.binders[0]) != 48 || string(ch.identities[0].identity) != "id" || string(ch.cookie) != "c" {
		t.Fatalf("%+v", ch)
	}
}
