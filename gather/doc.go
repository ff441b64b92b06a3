// Package gather is the proxy side of consent: the `shares` PSK source
// that asks the group's participants for their shares, checks each one,
// reconstructs the group secret from T of them and derives the route's PSK,
// and the dry run behind `mcbn proxy check`.
//
// Why it looks like this:
//
//   - Participants come in kinds. A participant is anything that can be
//     asked for its share (the Participant interface): an `mcbn shareholder
//     serve` daemon (kind "daemon", the default, built in), or another kind
//     registered with RegisterKind from the package providing it (a share
//     wrapped by Cloud KMS, package kms). This package never imports a
//     kind; the binary links the kinds it supports. The rounds, the
//     verification and the progress are the same for every kind.
//   - Nothing a participant returns is trusted: every share is verified
//     against the group's Feldman commitments (psk) and must be the share of
//     the participant asked. A round uses the first T valid ones and wipes
//     everything else. Below T the source drops the key and says who
//     refused and why, the way Vault shows unseal progress.
//   - A participant's decision (a refusal with a reason code) is kept apart
//     from a failure to ask it (unreachable, with local failures of this
//     proxy marked as such) and from an invalid share, so an operator is
//     never told that consent was withdrawn when the proxy itself could not
//     get through.
//   - A daemon participant is asked over TLS 1.3 pinned to the daemon's key,
//     with an attestation token bound to that connection (the release
//     protocol of docs/share-release.md, whose wire types live in package
//     shareholder with the daemon that defines them). Everything read from
//     a participant is bounded in bytes and time: a participant may be
//     hostile.
//
// Shares, PSKs and tokens never appear in a log line, an error or a metric.
package gather
