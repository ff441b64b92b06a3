package shareholder

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/mcbn/mcbn/psk/tprf"
)

// Release modes of a request (ReleaseRequest.Mode).
const (
	// ModeShare releases the raw share file (the default).
	ModeShare = "share"
	// ModeEvaluate answers a threshold PRF partial for (group, identity,
	// epoch) with its proof; the share never leaves (docs/share-release.md,
	// "Evaluate mode").
	ModeEvaluate = "evaluate"
)

// maxIdentityLen bounds the PSK identity of an evaluate request (TLS allows
// 65535; the request body is bounded anyway).
const maxIdentityLen = 1024

// checkMode validates the mode fields of a parsed request: evaluate needs a
// PSK identity; share takes neither identity nor epoch.
func checkMode(r *ReleaseRequest) error {
	switch r.Mode {
	case "", ModeShare:
		if r.Identity != "" || r.Epoch != 0 {
			return errors.New("identity and epoch belong to mode evaluate")
		}
	case ModeEvaluate:
		if r.Identity == "" {
			return errors.New("mode evaluate needs the psk identity")
		}
		if len(r.Identity) > maxIdentityLen {
			return fmt.Errorf("identity is %d bytes, at most %d", len(r.Identity), maxIdentityLen)
		}
	default:
		return fmt.Errorf("unknown mode %q (want %s or %s)", clipField(r.Mode, 16), ModeShare, ModeEvaluate)
	}
	return nil
}

// EvaluateResponse is the 200 reply of an evaluate request: the partial in
// the tprf wire format, lowercase hex. It holds only points and proof
// scalars, nothing of the share.
type EvaluateResponse struct {
	Version int    `json:"version"`
	Partial string `json:"partial"`
}

// ParseEvaluateResponse decodes an evaluate reply strictly (one object,
// known fields, version 1) and the partial inside it (tprf.ParsePartial).
// It does not verify the proof: the caller checks it against the group.
func ParseEvaluateResponse(body []byte) (*tprf.Partial, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r EvaluateResponse
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("reply is not an evaluate response: %s", jsonKind(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the evaluate response")
	}
	if r.Version != ProtocolVersion {
		return nil, fmt.Errorf("reply version %d, want %d", r.Version, ProtocolVersion)
	}
	if len(r.Partial) > 2*tprf.MaxPartialLen {
		return nil, errors.New("partial too long")
	}
	b, err := hex.DecodeString(r.Partial)
	if err != nil || hex.EncodeToString(b) != r.Partial {
		return nil, errors.New("partial is not lowercase hex")
	}
	return tprf.ParsePartial(b)
}
