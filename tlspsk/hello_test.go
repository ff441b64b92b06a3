package tlspsk

import (
	"errors"
	"testing"
)

// buildClientHello assembles a ClientHello from raw extensions.
func buildClientHello(exts []extension) []byte {
	w := writer{}
	w.u8(typeClientHello)
	m := w.open24()
	w.u16(VersionTLS12)
	w.raw(make([]byte, 32))
	w.u8(0)
	w.u16(2)
	w.u16(TLS_AES_128_GCM_SHA256)
	w.u8(1)
	w.u8(0)
	e := w.open16()
	for _, x := range exts {
		w.u16(x.typ)
		v := w.open16()
		w.raw(x.data)
		w.close16(v)
	}
	w.close16(e)
	w.close24(m)
	return w.b
}

func TestServerRejectsBadClientHellos(t *testing.T) {
	versions := extension{extSupportedVersions, []byte{2, 3, 4}}
	groups := extension{extSupportedGroups, []byte{0, 2, 0, 29}}
	share := extension{extKeyShare, append([]byte{0, 36, 0, 29, 0, 32}, make([]byte, 32)...)}
	modes := extension{extPSKModes, []byte{1, pskModeDHE}}
	psk := extension{extPreSharedKey, append([]byte{0, 21, 0, 15, 'C', 'l', 'i', 'e', 'n', 't', '_', 'i', 'd', 'e', 'n', 't', 'i', 't', 'y', 0, 0, 0, 0, 0, 33, 32}, make([]byte, 32)...)}
	for _, tc := range []struct {
		name string
		exts []extension
		want Alert
	}{
		{"valid_but_bad_binder", []extension{versions, groups, share, modes, psk}, alertDecryptError},
		{"duplicate", []extension{versions, groups, groups, share, modes, psk}, alertIllegalParameter},
		{"psk_not_last", []extension{versions, groups, share, psk, modes}, alertIllegalParameter},
		{"no_modes", []extension{versions, groups, share, psk}, alertMissingExtension},
		{"no_key_share", []extension{versions, groups, modes, psk}, alertMissingExtension},
		{"no_psk", []extension{versions, groups, share, modes}, alertHandshakeFailure},
		// TLS 1.2 hellos go to the TLS 1.2 server, which shares no suite
		// with one that offers only TLS_AES_128_GCM_SHA256.
		{"tls12_only", []extension{groups, share, modes, psk}, alertHandshakeFailure},
		{"no_tls13", []extension{{extSupportedVersions, []byte{2, 3, 3}}, groups, share, modes, psk}, alertHandshakeFailure},
		{"tls11", []extension{{extSupportedVersions, []byte{2, 3, 2}}, groups, share, modes, psk}, alertProtocolVersion},
		{"bad_share", []extension{versions, groups, {extKeyShare, []byte{0, 6, 0, 29, 0, 2, 1, 2}}, modes, psk}, alertIllegalParameter},
		{"zero_x25519_share", []extension{versions, groups, share, modes, psk}, alertIllegalParameter},
		{"truncated_psk", []extension{versions, groups, share, modes, {extPreSharedKey, psk.data[:30]}}, alertDecodeError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, errc := rawServer(t, &Config{Key: testKey})
			ch := buildClientHello(tc.exts)
			if last := tc.exts[len(tc.exts)-1]; tc.want != alertDecryptError && last.typ == extPreSharedKey && len(last.data) == len(psk.data) {
				fixBinder(ch)
			}
			raw.Write(append([]byte{recordHandshake, 3, 1, byte(len(ch) >> 8), byte(len(ch))}, ch...))
			err := <-errc
			var ae *AlertError
			if !errors.As(err, &ae) || ae.Alert != tc.want || ae.Received {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// fixBinder writes the correct binder for testKey into a ClientHello whose
// last 32 bytes are its only binder.
func fixBinder(ch []byte) {
	h := suiteByID(TLS_AES_128_GCM_SHA256).hash
	trunc := ch[:len(ch)-35]
	b := finishedMAC(h, binderKey(h, earlySecret(h, testKey), true), hashOf(h, trunc))
	copy(ch[len(ch)-32:], b)
}
