// Package psk holds everything about the key material of an mcbn group: the
// public group descriptor, the secret share and contributory key files, the
// threshold (Shamir with Feldman commitments over ristretto255) and
// contributory (n-of-n) schemes, the original demo's legacy derivation, and
// the HKDF step that turns a group secret into a TLS pre-shared key.
//
// Why it looks like this:
//
//   - The group descriptor is public and its id is a SHA-256 digest of a
//     canonical byte encoding of everything else in it (name, scheme,
//     threshold, participants, commitments), so nobody can swap a commitment
//     or a participant without changing the id that every share names.
//   - A share is checked against the Feldman commitments before it is used,
//     so a shareholder returning a wrong value is named, not silently mixed
//     into a wrong key.
//   - The PSK is never the raw secret: DerivePSK runs HKDF-SHA256 with the
//     group id in the salt and the PSK identity and epoch in the info, so one
//     group yields independent keys per identity and per rotation.
//
// Reconstruction comes in two flavours. Combine is strict: every share given
// must be valid, distinct and of this group, otherwise the error names every
// offending participant; the CLI uses it. CombineValid is tolerant: it sets
// aside bad shares (reported one error each in bad) and reconstructs when at
// least T valid ones remain; the proxy uses it so that one malicious or
// broken shareholder cannot stop a quorum of honest ones.
//
// Secret byte slices are zeroed with Wipe once used. Scalars inside circl
// cannot be wiped completely (the library copies them internally), so a
// reconstruction leaves some copies to the garbage collector; we zero the
// ones we hold.
//
// The byte-level formats are specified in docs/key-derivation.md.
package psk
