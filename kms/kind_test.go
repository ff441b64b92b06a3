package kms

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/psk"
)

// memoryKind is a test participant kind holding its share in memory, so a
// group can mix a KMS participant with others without running daemons
// here (gather's own tests run the daemon kind against real daemons).
const memoryKind = "memory-test"

var (
	memoryMu     sync.Mutex
	memoryShares = map[string]*psk.Share{} // name -> share; nil: refuses
)

func init() {
	gather.RegisterKind(memoryKind, func(e gather.Entry) (gather.Participant, error) {
		return memoryParticipant(e.Name), nil
	})
}

type memoryParticipant string

func (m memoryParticipant) Name() string { return string(m) }
func (m memoryParticipant) Kind() string { return memoryKind }
func (m memoryParticipant) Fetch(ctx context.Context, req gather.FetchRequest) (*psk.Share, error) {
	memoryMu.Lock()
	defer memoryMu.Unlock()
	s := memoryShares[string(m)]
	if s == nil {
		return nil, &gather.RefusedError{Participant: string(m), Reason: gather.ReasonConsentRevoked}
	}
	c := *s
	c.Value = append([]byte(nil), s.Value...)
	return &c, nil
}

func setMemoryShare(name string, s *psk.Share) {
	memoryMu.Lock()
	defer memoryMu.Unlock()
	memoryShares[name] = s
}

// A group mixing a Cloud KMS participant (through the real client
// libraries against the STS and KMS fakes) with participants of another
// kind: the KMS share counts toward T like any other, its refusals are
// named, and the participant revokes consent by disabling its key
// version, which takes the network below T exactly as a daemon's revoke.
func TestMixedGroupKMSParticipant(t *testing.T) {
	e := newEnv(t)
	groupFile := filepath.Join(e.dir, "group.json")
	if err := psk.WriteGroup(groupFile, e.group); err != nil {
		t.Fatal(err)
	}
	setMemoryShare("bob", e.shares[1])
	setMemoryShare("carol", nil) // carol has withdrawn
	opts, err := gather.NewOptions(e.opts())
	if err != nil {
		t.Fatal(err)
	}
	src, err := gather.NewSharesSource(gather.SharesSourceConfig{
		Group: groupFile,
		Shareholders: []gather.ShareholderConfig{
			{Name: "alice", Kind: KindKMS, Options: opts},
			{Name: "bob", Kind: memoryKind},
			{Name: "carol", Kind: memoryKind},
		},
		Attestation: gather.AttestationConfig{Provider: "dev", Socket: e.dev.Socket()},
		Identity:    "Client_identity", Epoch: 1,
		Refresh: 100 * time.Millisecond, Timeout: 20 * time.Second,
	}, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	want := expectedPSK(t, e.group, e.shares[:2])
	waitUntil(t, "the key from alice (KMS) and bob", func() bool {
		k, err := src.Key("Client_identity")
		return err == nil && string(k) == string(want)
	})
	if p := src.Progress().String(); !strings.Contains(p, "alice ok") || !strings.Contains(p, "carol refused: consent_revoked") {
		t.Fatalf("progress %q", p)
	}

	// alice withdraws by disabling the key version that sealed her share.
	version := e.participant(e.opts()).Sealed().KeyVersion
	if version == "" {
		t.Fatal("the sealed share names no key version")
	}
	if err := e.fake.DisableVersion(version); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the key to drop", func() bool { return !src.Status().Ready })
	p := src.Progress()
	if s := p.String(); !strings.Contains(s, "alice refused: key_disabled") {
		t.Fatalf("progress after disabling the key version: %q", s)
	}
	if head := p.Shortfall(); !strings.HasPrefix(head, "not enough shareholders consent") {
		t.Fatalf("shortfall %q: a disabled key version is withdrawn consent", head)
	}

	// Enabling it again brings the network back by itself.
	if err := e.fake.EnableVersion(version); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the key to come back", func() bool { return src.Status().Ready })
}

// The dry run asks KMS participants through the same interface.
func TestCheckAsksKMSParticipant(t *testing.T) {
	e := newEnv(t)
	groupFile := filepath.Join(e.dir, "group.json")
	if err := psk.WriteGroup(groupFile, e.group); err != nil {
		t.Fatal(err)
	}
	setMemoryShare("bob", e.shares[1])
	opts, _ := gather.NewOptions(e.opts())
	prog, err := gather.Check(context.Background(), gather.SharesSourceConfig{
		Group: groupFile,
		Shareholders: []gather.ShareholderConfig{
			{Name: "alice", Kind: KindKMS, Options: opts},
			{Name: "bob", Kind: memoryKind},
		},
		Attestation: gather.AttestationConfig{Provider: "dev", Socket: e.dev.Socket()},
		Timeout:     20 * time.Second,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := prog.String(); !strings.Contains(s, "alice ok") {
		t.Fatalf("dry run: %q", s)
	}
}

// A KMS entry whose sealed share is another participant's is refused when
// the source is built, naming the field.
func TestKMSKindConfigErrors(t *testing.T) {
	e := newEnv(t)
	groupFile := filepath.Join(e.dir, "group.json")
	if err := psk.WriteGroup(groupFile, e.group); err != nil {
		t.Fatal(err)
	}
	opts, _ := gather.NewOptions(e.opts()) // alice's sealed share
	_, err := gather.NewSharesSource(gather.SharesSourceConfig{
		Group: groupFile,
		Shareholders: []gather.ShareholderConfig{
			{Name: "bob", Kind: KindKMS, Options: opts},
			{Name: "carol", Kind: memoryKind},
		},
		Attestation: gather.AttestationConfig{Provider: "dev", Socket: e.dev.Socket()},
	}, nil, quiet)
	if err == nil || !strings.Contains(err.Error(), "shareholders[0].options") {
		t.Fatalf("error %v, want one naming shareholders[0].options", err)
	}
}

func expectedPSK(t *testing.T, g *psk.Group, shares []*psk.Share) []byte {
	t.Helper()
	secret, err := psk.Combine(g, shares)
	if err != nil {
		t.Fatal(err)
	}
	k, err := psk.DerivePSK(secret, g.ID, "Client_identity", 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
