package tlspsk

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Conformance fixes (docs/tlspsk.md, "Conformance"): legacy_version,
// KeyUpdate values, empty and interleaved records, exporter labels, and
// what Close leaves behind.

// wantAlert fails unless err is the alert a, sent (received false) or
// received.
func wantAlert(t *testing.T, what string, err error, a Alert, received bool) {
	t.Helper()
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Alert != a || ae.Received != received {
		t.Fatalf("%s: got %v, want %v (received %v)", what, err, a, received)
	}
}

// validHello13 is a ClientHello that our default server accepts (a real
// X25519 share, testKey's binder) with legacy_version set to legacy.
func validHello13(t *testing.T, legacy uint16) []byte {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	share := extension{extKeyShare, append([]byte{0, 36, 0, 29, 0, 32}, k.PublicKey().Bytes()...)}
	psk := extension{extPreSharedKey, append([]byte{0, 21, 0, 15, 'C', 'l', 'i', 'e', 'n', 't', '_', 'i', 'd', 'e', 'n', 't', 'i', 't', 'y', 0, 0, 0, 0, 0, 33, 32}, make([]byte, 32)...)}
	ch := buildClientHello([]extension{{extSupportedVersions, []byte{2, 3, 4}}, {extSupportedGroups, []byte{0, 2, 0, 29}},
		share, {extPSKModes, []byte{1, pskModeDHE}}, psk})
	ch[4], ch[5] = byte(legacy>>8), byte(legacy)
	fixBinder(ch) // the binder covers legacy_version
	return ch
}

func record(typ uint8, body []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

// firstReply reads the first record our server sends on raw.
func firstReply(t *testing.T, raw net.Conn) []byte {
	t.Helper()
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(raw, hdr); err != nil {
		t.Fatalf("no reply: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(raw, body); err != nil {
		t.Fatalf("short reply: %v", err)
	}
	return append(hdr, body...)
}

func serverErr(t *testing.T, errc chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("server handshake did not end")
		return nil
	}
}

// RFC 8446 D.5: a ClientHello with legacy_version 0x0300 or lower is
// refused with protocol_version, even when supported_versions offers TLS
// 1.3. The same hello with 0x0303 gets a ServerHello.
func TestLegacyVersionSSL3Refused(t *testing.T) {
	raw, _ := rawServer(t, &Config{Key: testKey})
	raw.Write(record(recordHandshake, validHello13(t, VersionTLS12)))
	if rec := firstReply(t, raw); rec[0] != recordHandshake || rec[5] != typeServerHello {
		t.Fatalf("control hello (0x0303) answered with %x", rec[:min(len(rec), 8)])
	}
	for _, legacy := range []uint16{0x0300, 0x0200, 0x0002, 0x0000} {
		raw, errc := rawServer(t, &Config{Key: testKey})
		raw.Write(record(recordHandshake, validHello13(t, legacy)))
		rec := firstReply(t, raw)
		if !bytes.Equal(rec, []byte{recordAlert, 3, 3, 0, 2, 2, byte(alertProtocolVersion)}) {
			t.Fatalf("legacy_version %#04x: server answered %x, want a protocol_version alert", legacy, rec[:min(len(rec), 8)])
		}
		wantAlert(t, "server", serverErr(t, errc), alertProtocolVersion, false)
	}
}

// The same after a HelloRetryRequest: ClientHello2 with legacy_version
// 0x0300 gets protocol_version (not the illegal_parameter of an
// inconsistent ClientHello2).
func TestLegacyVersionSSL3AfterHRR(t *testing.T) {
	raw, errc := rawServer(t, &Config{Key: testKey, CurvePreferences: []CurveID{CurveP256}})
	// X25519 share only, P-256 also supported: the server asks for P-256.
	ch1 := validHello13(t, VersionTLS12)
	ch1 = bytes.Replace(ch1, []byte{0, byte(extSupportedGroups), 0, 4, 0, 2, 0, 29}, []byte{0, byte(extSupportedGroups), 0, 6, 0, 4, 0, 23, 0, 29}, 1)
	ch1[3] += 2                // message length
	ch1[4+2+32+1+2+2+2+1] += 2 // extensions length, after version, random, session id, suites, compression
	fixBinder(ch1)
	raw.Write(record(recordHandshake, ch1))
	if rec := firstReply(t, raw); rec[0] != recordHandshake || rec[5] != typeServerHello || !bytes.Equal(rec[11:43], helloRetryRandom) {
		t.Fatalf("no HelloRetryRequest: %x", rec[:min(len(rec), 12)])
	}
	raw.Write(record(recordHandshake, validHello13(t, 0x0300)))
	for {
		rec := firstReply(t, raw)
		if rec[0] == recordAlert {
			if !bytes.Equal(rec, []byte{recordAlert, 3, 3, 0, 2, 2, byte(alertProtocolVersion)}) {
				t.Fatalf("alert %x, want protocol_version", rec)
			}
			break
		}
	}
	wantAlert(t, "server", serverErr(t, errc), alertProtocolVersion, false)
}

// relayRewriting relays between a client and a server over pipes and lets
// edit change the server's first handshake record.
func relayRewriting(edit func(rec []byte)) (clientSide, serverSide net.Conn) {
	cRaw, mitmC := net.Pipe()
	mitmS, sRaw := net.Pipe()
	go func() {
		io.Copy(mitmS, mitmC)
		mitmS.Close()
	}()
	go func() {
		defer mitmC.Close()
		hdr := make([]byte, recordHeaderLen)
		if _, err := io.ReadFull(mitmS, hdr); err != nil {
			return
		}
		body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if _, err := io.ReadFull(mitmS, body); err != nil {
			return
		}
		rec := append(hdr, body...)
		edit(rec)
		mitmC.Write(rec)
		io.Copy(mitmC, mitmS)
	}()
	return cRaw, sRaw
}

// D.5 from the client's side: a ServerHello with legacy_version 0x0300 is
// refused with protocol_version, at both versions.
func TestLegacyVersionSSL3ServerHelloRefused(t *testing.T) {
	for _, max := range []uint16{VersionTLS13, VersionTLS12} {
		cRaw, sRaw := relayRewriting(func(rec []byte) { rec[9], rec[10] = 3, 0 }) // ServerHello.legacy_version
		c := Client(cRaw, &Config{Key: testKey})
		s := Server(sRaw, &Config{Key: testKey, MaxVersion: max})
		cerr, _ := handshakeBoth(c, s)
		c.Close()
		s.Close()
		wantAlert(t, "client", cerr, alertProtocolVersion, false)
	}
}

// RFC 8446 4.6.3: request_update other than 0 or 1 is illegal_parameter;
// a KeyUpdate of the wrong length stays decode_error.
func TestKeyUpdateIllegalValue(t *testing.T) {
	for _, tc := range []struct {
		msg  []byte
		want Alert
	}{
		{[]byte{typeKeyUpdate, 0, 0, 1, 2}, alertIllegalParameter},
		{[]byte{typeKeyUpdate, 0, 0, 1, 255}, alertIllegalParameter},
		{[]byte{typeKeyUpdate, 0, 0, 2, 0, 0}, alertDecodeError},
	} {
		if _, err := parseKeyUpdate(tc.msg); err == nil {
			t.Fatalf("%x parsed", tc.msg)
		} else {
			wantAlert(t, "parseKeyUpdate", err, tc.want, false)
		}
		c, s := pair(t, &Config{Key: testKey}, &Config{Key: testKey})
		if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
			t.Fatal(cerr, serr)
		}
		c.out.Lock()
		err := c.writeRecordLocked(recordHandshake, tc.msg)
		c.out.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = s.Read(make([]byte, 1))
		wantAlert(t, "server", err, tc.want, false)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		wantAlert(t, "client", err, tc.want, true)
	}
}

// RFC 8446 5 and 5.1: before the handshake keys, a zero-length record of
// any type is refused with unexpected_message, also between two fragments
// of a ClientHello, and so is a change_cipher_spec between fragments.
func TestEmptyAndInterleavedRecordsBeforeKeys(t *testing.T) {
	ch := validHello13(t, VersionTLS12)
	frag1, frag2 := record(recordHandshake, ch[:10]), record(recordHandshake, ch[10:])
	for _, tc := range []struct {
		name  string
		input []byte
	}{
		{"empty_appdata_first", record(recordApplicationData, nil)},
		{"many_empty_appdata", bytes.Repeat(record(recordApplicationData, nil), 1000)},
		{"empty_appdata_between_fragments", bytes.Join([][]byte{frag1, record(recordApplicationData, nil), frag2}, nil)},
		{"appdata_between_fragments", bytes.Join([][]byte{frag1, record(recordApplicationData, make([]byte, 40)), frag2}, nil)},
		{"empty_handshake_first", record(recordHandshake, nil)},
		{"empty_handshake_between_fragments", bytes.Join([][]byte{frag1, record(recordHandshake, nil), frag2}, nil)},
		{"ccs_between_fragments", bytes.Join([][]byte{frag1, record(recordChangeCipherSpec, []byte{1}), frag2}, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, errc := rawServer(t, &Config{Key: testKey})
			go func() {
				raw.Write(tc.input)
				raw.(*net.TCPConn).CloseWrite()
			}()
			rec := firstReply(t, raw)
			if !bytes.Equal(rec, []byte{recordAlert, 3, 3, 0, 2, 2, byte(alertUnexpectedMessage)}) {
				t.Fatalf("server answered %x, want an unexpected_message alert", rec[:min(len(rec), 8)])
			}
			wantAlert(t, "server", serverErr(t, errc), alertUnexpectedMessage, false)
		})
	}
}

// An encrypted-phase record too short to be a protected record is not
// skipped as refused 0-RTT data: the skip budget counts bytes, and an
// empty record would cost nothing.
func TestShortRecordsNotSkippedAsEarlyData(t *testing.T) {
	a, p := net.Pipe()
	s := Server(a, &Config{Key: testKey})
	defer s.Close()
	s.in.hc.setKeys13(suiteByID(TLS_AES_128_GCM_SHA256), make([]byte, 32))
	s.in.skipEarly = maxEarlyDataSkip
	go func() {
		p.Write(bytes.Repeat(record(recordApplicationData, nil), 1000))
		p.Close()
	}()
	s.in.Lock()
	err := s.readRecord(true)
	s.in.Unlock()
	var ae *AlertError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v, want an alert for the first empty record", err)
	}
}

// RFC 8446 5.1 after the handshake: application data between the
// fragments of a KeyUpdate (TLS 1.3), or a warning alert between the
// fragments of a ClientHello (TLS 1.2), is unexpected_message.
func TestInterleavedRecordsAfterHandshake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		max     uint16
		between func(c *Conn) error
		msg     []byte
	}{
		{"tls13_appdata_in_keyupdate", VersionTLS13, func(c *Conn) error { return c.writeRecordLocked(recordApplicationData, []byte("x")) },
			[]byte{typeKeyUpdate, 0, 0, 1, 0}},
		{"tls13_empty_appdata_in_keyupdate", VersionTLS13, func(c *Conn) error { return c.writeRecordLocked(recordApplicationData, nil) },
			[]byte{typeKeyUpdate, 0, 0, 1, 0}},
		{"tls12_warning_in_clienthello", VersionTLS12, func(c *Conn) error { return c.writeRecordLocked(recordAlert, []byte{1, 112}) },
			[]byte{typeClientHello, 0, 0, 2, 0xAA, 0xBB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t, &Config{Key: testKey, MaxVersion: tc.max}, &Config{Key: testKey})
			if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			c.out.Lock()
			err := errors.Join(c.writeRecordLocked(recordHandshake, tc.msg[:3]), tc.between(c),
				c.writeRecordLocked(recordHandshake, tc.msg[3:]), c.writeRecordLocked(recordApplicationData, []byte("after")))
			c.out.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := s.Read(make([]byte, 10))
			wantAlert(t, "server read", err, alertUnexpectedMessage, false)
			if n != 0 {
				t.Fatalf("read %d bytes", n)
			}
		})
	}
}

// RFC 8446 7.1: HkdfLabel.label is <7..255> with the "tls13 " prefix, so
// a TLS 1.3 exporter label has 1 to 249 bytes; outside that the exporter
// fails instead of panicking.
func TestExporterLabelBounds13(t *testing.T) {
	c, s := pair(t, &Config{Key: testKey}, &Config{Key: testKey})
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	export := func(c *Conn, label string) (out []byte, err error) {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("ExportKeyingMaterial with a %d-byte label panicked: %v", len(label), r)
			}
		}()
		return c.ExportKeyingMaterial(label, []byte("ctx"), 32)
	}
	for _, n := range []int{1, 248, 249} {
		label := strings.Repeat("L", n)
		a, err1 := export(c, label)
		b, err2 := export(s, label)
		if err1 != nil || err2 != nil || len(a) != 32 || !bytes.Equal(a, b) {
			t.Fatalf("%d-byte label: %v %v", n, err1, err2)
		}
	}
	for _, n := range []int{0, 250, 255, 256, 1000} {
		if _, err := export(c, strings.Repeat("L", n)); err == nil || !strings.Contains(err.Error(), "label") {
			t.Fatalf("%d-byte label: %v, want an error about the label", n, err)
		}
	}
}

// RFC 5705 4 and 6: TLS 1.2 exporter labels must not collide with the
// PRF labels TLS itself uses with the master secret.
func TestExporterReservedLabels12(t *testing.T) {
	c, s := pair(t, &Config{Key: testKey, MaxVersion: VersionTLS12}, &Config{Key: testKey})
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	for _, l := range []string{"client finished", "server finished", "master secret", "key expansion", "extended master secret",
		"key expansion2", "client fin", "client", "", "master secretEXPORTER"} {
		if _, err := c.ExportKeyingMaterial(l, nil, 32); err == nil || !strings.Contains(err.Error(), "label") {
			t.Fatalf("label %q: %v, want refused", l, err)
		}
	}
	for _, l := range []string{"EXPORTER-mcbn", "EXPERIMENTAL-x", "finished"} {
		a, err1 := c.ExportKeyingMaterial(l, nil, 32)
		b, err2 := s.ExportKeyingMaterial(l, nil, 32)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Fatalf("label %q: %v %v", l, err1, err2)
		}
	}
}

func allZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

// secretsOf returns the secret slices a Conn owns (shared, not copies).
func secretsOf(c *Conn) map[string][]byte {
	m := map[string][]byte{"read traffic secret": c.in.hc.secret, "write traffic secret": c.out.hc.secret, "exporter secret": c.exporter}
	if c.tls12 != nil {
		m["TLS 1.2 master secret"] = c.tls12.master
	}
	return m
}

// checkWiped fails unless the secrets captured before Close are zero and
// the Conn keeps no AEAD and refuses to export, read and write.
func checkWiped(t *testing.T, c *Conn, before map[string][]byte) {
	t.Helper()
	for name, b := range before {
		if !allZero(b) {
			t.Errorf("%s not wiped after Close", name)
		}
	}
	c.in.Lock()
	inAEAD, inIV := c.in.hc.aead != nil, !allZero(c.in.hc.iv[:])
	c.in.Unlock()
	c.out.Lock()
	outAEAD, outIV := c.out.hc.aead != nil, !allZero(c.out.hc.iv[:])
	c.out.Unlock()
	if inAEAD || outAEAD || inIV || outIV {
		t.Errorf("keys kept after Close: read AEAD %v IV %v, write AEAD %v IV %v", inAEAD, inIV, outAEAD, outIV)
	}
	if _, err := c.ExportKeyingMaterial("EXPORTER-x", nil, 16); err == nil || !strings.Contains(err.Error(), "Close") {
		t.Errorf("exporter after Close: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// Close wipes the traffic secrets, the exporter secret and the TLS 1.2
// master secret, drops the AEADs, and the Conn refuses to be used after.
func TestCloseWipesSecrets(t *testing.T) {
	for _, max := range []uint16{VersionTLS13, VersionTLS12} {
		c, s := pair(t, &Config{Key: testKey, MaxVersion: max}, &Config{Key: testKey})
		exchange(t, c, s, 1000)
		for _, conn := range []*Conn{c, s} {
			before := secretsOf(conn)
			for name, b := range before {
				if max == VersionTLS12 && name != "TLS 1.2 master secret" {
					continue // TLS 1.2 has no traffic or exporter secret
				}
				if len(b) == 0 || allZero(b) {
					t.Fatalf("%s missing before Close", name)
				}
			}
			conn.Close()
			checkWiped(t, conn, before)
		}
	}
}

// Close from another goroutine while a Read waits for the peer and a Write
// is blocked on a full socket: both return, and the secrets are wiped by
// whichever of them lets go of its half last.
func TestCloseDuringReadAndWriteWipes(t *testing.T) {
	c, s := pair(t, &Config{Key: testKey}, &Config{Key: testKey})
	exchange(t, c, s, 1000)
	before := secretsOf(c)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.Read(make([]byte, 10)) }()
	go func() { defer wg.Done(); c.Write(make([]byte, 64<<20)) }() // s never reads: blocks
	time.Sleep(50 * time.Millisecond)
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked")
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Read or Write did not return after Close")
	}
	checkWiped(t, c, before)
}

// blockingWriter blocks every Write until release is closed, like a proxy
// destination that does not read.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return len(p), nil
}

// The proxy's pattern: WriteTo is blocked in its destination's Write
// (holding the read side) when Close comes from another goroutine. Close
// must not wait for it; the read keys are wiped once WriteTo lets go.
func TestCloseDuringBlockedWriteToWipes(t *testing.T) {
	c, s := pair(t, &Config{Key: testKey}, &Config{Key: testKey})
	exchange(t, c, s, 1000)
	before := secretsOf(c)
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	res := make(chan error, 1)
	go func() { _, err := c.WriteTo(w); res <- err }()
	s.Write([]byte("data"))
	select {
	case <-w.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("WriteTo did not reach the writer")
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a WriteTo blocked in its writer")
	}
	close(w.release)
	select {
	case <-res:
	case <-time.After(5 * time.Second):
		t.Fatal("WriteTo did not return after Close")
	}
	checkWiped(t, c, before)
}

// ExportKeyingMaterial racing with Close (run with -race): each call
// either succeeds or reports the Close, and never reads a half-wiped
// secret without the race detector noticing.
func TestExportRacesClose(t *testing.T) {
	for _, max := range []uint16{VersionTLS13, VersionTLS12} {
		c, s := pair(t, &Config{Key: testKey, MaxVersion: max}, &Config{Key: testKey})
		if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
			t.Fatal(cerr, serr)
		}
		want, err := s.ExportKeyingMaterial("EXPORTER-x", nil, 16)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 200; j++ {
					got, err := c.ExportKeyingMaterial("EXPORTER-x", nil, 16)
					if err == nil && !bytes.Equal(got, want) {
						t.Error("exporter output changed while closing")
						return
					}
					if err != nil && !strings.Contains(err.Error(), "Close") {
						t.Error(err)
						return
					}
				}
			}()
		}
		c.Close()
		wg.Wait()
	}
}
