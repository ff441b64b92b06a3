// Package shareholder is the consent half of mcbn: the daemon a participant
// runs to hold one share of the group secret and release it only to an
// attested proxy, and the client side the proxy uses to gather shares.
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
//   - On the proxy side, SharesSource contacts every shareholder in parallel,
//     verifies each share against the group's Feldman commitments (psk), uses
//     the first T valid ones and wipes everything else. Below T it drops the
//     key and says who refused and why, the way Vault shows unseal progress.
//
// Shares, PSKs and tokens never appear in a log line, an error, a metric or
// the audit log. See docs/share-release.md for the wire protocol.
package shareholder
