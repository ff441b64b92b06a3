package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// shDaemon is one `mcbn shareholder serve` run in-process on a real config.
type shDaemon struct {
	srv  *shareholder.Server
	path string
	att  *attest.DevAttester
	aud  string
}

// shServeOne writes alice's config into a fresh directory (a 2-of-3 group,
// the dev attester, the dev policy; reload_interval 1h so only the consent
// command can make the daemon apply an edit) and runs serve on it.
func shServeOne(t *testing.T) *shDaemon {
	t.Helper()
	dir := t.TempDir()
	g, shares, err := psk.Split("demo", 2, []string{"alice", "bob", "carol"}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	psk.WriteGroup(filepath.Join(dir, "group.json"), g)
	psk.WriteShare(filepath.Join(dir, "alice.share.json"), shares[0])
	att, err := attest.StartDevAttester(attest.DevAttesterConfig{Socket: filepath.Join(dir, "a.sock"), ImageDigest: shTestDigest, Logger: shQuiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { att.Close() })
	policy, _ := shareholder.ConfidentialSpacePolicy(shareholder.CSPolicyOptions{ImageDigests: []string{shTestDigest}, Dev: true, AnyProject: true})
	os.WriteFile(filepath.Join(dir, "policy.cel"), []byte(policy), 0o644)
	path := filepath.Join(dir, "alice.yaml")
	cfg := fmt.Sprintf("name: alice\nlisten: 127.0.0.1:0\nshare_store: file://alice.share.json\ngroup: group.json\nverifier:\n  issuer: %s\n  audience: aud-alice\npolicy_file: policy.cel\nconsent: granted   # alice decides\naudit_log: alice-audit.jsonl\nrate_limit: {per_second: 100000, burst: 100000}\naudit_refusals_per_second: 10000\nreload_interval: 1h\nmetrics: {listen: \"\"}\n", att.Issuer())
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	started := make(chan *shareholder.Server, 1)
	oldSignals := shSignals
	shSignals = func() (<-chan os.Signal, func()) { return sig, func() {} }
	shStarted = func(s *shareholder.Server) { started <- s }
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		if code, _, errs := shRun("shareholder", "serve", "--config", path, "--log-level", "error"); code != 0 {
			t.Errorf("serve: exit %d: %s", code, errs)
		}
	}()
	var srv *shareholder.Server
	select {
	case srv = <-started:
	case <-exited:
		t.Fatal("serve exited")
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not start")
	}
	shStarted, shSignals = nil, oldSignals
	t.Cleanup(func() {
		sig <- syscall.SIGTERM
		<-exited
	})
	return &shDaemon{srv: srv, path: path, att: att, aud: "aud-alice"}
}

func (d *shDaemon) auditPath() string {
	return filepath.Join(filepath.Dir(d.path), "alice-audit.jsonl")
}

// auditReleases counts the complete release lines of an audit log.
func auditReleases(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasSuffix(line, "}") && strings.Contains(line, `"decision":"release"`) {
			n++
		}
	}
	return n
}

// release asks the daemon for the share over a fresh connection, as a proxy
// would, and returns the HTTP status and the refusal reason.
func (d *shDaemon) release() (int, string, error) {
	c, err := tls.Dial("tcp", d.srv.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	cs := c.ConnectionState()
	nonce, err := shareholder.ChannelNonce(&cs)
	if err != nil {
		return 0, "", err
	}
	tok, err := d.att.Mint(d.aud, []string{nonce})
	if err != nil {
		return 0, "", err
	}
	body, _ := json.Marshal(shareholder.ReleaseRequest{Version: shareholder.ProtocolVersion, Token: tok})
	req, _ := http.NewRequest(http.MethodPost, "https://"+d.srv.Addr().String()+shareholder.ReleasePath, bytes.NewReader(body))
	if err := req.Write(c); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var ref shareholder.Refusal
	if resp.StatusCode != http.StatusOK {
		json.Unmarshal(data, &ref)
	}
	return resp.StatusCode, ref.Reason, nil
}

// Proxies keep asking while the participant revokes: once
// `mcbn shareholder consent revoke` has returned, not one more share is
// released, without a signal and with the poll interval at an hour.
func TestShareholderConsentRevokeStopsReleases(t *testing.T) {
	d := shServeOne(t)
	var revoked atomic.Bool
	var preOK, post, postOK atomic.Int64
	var mu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := revoked.Load() // read before the request is sent
				code, reason, err := d.release()
				switch {
				case err != nil:
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
				case after:
					post.Add(1)
					if code == http.StatusOK {
						postOK.Add(1)
					} else if reason != shareholder.ReasonConsentRevoked {
						mu.Lock()
						errs = append(errs, fmt.Sprintf("after the revoke: HTTP %d %s", code, reason))
						mu.Unlock()
					}
				case code == http.StatusOK:
					preOK.Add(1)
				}
			}
		}()
	}
	waitCount := func(what string, n *atomic.Int64, want int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for n.Load() < want {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("timed out waiting for %d %s (errors: %v)", want, what, errs)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCount("releases before the revoke", &preOK, 20)
	code, out, stderr := shRun("shareholder", "consent", "revoke", "--config", d.path)
	revoked.Store(true)
	// Releases the daemon recorded (each before its share left) up to now.
	before := auditReleases(t, d.auditPath())
	if code != 0 || !strings.Contains(out, "confirmed by the daemon") {
		close(stop)
		wg.Wait()
		t.Fatalf("revoke: exit %d\n%s%s", code, out, stderr)
	}
	waitCount("requests after the revoke", &post, 60)
	close(stop)
	wg.Wait()
	if n := postOK.Load(); n != 0 {
		t.Fatalf("%d of %d releases succeeded after consent revoke returned", n, post.Load())
	}
	// Not even a request that was checked before the revoke was released
	// after the command returned.
	if after := auditReleases(t, d.auditPath()); after != before {
		t.Fatalf("the audit log has %d releases after the revoke returned, %d when it returned", after, before)
	}
	if len(errs) > 0 {
		t.Fatalf("request errors: %v", errs[:min(len(errs), 5)])
	}
}

// A config with a typo elsewhere does not stop a revoke: the command edits
// only the consent line, the daemon (refusing under the broken file
// anyway) confirms, and once the typo is fixed the revoke holds.
func TestShareholderConsentRevokeBrokenConfig(t *testing.T) {
	d := shServeOne(t)
	data, _ := os.ReadFile(d.path)
	broken := bytes.Replace(data, []byte("reload_interval: 1h"), []byte("reload_intervall: 1h"), 1)
	os.WriteFile(d.path, broken, 0o600)
	code, out, stderr := shRun("shareholder", "consent", "revoke", "--config", d.path)
	if code != 0 || !strings.Contains(out, "confirmed by the daemon") {
		t.Fatalf("revoke on a broken config: exit %d\n%s%s", code, out, stderr)
	}
	got, _ := os.ReadFile(d.path)
	if want := bytes.Replace(broken, []byte("consent: granted"), []byte("consent: revoked"), 1); !bytes.Equal(got, want) {
		t.Fatalf("the revoke changed more than the consent line:\n%s", got)
	}
	if st := d.srv.Status(); st.Releasing || st.Consent != shareholder.ConsentRevoked || st.State != "config_invalid" {
		t.Fatalf("status after the revoke: %+v", st)
	}
	if code, reason, err := d.release(); err != nil || code != http.StatusServiceUnavailable || reason != shareholder.ReasonConfigInvalid {
		t.Fatalf("release under the broken config: %d %s %v", code, reason, err)
	}
	// The typo fixed: the revoke holds.
	os.WriteFile(d.path, bytes.Replace(got, []byte("reload_intervall"), []byte("reload_interval"), 1), 0o600)
	if err := d.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, reason, err := d.release(); err != nil || code != http.StatusForbidden || reason != shareholder.ReasonConsentRevoked {
		t.Fatalf("release after the fix: %d %s %v", code, reason, err)
	}
	// A grant needs a config that loads, and is confirmed too.
	if code, out, stderr := shRun("shareholder", "consent", "grant", "--config", d.path); code != 0 || !strings.Contains(out, "releasing to attested proxies again") {
		t.Fatalf("grant: exit %d\n%s%s", code, out, stderr)
	}
	if code, _, err := d.release(); err != nil || code != http.StatusOK {
		t.Fatalf("release after the grant: %d %v", code, err)
	}
}

// Without a daemon to confirm, the command says so and fails: the
// participant must not believe a revoke took effect when nobody confirmed.
func TestShareholderConsentRevokeUnconfirmed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice.yaml")
	os.WriteFile(path, []byte("name: alice\nconsent: granted\n"), 0o600)
	code, out, stderr := shRun("shareholder", "consent", "revoke", "--config", path, "--wait", "2s")
	if code != 1 || !strings.Contains(stderr, "no daemon confirmed it") {
		t.Fatalf("revoke without a daemon: exit %d\n%s%s", code, out, stderr)
	}
	if got, _ := os.ReadFile(path); !strings.Contains(string(got), "consent: revoked") {
		t.Fatalf("the file was not edited:\n%s", got)
	}
	// --wait 0 does not ask.
	if code, out, stderr := shRun("shareholder", "consent", "revoke", "--config", path, "--wait", "0"); code != 0 {
		t.Fatalf("--wait 0: exit %d\n%s%s", code, out, stderr)
	}
}
