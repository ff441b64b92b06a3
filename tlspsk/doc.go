// Package tlspsk is a TLS client and server authenticated by an external
// pre-shared key (PSK), shaped like crypto/tls.
//
// It exists because Go's crypto/tls cannot use an external PSK
// (golang/go#6379, open since 2013), and the whole mcbn product rests on a
// TLS-PSK tunnel whose key only exists while a threshold of participants
// consent. The package is written from the RFCs (8446 for TLS 1.3, the
// X25519MLKEM768 hybrid draft; 4279, 5487, 5489, 7905, 7627, 5746 and 5705
// for TLS 1.2) on standard-library primitives only, and is proven by
// interop tests against OpenSSL, GnuTLS and stunnel and by fuzzing.
//
// One Config serves TLS 1.3 and 1.2; the highest version both sides allow
// wins. TLS 1.3 with psk_dhe_ke (forward secrecy) is the default, and TLS
// 1.2 prefers ECDHE_PSK; psk_ke and plain PSK need Config.AllowPSKOnly on a
// client. There are no certificates, no session tickets, no 0-RTT and no
// renegotiation (refused with no_renegotiation).
//
// The data path does not allocate: buffers come from pools and go back
// when a connection is idle, so a parked connection holds a few hundred
// bytes, and Conn.WriteTo hands decrypted records to a writer without a
// copy. Over a syscall.Conn, a Conn waits for data through the raw
// descriptor after the handshake (see Client).
//
// DTLS 1.2 PSK (RFC 6347, for UDP) is here too, on the same TLS 1.2 key
// schedule and message codecs: DTLSListener, DTLSClient and DialDTLS, in
// the dtls_*.go files; docs/udp.md describes it.
//
// Layout: config.go and suites.go hold the configuration and algorithms;
// record.go and record12.go the record layer; buffers.go and rawread_*.go
// the buffer pools and the idle wait; msgs.go, ext.go and tls12_msgs.go
// the handshake message codecs; keyschedule.go and tls12_keys.go the key
// schedules; handshake.go the version negotiation; tls13_*.go and
// tls12_*.go the state machines; conn.go, read.go and write.go the
// net.Conn.
package tlspsk
