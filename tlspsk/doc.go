// Package tlspsk is a TLS client and server authenticated by an external
// pre-shared key (PSK), shaped like crypto/tls.
//
// It exists because Go's crypto/tls cannot use an external PSK
// (golang/go#6379, open since 2013), and the whole mcbn product rests on a
// TLS-PSK tunnel whose key only exists while a threshold of participants
// consent. The package is written from the RFCs (8446 for TLS 1.3, the
// X25519MLKEM768 hybrid draft) on standard-library primitives only, and is
// proven by interop tests against OpenSSL and GnuTLS and by fuzzing.
//
// TLS 1.3 with psk_dhe_ke (forward secrecy) is the default; psk_ke needs
// Config.AllowPSKOnly. There are no certificates, no session tickets, no
// 0-RTT and no renegotiation. TLS 1.2 PSK (RFC 4279/5489) is planned in
// tls12_*.go files beside the TLS 1.3 ones; until then a 1.2-only peer gets
// a protocol_version alert.
//
// Layout: config.go and suites.go hold the configuration and algorithms;
// record.go the record layer; msgs.go and ext.go the handshake message
// codecs; keyschedule.go the HKDF key schedule; handshake.go the version
// negotiation; tls13_client.go and tls13_server.go the state machines;
// conn.go, read.go and write.go the net.Conn.
package tlspsk
