// Package reshare moves the secret of a T-of-N Shamir group (package psk) to
// a new set of participants and a new threshold T'-of-N', or re-randomizes
// every share of the same set (a proactive refresh), without anyone ever
// holding the secret. It is a file ceremony shaped like 'mcbn psk dkg':
//
//   - Keygen: each new participant makes an HPKE (X25519) key pair: the
//     private key file stays with it (0600), the pub file goes to whoever
//     prepares the ceremony.
//   - Init: from the old group descriptor, the dealers (at least T old
//     holders, fixed here so that every new participant combines the same
//     set), T' and the new participants' pub files, a public params file
//     whose digest is the reshare id; everyone compares it out of band.
//   - Deal: each listed old holder i draws g_i(x) = s_i + b_1 x + ... of
//     degree T'-1 (s_i its share), publishes the Feldman commitments of g_i
//     and seals g_i(j) to each new participant j with HPKE; the deal is
//     signed by a Schnorr proof of knowledge of s_i under X_i = s_i·G, the
//     public key every old group's commitments define for participant i.
//   - Finish: new participant j checks every deal (the proof, the
//     constant-term commitment equal to X_i, its sub-share against the
//     dealer's commitments), names every missing or wrong dealer, and
//     combines with the Lagrange coefficients λ_i of the dealer set at 0:
//     share'_j = Σ λ_i g_i(j), C'_k = Σ λ_i D_{i,k}. Then C'_0 = Σ λ_i X_i =
//     s·G, the old group's C_0: the secret is unchanged, provably, and the
//     new descriptor inherits the old KeyID so the same PSKs are derived.
//
// docs/key-lifecycle.md has the protocol, the file formats and what resharing
// and refreshing do and do not protect against.
package reshare
