package demo

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// demoMeasurement is the launch measurement the mock hardware reports for
// the demo's proxies and the daemons' mock policy accepts (--tee
// mock-tsm): 48 bytes, as a TDX MRTD or an SEV-SNP measurement. In
// production it is the measurement of the approved VM image.
var demoMeasurement = func() string {
	sum := sha512.Sum384([]byte("mcbn demo proxy image " + demoDigest))
	return hex.EncodeToString(sum[:])
}()

// mockIssuer is the token issuer the daemons' verifier names with --tee
// mock-tsm. The config requires one, but no token is ever presented (the
// proxies send raw evidence), so its keys are never fetched: they are
// fetched on a token's first use only.
const mockIssuer = "https://confidentialcomputing.googleapis.com"

// startMockTSM makes the mock-tsm directory that stands in for the
// proxies' configfs-tsm (/sys/kernel/config/tsm/report) and returns what
// the daemons' config and policy say about it. The proxies' gatherers
// write their REPORTDATA (channel binding and the daemon's challenge) into
// it and read back a report signed by the mock key; each daemon verifies
// that report itself against the mock root, with no verifier service in
// between.
func (net *network) startMockTSM(n *narrator) (verifierYAML, string, error) {
	n.say("== Making a mock-tsm directory: it stands in for the proxies' TEE hardware (configfs-tsm) and proves nothing")
	m, err := attest.CreateMockTSM(filepath.Join(net.dir, "mock-tsm"), attest.MockConfig{Measurement: demoMeasurement})
	if err != nil {
		return verifierYAML{}, "", fmt.Errorf("mock-tsm: %w", err)
	}
	net.mock = m
	net.attCfg = gather.AttestationConfig{Provider: attest.KindMockTSM, Socket: m.Dir}
	policy, err := shareholder.MockPolicy([]string{demoMeasurement})
	if err != nil {
		return verifierYAML{}, "", err
	}
	n.say("   reports signed by a test key under %s; the daemons check them against its root themselves", m.Dir)
	n.say("   their policy (TEST ONLY) accepts tee == mock, no debug, measurement %s…", demoMeasurement[:16])
	return verifierYAML{issuer: mockIssuer, mockRoot: filepath.Join(m.Dir, attest.MockRootFile)}, policy, nil
}

// otherImageStep shows what the mock policy holds back: a proxy on the
// same (mock) hardware, with the same attestation key, whose launch
// measurement is another image's gets nothing from any participant.
func otherImageStep(ctx context.Context, n *narrator, net *network) error {
	other := strings.Repeat("00", 48)
	n.say("== A proxy running other code on the same hardware (measurement %s…) asks the three participants", other[:16])
	dir := filepath.Join(net.dir, "mock-tsm-other")
	if err := os.MkdirAll(filepath.Join(dir, "report"), 0o700); err != nil {
		return err
	}
	// The same mock key and chain: only the measurement differs, as for a
	// modified image on a genuine machine.
	for _, f := range []string{attest.MockKeyFile, attest.MockChainFile, attest.MockRootFile} {
		b, err := os.ReadFile(filepath.Join(net.mock.Dir, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			return err
		}
	}
	m := &attest.MockTSM{Dir: dir}
	if err := m.SetConfig(attest.MockConfig{Measurement: other}); err != nil {
		return err
	}
	cfg := gather.SharesSourceConfig{
		Group: net.keys.groupP, Shareholders: net.entries,
		Attestation: gather.AttestationConfig{Provider: attest.KindMockTSM, Socket: dir},
		Identity:    psk.DefaultIdentity, Timeout: stepTimeout,
	}
	if net.o.TPRF {
		cfg.Mode, cfg.Epoch = gather.ModeEvaluate, tprfFirst
	}
	prog, err := gather.Check(ctx, cfg, nil)
	if err != nil {
		return fmt.Errorf("a gatherer with another measurement: %w", err)
	}
	if prog.Enough() || prog.Count(gather.StateRefused) != len(net.entries) || !strings.Contains(prog.String(), "policy_denied") {
		return fmt.Errorf("a proxy with another measurement was not refused by every participant: %s", prog)
	}
	n.say("   every participant refuses it: %s", prog)
	return nil
}
