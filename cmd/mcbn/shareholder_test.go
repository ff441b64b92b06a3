package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

const shTestDigest = "sha256:d6ccd81104d3611223453c1c891192f9587f8ecb13515a3b602242c7748b503f"

func shRun(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := dispatch(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestShareholderPolicyCommand(t *testing.T) {
	code, out, errs := shRun("shareholder", "policy", "confidential-space", "--image-digest", shTestDigest, "--project", "prod-project", "--service-account", "run@prod-project.iam.gserviceaccount.com")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"assertion.swname == 'CONFIDENTIAL_SPACE'", "assertion.dbgstat == 'disabled-since-boot'",
		"'STABLE' in assertion.submods.confidential_space.support_attributes", "image_digest == '" + shTestDigest + "'", "project_id == 'prod-project'"} {
		if !strings.Contains(out, want) {
			t.Errorf("policy lacks %q:\n%s", want, out)
		}
	}
	if _, err := shareholder.CompilePolicy(out, 0); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := shRun("shareholder", "policy", "confidential-space"); code != 2 {
		t.Fatalf("missing digest: exit %d, want 2", code)
	}
	if code, _, _ := shRun("shareholder", "policy", "confidential-space", "--image-digest", "sha256:nothex"); code != 2 {
		t.Fatalf("bad digest: exit %d, want 2", code)
	}
	for _, want := range []string{"assertion.hwmodel in ['GCP_AMD_SEV', 'GCP_AMD_SEV_ES', 'GCP_INTEL_TDX']", "assertion.secboot == true",
		"cmd_override == null", "env_override == null"} {
		if !strings.Contains(out, want) {
			t.Errorf("policy lacks %q:\n%s", want, out)
		}
	}
	// No project: refused unless --any-project says so, with a warning.
	if code, _, errs := shRun("shareholder", "policy", "confidential-space", "--image-digest", shTestDigest); code != 2 || !strings.Contains(errs, "--project") {
		t.Fatalf("no project: exit %d, %q; want 2 naming --project", code, errs)
	}
	code, out, errs = shRun("shareholder", "policy", "confidential-space", "--image-digest", shTestDigest, "--any-project")
	if code != 0 || !strings.Contains(errs, "warning: --any-project") || strings.Contains(out, "project_id") {
		t.Fatalf("--any-project: exit %d, stderr %q, policy:\n%s", code, errs, out)
	}
	code, out, errs = shRun("shareholder", "policy", "confidential-space", "--image-digest", shTestDigest, "--project", "prod-project",
		"--args", `["/mcbn","proxy","server","--config","/etc/mcbn/proxy.yaml"]`)
	if code != 0 || !strings.Contains(out, "assertion.submods.container.args == ['/mcbn', 'proxy', 'server', '--config', '/etc/mcbn/proxy.yaml']") {
		t.Fatalf("--args: exit %d, %s\n%s", code, errs, out)
	}
	for _, bad := range []string{`/mcbn proxy`, `[]`, `["a'b"]`} {
		if code, _, errs := shRun("shareholder", "policy", "confidential-space", "--image-digest", shTestDigest, "--project", "prod-project", "--args", bad); code != 2 || !strings.Contains(errs, "--args") && !strings.Contains(errs, "argument") {
			t.Errorf("--args %s: exit %d, %q", bad, code, errs)
		}
	}
}

func TestShareholderAuditVerifyCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a, err := shareholder.OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		a.Append(shareholder.AuditRecord{Remote: "127.0.0.1:1", Decision: shareholder.DecisionRefuse, Reason: "bad_request", Detail: fmt.Sprint("n", i)})
	}
	a.Close()
	code, out, errs := shRun("shareholder", "audit", "verify", path)
	if code != 0 || !strings.HasPrefix(out, "ok: 3 lines (0 releases, 3 refusals), head ") {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	head := strings.TrimSpace(out[strings.Index(out, "head ")+5:])
	data, _ := os.ReadFile(path)
	// The last line cut off: the chain still verifies, the recorded head
	// shows the cut.
	cut := data[:bytes.LastIndexByte(data[:len(data)-1], '\n')+1]
	os.WriteFile(path, cut, 0o600)
	if code, _, _ := shRun("shareholder", "audit", "verify", path); code != 0 {
		t.Fatal("a log cut at a line boundary should still chain")
	}
	code, _, errs = shRun("shareholder", "audit", "verify", "--head", head, path)
	if code != 1 || !strings.Contains(errs, "no line has head "+head) {
		t.Fatalf("cut log with --head: exit %d: %s", code, errs)
	}
	os.WriteFile(path, data, 0o600)
	code, out, _ = shRun("shareholder", "audit", "verify", "--head", head, path)
	if code != 0 || !strings.Contains(out, "the given head is seq 3") {
		t.Fatalf("intact log with --head: exit %d: %s", code, out)
	}
	os.WriteFile(path, bytes.Replace(data, []byte(`"n1"`), []byte(`"n9"`), 1), 0o600)
	code, _, errs = shRun("shareholder", "audit", "verify", path)
	if code != 1 || !strings.Contains(errs, "line 2:") {
		t.Fatalf("edited log: exit %d: %s", code, errs)
	}
}

// serve, proxy check and consent work together through the CLI.
func TestShareholderServeCheckConsent(t *testing.T) {
	dir := t.TempDir()
	names := []string{"alice", "bob", "carol"}
	g, shares, err := psk.Split("demo", 2, names, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	psk.WriteGroup(filepath.Join(dir, "group.json"), g)
	for _, s := range shares {
		psk.WriteShare(filepath.Join(dir, s.Participant+".share.json"), s)
	}
	att, err := attest.StartDevAttester(attest.DevAttesterConfig{Socket: filepath.Join(dir, "a.sock"), ImageDigest: shTestDigest, Logger: shQuiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	policy, _ := shareholder.ConfidentialSpacePolicy(shareholder.CSPolicyOptions{ImageDigests: []string{shTestDigest}, Dev: true})
	os.WriteFile(filepath.Join(dir, "policy.cel"), []byte(policy), 0o644)

	// Every serve gets its own signal channel; started daemons are collected.
	var mu sync.Mutex
	var sigs []chan os.Signal
	started := make(chan *shareholder.Server, 3)
	shSignals = func() (<-chan os.Signal, func()) {
		ch := make(chan os.Signal, 1)
		mu.Lock()
		sigs = append(sigs, ch)
		mu.Unlock()
		return ch, func() {}
	}
	shStarted = func(s *shareholder.Server) { started <- s }
	defer func() { shStarted = nil }()

	var wg sync.WaitGroup
	servers := map[string]*shareholder.Server{}
	for _, n := range names {
		cfg := fmt.Sprintf("name: %s\nlisten: 127.0.0.1:0\nshare_store: file://%s.share.json\ngroup: group.json\nverifier:\n  issuer: %s\n  audience: aud-%s\npolicy_file: policy.cel\nconsent: granted\naudit_log: %s-audit.jsonl\nrate_limit: {per_second: 100, burst: 100}\nreload_interval: 1h\nmetrics: {listen: \"\"}\n",
			n, n, att.Issuer(), n, n)
		os.WriteFile(filepath.Join(dir, n+".yaml"), []byte(cfg), 0o600)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _, errs := shRun("shareholder", "serve", "--config", filepath.Join(dir, n+".yaml"), "--log-level", "error"); code != 0 {
				t.Errorf("serve %s: exit %d: %s", n, code, errs)
			}
		}()
		select {
		case s := <-started:
			servers[n] = s
		case <-time.After(20 * time.Second):
			t.Fatal("daemon did not start")
		}
	}
	defer func() {
		mu.Lock()
		for _, ch := range sigs {
			ch <- syscall.SIGTERM
		}
		mu.Unlock()
		wg.Wait()
	}()

	var b strings.Builder
	fmt.Fprintf(&b, "shares:\n  group: group.json\n  attestation: {provider: dev, socket: %s}\n  shareholders:\n", att.Socket())
	for _, n := range names {
		s := servers[n]
		fmt.Fprintf(&b, "    - {name: %s, url: \"https://%s\", pin: \"%s\", audience: aud-%s}\n", n, s.Addr(), s.Pin(), n)
	}
	check := filepath.Join(dir, "check.yaml")
	os.WriteFile(check, []byte(b.String()), 0o644)

	code, out, errs := shRun("proxy", "check", "--config", check)
	if code != 0 || !strings.Contains(out, "shares: 3/3 shares (threshold 2): alice ok, bob ok, carol ok") {
		t.Fatalf("check: exit %d\n%s%s", code, out, errs)
	}
	// reload_interval is 1h and no SIGHUP is sent: the command itself makes
	// the daemon apply the edit, and returns once it has.
	for _, n := range []string{"bob", "carol"} {
		code, out, errs := shRun("shareholder", "consent", "revoke", "--config", filepath.Join(dir, n+".yaml"))
		if code != 0 || !strings.Contains(out, "confirmed by the daemon") {
			t.Fatalf("revoke: exit %d %s %s", code, out, errs)
		}
		if c := servers[n].Consent(); c != "revoked" {
			t.Fatalf("%s: consent %s after the revoke command returned", n, c)
		}
	}
	code, out, errs = shRun("proxy", "check", "--config", check)
	if code != 1 || !strings.Contains(out, "1/3 shares (threshold 2): alice ok, bob refused: consent_revoked, carol refused: consent_revoked") {
		t.Fatalf("check after revocation: exit %d\n%s%s", code, out, errs)
	}
}

func shQuiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
