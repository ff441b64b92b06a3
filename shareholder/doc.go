// Package shareholder is the consent half of mcbn: the daemon a participant
// runs to hold one share of the group secret and release it only to an
// attested proxy, and the release protocol's wire types. The proxy side
// (asking participants for shares) is package gather, which imports this
// one for the wire types; this package never imports gather.
//
// Why it looks like this:
//
//   - A share is released over TLS 1.3 only, and the attestation token must
//     carry, as its nonce, keying material exported from that very TLS
//     connection (RFC 8446 section 7.5, label ReleaseEKMLabel). A token
//     captured by the operator is therefore useless on any other connection:
//     the shareholder computes the value from its own side and compares.
//   - The release policy is CEL over the token's claims ("assertion") and the
//     request ("request"), the language and names participants already use
//     for GCP workload identity conditions. It is compiled at start and on
//     reload, so a broken policy is a startup error, not a silent refusal.
//   - A refusal tells the caller only a coarse reason code (token_invalid,
//     policy_denied, consent_revoked, ...). The detail, which could help an
//     attacker tune a forgery, goes to the hash-chained audit log and the
//     daemon's log only.
//   - Consent is a value the participant controls (config or `mcbn
//     shareholder consent`), re-read on SIGHUP and by polling the config
//     file, so revocation takes effect without a restart.
//   - The audit log is append-only JSON lines, each carrying the hash of the
//     previous one, so an edited, deleted or reordered line is detected.
//
// Shares, PSKs and tokens never appear in a log line, an error, a metric or
// the audit log. See docs/share-release.md for the wire protocol.
package shareholder
