// Package kms lets a participant take part in a group without running a
// daemon: its share is sealed (encrypted) with a Cloud KMS key in the
// participant's own project, and the proxy, inside its TEE, gets the share
// back only by presenting its Confidential Space attestation token to
// Google's Security Token Service (STS) through the participant's Workload
// Identity Federation (WIF) pool, whose provider's attribute condition
// admits only the approved image, and then calling KMS Decrypt with the
// federated token.
//
// The package has four parts:
//
//   - The sealed-share envelope (SealedShare, ParseSealed, AAD): a versioned
//     JSON file holding the KMS ciphertext of a share file. The additional
//     authenticated data binds a domain label and version, the group id, the
//     share index and the participant name, so a sealed share cannot be
//     swapped for another participant's or another group's. The file is not
//     secret. See docs/key-derivation.md, "Sealed shares".
//   - Seal: encrypts a share with KMS Encrypt (what `mcbn psk seal` runs).
//   - Participant: what the proxy's share gathering calls for a `kind: kms`
//     entry. Fetch exchanges the attestation token at STS
//     (golang.org/x/oauth2/google/externalaccount, credential_source file,
//     optional service account impersonation), calls KMS Decrypt
//     (cloud.google.com/go/kms/apiv1) with the AAD, and parses and binds the
//     share. Errors are classified (ErrPermissionDenied, ErrKeyDisabled,
//     ErrSTSRejected, ErrUnreachable, ErrLocal, ErrInvalidShare; see Reason)
//     and never contain a token or share.
//   - GCPSetup: the gcloud commands or Terraform a participant runs to create
//     the key, the pool, the provider with the attribute condition and the
//     IAM binding (what `mcbn participant gcp-setup` prints).
//
// Package kmsfake holds local fakes of STS and Cloud KMS that the real
// client libraries talk to, for tests and the demo.
//
// A KMS participant gives weaker promises than a daemon: its release is not
// bound to the proxy's TLS connection, consent is per key rather than per
// request, and the audit trail is Cloud Audit Logs, not ours. See
// docs/participants.md.
package kms
