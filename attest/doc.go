// Package attest gets remote-attestation tokens inside a trusted execution
// environment and verifies them outside it.
//
// Why it exists: a shareholder releases its share of the tunnel key only to a
// proxy that proves it runs the reviewed image inside a TEE the operator
// cannot read. The proof is a Google Cloud Confidential Space attestation
// token: a JWT, signed by Google, whose claims describe the hardware, the OS
// image, the container digest and a caller-chosen nonce. The proxy puts a
// value derived from its TLS connection to the shareholder into that nonce,
// so a token captured by the operator is useless on any other connection.
//
// The package has three parts:
//
//   - TokenProvider: how the proxy asks the Confidential Space launcher (or the
//     local dev attester, which speaks the same protocol) for a token.
//   - Verifier: how the shareholder checks a token: signature with keys from
//     the configured issuer's OIDC discovery and JWKS (never an issuer named
//     by the token), RS256 only, iss, aud, exp, nbf, iat (not in the future,
//     not older than a max age) with a small clock skew, and the
//     connection's nonce in eat_nonce. Failures wrap exported
//     sentinel errors so callers can turn them into reason codes (Reason).
//   - DevAttester: a local stand-in for Confidential Space (an OIDC issuer on
//     loopback plus a launcher-compatible Unix socket) for demos and tests.
//     Its tokens carry swname MCBN_DEV_ATTESTER and dbgstat enabled, values
//     that no production policy accepts.
//
// Beyond Confidential Space, EvidenceProvider produces raw TDX quotes and
// SEV-SNP reports (configfs-tsm, or the guest devices) whose REPORTDATA
// binds the connection (EvidenceReportData), and EvidenceVerifier checks
// them offline against the embedded Intel and AMD roots and a local
// collateral cache (CollateralCache, FetchCollateral). mock-tsm is a
// configfs-tsm lookalike for CI whose evidence proves nothing.
//
// Tokens are bearer credentials: nothing here logs or returns a token or a
// private key in an error; logs name a token by its subject and image digest.
// See docs/attestation.md for the token format and the reasoning.
package attest
