package demo

import (
	"errors"
	"fmt"
)

// Evidence kinds of Options.TEE.
const (
	TEEDev     = "dev"
	TEEMockTSM = "mock-tsm"
)

// Check refuses the combinations of variants that do not make one story
// (Run checks too). Each message names the flags, as a person types them.
func (o *Options) Check() error {
	switch o.TEE {
	case "":
		o.TEE = TEEDev
	case TEEDev, TEEMockTSM:
	default:
		return fmt.Errorf("--tee %q: want %s or %s", o.TEE, TEEDev, TEEMockTSM)
	}
	switch {
	case o.Rotate && o.TPRF:
		// Both are an epoch change while traffic flows; --tprf already
		// shows one (epoch 1 to 2, driven by the participants' windows).
		return errors.New("--rotate and --tprf cannot be combined: --tprf already rotates the key (epoch 1 to 2); run them one at a time")
	case o.KMS && o.TPRF:
		// carol's KMS share is unsealed whole inside the proxy, which then
		// evaluates for her: the story "no share ever leaves a participant"
		// would not hold.
		return errors.New("--kms and --tprf cannot be combined: carol's Cloud KMS share would be unsealed whole in the proxies, which --tprf is meant to show never happens")
	case o.KMS && o.Rotate:
		return errors.New("--kms and --rotate cannot be combined: the rotated route is built from its config file, which the demo writes for daemon participants only")
	case o.KMS && o.TEE == TEEMockTSM:
		// The STS fake federates tokens; raw evidence is no token.
		return errors.New("--kms and --tee mock-tsm cannot be combined: carol's Cloud KMS trusts attestation tokens, and mock-tsm evidence is not a token")
	}
	return nil
}

// flags are the demo's own flags, repeated in the --keep hint so that it
// runs the same demo.
func (o *Options) flags() []string {
	var f []string
	if o.DKG {
		f = append(f, "--dkg")
	}
	if o.KMS {
		f = append(f, "--kms")
	}
	if o.Rotate {
		f = append(f, "--rotate")
	}
	if o.TPRF {
		f = append(f, "--tprf")
	}
	if o.TEE == TEEMockTSM {
		f = append(f, "--tee", TEEMockTSM)
	}
	return f
}

// epochs reports whether the TCP route's key comes in epochs (its proxies
// are then built from config files the demo rewrites and reloads).
func (o *Options) epochs() bool { return o.Rotate || o.TPRF }
