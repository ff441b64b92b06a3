package tlspsk

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDefaultsUseHybrid(t *testing.T) {
	c, s := pair(t, &Config{Key: testKey}, &Config{Key: testKey})
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	st := c.ConnectionState()
	if st.Group != X25519MLKEM768 || st.CipherSuite != TLS_AES_128_GCM_SHA256 || st.HelloRetryRequest || st.Version != VersionTLS13 ||
		!st.HandshakeComplete || st.PSKIdentity != DefaultIdentity {
		t.Fatalf("%+v", st)
	}
	exchange(t, c, s, 1<<20)
}

func TestHelloRetryRequest(t *testing.T) {
	for _, tc := range []struct{ client, server []CurveID }{
		{[]CurveID{X25519, CurveP256}, []CurveID{CurveP256}},
		{[]CurveID{CurveP256, X25519MLKEM768}, []CurveID{X25519MLKEM768}},
		{nil, []CurveID{CurveP256}}, // default client: hybrid + X25519 shares
	} {
		c, s := pair(t, &Config{Key: testKey, CurvePreferences: tc.client}, &Config{Key: testKey, CurvePreferences: tc.server})
		if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
			t.Fatal(cerr, serr)
		}
		for _, st := range []ConnectionState{c.ConnectionState(), s.ConnectionState()} {
			if !st.HelloRetryRequest || st.Group != tc.server[0] {
				t.Fatalf("%v/%v: %+v", tc.client, tc.server, st)
			}
		}
		exchange(t, c, s, 1000)
	}
}

func TestPSKOnly(t *testing.T) {
	// No shared group: psk_ke only if the server allows it.
	cc := &Config{Key: testKey, AllowPSKOnly: true, CurvePreferences: []CurveID{X25519}}
	c, s := pair(t, cc, &Config{Key: testKey, AllowPSKOnly: true, CurvePreferences: []CurveID{CurveP256}})
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if st := c.ConnectionState(); st.Group != 0 || s.ConnectionState().Group != 0 {
		t.Fatalf("%+v", st)
	}
	exchange(t, c, s, 1000)

	c, s = pair(t, cc, &Config{Key: testKey, CurvePreferences: []CurveID{CurveP256}})
	cerr, serr := handshakeBoth(c, s)
	if FailureReason(cerr) != "no_shared_parameters" || FailureReason(serr) != "no_shared_parameters" {
		t.Fatalf("client %v, server %v", cerr, serr)
	}
	// A client without AllowPSKOnly never offers psk_ke.
	c, s = pair(t, &Config{Key: testKey, CurvePreferences: []CurveID{X25519}}, &Config{Key: testKey, AllowPSKOnly: true, CurvePreferences: []CurveID{CurveP256}})
	if cerr, serr := handshakeBoth(c, s); cerr == nil || serr == nil {
		t.Fatal("psk_ke negotiated without AllowPSKOnly on the client")
	}
}

func TestFailuresSelf(t *testing.T) {
	for _, tc := range []struct {
		name           string
		cc, sc         *Config
		client, server string
	}{
		{"wrong_key", &Config{Key: []byte("other key")}, &Config{Key: testKey}, "wrong_key", "wrong_key"},
		{"unknown_identity", &Config{Key: testKey, Identity: "eve"}, &Config{Key: testKey}, "unknown_identity", "unknown_identity"},
		{"getkey_unknown", &Config{Key: testKey, Identity: "eve"}, &Config{GetKey: func(string) ([]byte, error) { return nil, nil }}, "unknown_identity", "unknown_identity"},
		{"hash_mismatch", &Config{Key: testKey, PSKHash: crypto.SHA384}, &Config{Key: testKey}, "no_shared_parameters", "no_shared_parameters"},
		{"suite_mismatch", &Config{Key: testKey, CipherSuites: []uint16{TLS_AES_128_GCM_SHA256}}, &Config{Key: testKey, CipherSuites: []uint16{TLS_CHACHA20_POLY1305_SHA256}}, "no_shared_parameters", "no_shared_parameters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t, tc.cc, tc.sc)
			cerr, serr := handshakeBoth(c, s)
			if FailureReason(cerr) != tc.client || FailureReason(serr) != tc.server {
				t.Fatalf("client %v (%s), server %v (%s)", cerr, FailureReason(cerr), serr, FailureReason(serr))
			}
			if msgs := cerr.Error() + serr.Error(); strings.Contains(msgs, string(testKey)) ||
				strings.Contains(strings.ToLower(msgs), hex.EncodeToString(testKey)) {
				t.Fatal("key in error")
			}
			if _, err := c.Write([]byte("x")); err == nil {
				t.Fatal("write after failed handshake")
			}
		})
	}
}

func TestKeyUpdate(t *testing.T) {
	for _, suite := range []uint16{TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256} {
		c, s := pair(t, &Config{Key: testKey, CipherSuites: []uint16{suite}}, &Config{Key: testKey})
		if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
			t.Fatal(cerr, serr)
		}
		exchange(t, c, s, 1000)
		c0, s0 := bytes.Clone(c.out.hc.secret), bytes.Clone(s.out.hc.secret)
		// Client-initiated, requesting the server to update too.
		c.out.Lock()
		err := c.sendKeyUpdateLocked(true)
		c.out.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		exchange(t, c, s, 100000)
		exchange(t, c, s, 100)
		if bytes.Equal(c.out.hc.secret, c0) || bytes.Equal(s.out.hc.secret, s0) {
			t.Fatal("keys did not change in both directions")
		}
		if !bytes.Equal(c.out.hc.secret, s.in.hc.secret) || !bytes.Equal(s.out.hc.secret, c.in.hc.secret) {
			t.Fatal("peers disagree on keys")
		}
		// Server-initiated, by the record limit.
		s.out.Lock()
		s.out.hc.limit = 3
		s.out.Unlock()
		s1 := bytes.Clone(s.out.hc.secret)
		exchange(t, c, s, 10*maxPlaintext)
		if bytes.Equal(s.out.hc.secret, s1) || s.out.hc.seq > 3 {
			t.Fatalf("no KeyUpdate at the limit (seq %d)", s.out.hc.seq)
		}
	}
}

func TestCloseWrite(t *testing.T) {
	c, s := pair(t, &Config{Key: testKey}, &Config{Key: testKey})
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	go func() {
		c.Write([]byte("request"))
		c.CloseWrite()
	}()
	got, err := io.ReadAll(s) // ends with close_notify: io.EOF
	if err != nil || string(got) != "request" {
		t.Fatalf("server read %q, %v", got, err)
	}
	if _, err := c.Write([]byte("more")); err == nil {
		t.Fatal("write after CloseWrite")
	}
	if _, err := s.Write([]byte("response")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got, err = io.ReadAll(c)
	if err != nil || string(got) != "response" {
		t.Fatalf("client read %q, %v", got, err)
	}
}

func TestConcurrentAndClose(t *testing.T) {
	c, s := pair(t, &Config{Key: testKey}, &Config{Key: testKey})
	// Implicit handshake from concurrent Reads and Writes on both sides.
	exchange(t, c, s, 1<<20)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := c.Read(make([]byte, 10))
		if err == nil {
			t.Error("read succeeded after Close")
		}
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	wg.Wait()
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server read after client close: %v", err)
	}
}

func TestExportAndKeyLog(t *testing.T) {
	var cl, sl bytes.Buffer
	c, s := pair(t, &Config{Key: testKey, KeyLogWriter: &cl}, &Config{Key: testKey, KeyLogWriter: &sl})
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	a, _ := c.ExportKeyingMaterial("EXPORTER-mcbn", []byte("ctx"), 32)
	b, _ := s.ExportKeyingMaterial("EXPORTER-mcbn", []byte("ctx"), 32)
	d, _ := s.ExportKeyingMaterial("EXPORTER-other", []byte("ctx"), 32)
	if len(a) != 32 || !bytes.Equal(a, b) || bytes.Equal(a, d) {
		t.Fatal("exporter mismatch")
	}
	if cl.String() != sl.String() {
		t.Fatal("key logs differ")
	}
	for _, l := range []string{"CLIENT_HANDSHAKE_TRAFFIC_SECRET ", "SERVER_HANDSHAKE_TRAFFIC_SECRET ", "CLIENT_TRAFFIC_SECRET_0 ", "SERVER_TRAFFIC_SECRET_0 ", "EXPORTER_SECRET "} {
		if strings.Count(cl.String(), l) != 1 {
			t.Fatalf("key log lacks %s:\n%s", l, cl.String())
		}
	}
}

// rawServer runs our server over a raw TCP connection the test drives.
func rawServer(t *testing.T, cfg *Config) (net.Conn, chan error) {
	c, s := pair(t, &Config{Key: testKey}, cfg)
	errc := make(chan error, 1)
	go func() { errc <- s.Handshake() }()
	return c.conn, errc
}

func TestRecordLimits(t *testing.T) {
	raw, errc := rawServer(t, &Config{Key: testKey})
	raw.Write([]byte{recordHandshake, 3, 1, 0x40, 0x01}) // 2^14+1 bytes of plaintext
	err := <-errc
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Alert != alertRecordOverflow {
		t.Fatalf("got %v, want record_overflow", err)
	}
	reply := make([]byte, 7)
	if _, err := io.ReadFull(raw, reply); err != nil || !bytes.Equal(reply, []byte{recordAlert, 3, 3, 0, 2, 2, byte(alertRecordOverflow)}) {
		t.Fatalf("alert on the wire %x, %v", reply, err)
	}
	// Not TLS at all.
	raw, errc = rawServer(t, &Config{Key: testKey})
	raw.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if err := <-errc; FailureReason(err) != "protocol_error" {
		t.Fatalf("HTTP request: %v", err)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	go func() { c, _ := l.Accept(); time.Sleep(time.Second); c.Close() }() // never answers
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := DialContext(ctx, "tcp", l.Addr().String(), &Config{Key: testKey})
	if FailureReason(err) != "timeout" {
		t.Fatalf("%v: %s", err, FailureReason(err))
	}
}

func TestCipherSuiteNames(t *testing.T) {
	for _, n := range []string{"TLS_AES_128_GCM_SHA256", "tls_chacha20_poly1305_sha256", "PSK-AES128-GCM-SHA256", "TLS_PSK_WITH_AES_128_GCM_SHA256"} {
		id, ok := CipherSuiteByName(n)
		if !ok || !strings.EqualFold(CipherSuiteName(id), n) && !strings.EqualFold(suiteByID(id).iana, n) {
			t.Fatalf("%s: %x %v", n, id, ok)
		}
	}
	if _, ok := CipherSuiteByName("RC4-MD5"); ok {
		t.Fatal("RC4")
	}
	if CipherSuiteName(0xabcd) != "0xABCD" {
		t.Fatal(CipherSuiteName(0xabcd))
	}
}

func TestFatalAlertAfterHandshake(t *testing.T) {
	c, s := pair(t, &Config{Key: testKey}, &Config{Key: testKey})
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	s.out.Lock()
	s.sendAlertLocked(alertInternalError)
	s.out.Unlock()
	_, err := c.Read(make([]byte, 1))
	var ae *AlertError
	if !errors.As(err, &ae) || !ae.Received || ae.Alert != alertInternalError || FailureReason(err) != "protocol_error" {
		t.Fatalf("read: %v", err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write after a fatal alert")
	}
}

func TestPeerClosedDuringHandshake(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Read(make([]byte, 10))
			c.Close()
		}
	}()
	_, err := Dial("tcp", l.Addr().String(), &Config{Key: testKey})
	if FailureReason(err) != "peer_closed" {
		t.Fatalf("%v: %s", err, FailureReason(err))
	}
}
