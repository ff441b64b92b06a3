package tlspsk

import "sync"

// Record buffers come from two pools shared by all connections, so that a
// connection holds a buffer only while it moves bytes: the read buffer is
// given back when every byte in it has been used, the write buffer when
// Write returns, the handshake flight buffer when it has been sent.
//
// What goes back into the pools is ciphertext, record headers and
// plaintext: application data, and handshake messages, which are public
// or, for TLS 1.3, Finished values and extensions that hold nothing the
// peer could not compute. Key material never passes through these
// buffers (keys and secrets live in halfConn and the handshake state).
// Buffers used during the handshake are cleared anyway before they go
// back; application plaintext in a returned buffer is not cleared, and
// the next user overwrites it before reading (reads only ever look at
// bytes the socket or the sealer just wrote).
const (
	smallBufSize = handshakeBufSize // handshakes, alerts, small records
	// bigBufSize holds readBufRecords full records (4 * 16,645 bytes)
	// with room to spare; 72 KiB is a whole number of the allocator's
	// 8 KiB pages, so nothing of the allocation is wasted.
	bigBufSize = 72 << 10
	// writeBatch records are sealed into one buffer and sent by one
	// write(2): 4 * (16 KiB + 30) bytes.
	writeBatch = 4
	// maxSealedLen is the room one sealed record of up to maxPlaintext
	// bytes takes: header, explicit nonce (TLS 1.2 AES-GCM), content type
	// (TLS 1.3), tag.
	maxSealedLen = recordHeaderLen + explicitNonceLen + maxPlaintext + 1 + aeadTagLen
)

// The sizes must fit what is put into them.
var (
	_ [bigBufSize - readBufSize]byte
	_ [bigBufSize - writeBatch*maxSealedLen]byte
)

var (
	smallPool = sync.Pool{New: func() any { return new([smallBufSize]byte) }}
	bigPool   = sync.Pool{New: func() any { return new([bigBufSize]byte) }}
)

// sealedLen is the room a record of n plaintext bytes takes once sealed.
func sealedLen(n int) int { return recordHeaderLen + explicitNonceLen + n + 1 + aeadTagLen }

// getBuf returns a pooled buffer of at least n bytes (a fresh one beyond
// bigBufSize, which no record needs).
func getBuf(n int) []byte {
	switch {
	case n <= smallBufSize:
		return smallPool.Get().(*[smallBufSize]byte)[:]
	case n <= bigBufSize:
		return bigPool.Get().(*[bigBufSize]byte)[:]
	}
	return make([]byte, n)
}

// putBuf gives b, which must start at the start of its array and no
// longer be referenced by the caller, back to its pool.
func putBuf(b []byte) {
	switch cap(b) {
	case smallBufSize:
		smallPool.Put((*[smallBufSize]byte)(b[:smallBufSize]))
	case bigBufSize:
		bigPool.Put((*[bigBufSize]byte)(b[:bigBufSize]))
	}
}
