package attest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Claims are the verified claims of an attestation token. Raw keeps every
// claim as decoded JSON (map[string]any, []any, string, float64, bool, nil),
// the shape a CEL policy over "assertion" expects; the methods give typed
// access to what mcbn itself reads.
type Claims struct {
	Raw map[string]any

	issuer    string
	subject   string
	audience  []string
	expiry    time.Time
	notBefore time.Time // zero when absent
	issuedAt  time.Time
	nonces    []string
}

// Issuer returns iss.
func (c *Claims) Issuer() string { return c.issuer }

// Subject returns sub (for Confidential Space, the VM's selfLink).
func (c *Claims) Subject() string { return c.subject }

// Audience returns aud as a list, whether the token had a string or an array.
func (c *Claims) Audience() []string { return append([]string(nil), c.audience...) }

// Expiry returns exp.
func (c *Claims) Expiry() time.Time { return c.expiry }

// NotBefore returns nbf, or the zero time when the token has none.
func (c *Claims) NotBefore() time.Time { return c.notBefore }

// IssuedAt returns iat.
func (c *Claims) IssuedAt() time.Time { return c.issuedAt }

// Nonces returns eat_nonce as a list, whether the token had a string or an
// array.
func (c *Claims) Nonces() []string { return append([]string(nil), c.nonces...) }

// ImageDigest returns submods.container.image_digest ("sha256:...").
func (c *Claims) ImageDigest() string { return c.StringAt("submods", "container", "image_digest") }

// ImageReference returns submods.container.image_reference.
func (c *Claims) ImageReference() string {
	return c.StringAt("submods", "container", "image_reference")
}

// SWName returns swname ("CONFIDENTIAL_SPACE" in production).
func (c *Claims) SWName() string { return c.StringAt("swname") }

// DebugStatus returns dbgstat ("disabled-since-boot" in production images).
func (c *Claims) DebugStatus() string { return c.StringAt("dbgstat") }

// HWModel returns hwmodel ("GCP_AMD_SEV", "GCP_INTEL_TDX", ...).
func (c *Claims) HWModel() string { return c.StringAt("hwmodel") }

// ProjectID returns submods.gce.project_id.
func (c *Claims) ProjectID() string { return c.StringAt("submods", "gce", "project_id") }

// SupportAttributes returns submods.confidential_space.support_attributes
// (contains "STABLE" for production images).
func (c *Claims) SupportAttributes() []string {
	return c.StringsAt("submods", "confidential_space", "support_attributes")
}

// ServiceAccounts returns google_service_accounts.
func (c *Claims) ServiceAccounts() []string { return c.StringsAt("google_service_accounts") }

// Lookup walks nested objects of Raw along path.
func (c *Claims) Lookup(path ...string) (any, bool) {
	var cur any = c.Raw
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// StringAt returns the string at path, or "" when absent or not a string.
func (c *Claims) StringAt(path ...string) string {
	v, _ := c.Lookup(path...)
	s, _ := v.(string)
	return s
}

// StringsAt returns the string array at path; non-string elements are
// skipped; a single string counts as a one-element list.
func (c *Claims) StringsAt(path ...string) []string {
	v, _ := c.Lookup(path...)
	out, _ := stringList(v)
	return out
}

// String summarises the token for logs: subject and image digest only,
// never the token itself.
func (c *Claims) String() string {
	return fmt.Sprintf("sub=%q image_digest=%q", c.subject, c.ImageDigest())
}

// Bounds on eat_nonce in a verified token. The launcher takes at most 6
// nonces per token request; Google's documents give each nonce 10..74 bytes
// in one place and 8..88 in another, so the verifier accepts the wider range
// (a token Google did issue must pass) while the providers request within
// the narrower one (see ValidateTokenRequest).
const (
	MaxTokenNonces   = 6
	MinTokenNonceLen = 8
	MaxTokenNonceLen = 88
)

// parseClaims decodes a JWT payload into Claims and checks the type of the
// registered claims it relies on, and the launcher's bounds on eat_nonce.
// It does not judge their values.
func parseClaims(payload []byte) (*Claims, error) {
	var raw map[string]any
	if err := decodeOne(payload, &raw); err != nil {
		return nil, wrapf(ErrMalformed, "claims are not one JSON object: %s", err)
	}
	if raw == nil {
		return nil, wrapf(ErrMalformed, "claims are not a JSON object")
	}
	c := &Claims{Raw: raw}
	var ok bool
	if v, present := raw["iss"]; present {
		if c.issuer, ok = v.(string); !ok {
			return nil, wrapf(ErrMalformed, "iss is not a string")
		}
	}
	if v, present := raw["sub"]; present {
		if c.subject, ok = v.(string); !ok {
			return nil, wrapf(ErrMalformed, "sub is not a string")
		}
	}
	if v, present := raw["aud"]; present {
		if c.audience, ok = stringList(v); !ok {
			return nil, wrapf(ErrMalformed, "aud is neither a string nor an array of strings")
		}
	}
	if v, present := raw["eat_nonce"]; present {
		if c.nonces, ok = stringList(v); !ok {
			return nil, wrapf(ErrMalformed, "eat_nonce is neither a string nor an array of strings")
		}
		if len(c.nonces) > MaxTokenNonces {
			return nil, wrapf(ErrMalformed, "eat_nonce has %d entries, at most %d allowed", len(c.nonces), MaxTokenNonces)
		}
		for i, n := range c.nonces {
			if len(n) < MinTokenNonceLen || len(n) > MaxTokenNonceLen {
				return nil, wrapf(ErrMalformed, "eat_nonce[%d] is %d bytes, must be %d..%d", i, len(n), MinTokenNonceLen, MaxTokenNonceLen)
			}
		}
	}
	var err error
	if c.expiry, err = numericDate(raw, "exp", true); err != nil {
		return nil, err
	}
	if c.issuedAt, err = numericDate(raw, "iat", true); err != nil {
		return nil, err
	}
	if c.notBefore, err = numericDate(raw, "nbf", false); err != nil {
		return nil, err
	}
	return c, nil
}

// stringList accepts a string or an array of strings (the two shapes of aud
// and eat_nonce). For an array, every element must be a string.
func stringList(v any) ([]string, bool) {
	switch t := v.(type) {
	case string:
		return []string{t}, true
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	default:
		return nil, false
	}
}

// maxNumericDate bounds exp/nbf/iat (year 9999) so conversions stay exact.
const maxNumericDate = 253402300799

// numericDate reads a JWT NumericDate (seconds since the epoch, RFC 7519).
func numericDate(raw map[string]any, name string, required bool) (time.Time, error) {
	v, present := raw[name]
	if !present {
		if required {
			return time.Time{}, wrapf(ErrMalformed, "missing %s", name)
		}
		return time.Time{}, nil
	}
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, wrapf(ErrMalformed, "%s is not a valid NumericDate", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// decodeOne decodes data as exactly one JSON value into v: nothing may
// follow it, not even whitespace (a signed header or payload has none), so a
// stray "}" or "]" after the object is refused rather than ignored. Errors
// never quote the input.
func decodeOne(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("truncated")
		}
		return errors.New(jsonErrorKind(err))
	}
	if off := dec.InputOffset(); off != int64(len(data)) {
		return fmt.Errorf("%d trailing bytes after the object", int64(len(data))-off)
	}
	return nil
}

// jsonErrorKind describes a JSON error without quoting the input.
func jsonErrorKind(err error) string {
	switch err.(type) {
	case *json.SyntaxError:
		return "syntax error"
	case *json.UnmarshalTypeError:
		return "wrong type"
	default:
		return "invalid JSON"
	}
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
