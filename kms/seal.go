package kms

import (
	"context"
	"encoding/base64"
	"time"

	"github.com/mcbn/mcbn/psk"
)

// DefaultSealTimeout bounds Seal when the context has no deadline.
const DefaultSealTimeout = time.Minute

// Seal encrypts share (its share-file bytes) with the Cloud KMS crypto key
// kmsKey, with the additional authenticated data AAD(group id, index,
// participant), and returns the sealed share. The caller needs
// cloudkms.cryptoKeyVersions.useToEncrypt on the key (roles/cloudkms.
// cryptoKeyEncrypter); it does not need to be able to decrypt.
func Seal(ctx context.Context, o ClientOptions, kmsKey string, share *psk.Share) (*SealedShare, error) {
	if !ValidKMSKey(kmsKey) {
		return nil, classed("", ErrLocal, "--kms %s is not projects/P/locations/L/keyRings/R/cryptoKeys/K", clip(kmsKey, 200))
	}
	aad, err := AAD(share.GroupID, share.Index, share.Participant)
	if err != nil {
		return nil, classed("", ErrLocal, "share: %v", err)
	}
	plaintext, err := psk.MarshalShare(share)
	if err != nil {
		return nil, classed("", ErrLocal, "%v", err)
	}
	defer psk.Wipe(plaintext)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultSealTimeout)
		defer cancel()
	}
	c, err := newClient(ctx, o)
	if err != nil {
		return nil, classed("", ErrLocal, "%v", err)
	}
	defer c.Close()
	ct, version, err := c.encrypt(ctx, kmsKey, plaintext, aad)
	if err != nil {
		return nil, classifyKMS(ctx, "", "Encrypt with", kmsKey, err, "the deadline", "")
	}
	s := &SealedShare{
		Version: SealedVersion, Type: TypeSealedShare,
		GroupID: share.GroupID, Index: share.Index, Participant: share.Participant,
		KMSKey: kmsKey, KeyVersion: version,
		Ciphertext: base64.StdEncoding.EncodeToString(ct),
	}
	if err := s.validate(); err != nil {
		return nil, classed("", ErrInvalidShare, "KMS answer: %v", err)
	}
	return s, nil
}
