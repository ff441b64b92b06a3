// Package dkg runs a distributed key generation (DKG) for a T-of-N mcbn
// group as an offline ceremony over files.
//
// Why: with 'mcbn psk split' a dealer draws the polynomial and so sees the
// group secret; whoever runs it must be trusted by everyone. Contributory
// n-of-n groups need no dealer but lose the threshold. Here every
// participant deals a Feldman sharing of a random secret of its own to all
// the others (joint Feldman); each final share is the sum of the sub-shares a
// participant received and the group's commitments are the sum of the
// dealers' commitments. The group secret, the sum of all the dealers'
// secrets, is never computed anywhere, and the output is an ordinary psk
// group descriptor and share files that the rest of mcbn uses unchanged.
//
// The ceremony has three steps, each a file exchange:
//
//   - Init draws the participant's polynomial, an HPKE (X25519) key and an
//     Ed25519 signing key; the private state stays with the participant
//     (mode 0600) and the public file (Pub) goes to everyone. Pub commits to
//     the dealer's Feldman commitments by digest, so no dealer can choose its
//     polynomial after seeing another's (no rushing).
//   - Deal checks everyone's Pub, fixes the ceremony id (a digest of all of
//     them) and writes a signed Round1 file: the dealer's commitments and one
//     HPKE-sealed sub-share per recipient, bound to the ceremony, the sender,
//     the recipient and the round.
//   - Finish verifies what each dealer sent to this participant and either
//     produces the group descriptor and share, or names every participant
//     whose message is missing or wrong.
//
// docs/dkg.md has the protocol, the byte formats, the reasoning about bias
// and the rules for aborting or excluding a dealer.
package dkg
