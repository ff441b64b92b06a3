package dkg

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/mcbn/mcbn/psk"
)

// Params are the public facts every participant must give identically to
// Init: the group name, the threshold T and the participants in index order
// (participant i, 1-based, receives the share f(i)).
type Params struct {
	Group        string
	Threshold    int
	Participants []string
}

// The same name rule as package psk (names become file names).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkName(field, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%s %q is not a valid name (1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)", field, name)
	}
	return nil
}

// Validate checks names, uniqueness and 2 <= T <= N <= 255.
func (p Params) Validate() error {
	if err := checkName("group name", p.Group); err != nil {
		return err
	}
	n := len(p.Participants)
	switch {
	case n > psk.MaxParticipants:
		return fmt.Errorf("too many participants: %d (at most %d)", n, psk.MaxParticipants)
	case n < psk.MinThreshold:
		return fmt.Errorf("need at least %d participants, got %d", psk.MinThreshold, n)
	case p.Threshold < psk.MinThreshold:
		return fmt.Errorf("threshold %d is below %d (a single share would reveal the secret)", p.Threshold, psk.MinThreshold)
	case p.Threshold > n:
		return fmt.Errorf("threshold %d is greater than the number of participants %d", p.Threshold, n)
	}
	seen := map[string]bool{}
	for _, name := range p.Participants {
		if err := checkName("participant name", name); err != nil {
			return err
		}
		if seen[name] {
			return fmt.Errorf("participant name %q appears twice", name)
		}
		seen[name] = true
	}
	return nil
}

// N is the number of participants.
func (p Params) N() int { return len(p.Participants) }

// Index returns the 1-based index of name, or 0 if it is not a participant.
func (p Params) Index(name string) int {
	for i, n := range p.Participants {
		if n == name {
			return i + 1
		}
	}
	return 0
}

// Equal reports whether p and q describe the same ceremony parameters.
func (p Params) Equal(q Params) bool {
	if p.Group != q.Group || p.Threshold != q.Threshold || len(p.Participants) != len(q.Participants) {
		return false
	}
	for i := range p.Participants {
		if p.Participants[i] != q.Participants[i] {
			return false
		}
	}
	return true
}

// String is a one-line description for messages.
func (p Params) String() string {
	return fmt.Sprintf("group %s, %d of %s", p.Group, p.Threshold, strings.Join(p.Participants, ","))
}

// appendParams appends str(group) || u8(T) || u8(N) || for i: u8(i) || str(name_i).
func appendParams(b []byte, p Params) []byte {
	b = appendStr(b, p.Group)
	b = append(b, byte(p.Threshold), byte(p.N()))
	for i, n := range p.Participants {
		b = append(b, byte(i+1))
		b = appendStr(b, n)
	}
	return b
}

// appendStr appends u8(len(s)) || s; every string here is at most 64 bytes.
func appendStr(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}
