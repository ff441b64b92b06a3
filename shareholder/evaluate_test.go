package shareholder

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/tprf"
)

// evalYAML is name's config with a release rule and an epoch window.
func (f *fixture) evalYAML(name, consent, release string, minEpoch, maxEpoch uint64) string {
	y := f.configYAML(name, f.devPolicy, consent)
	if release != "" {
		y += "release: " + release + "\n"
	}
	return y + "evaluate:\n  min_epoch: " + itoa(minEpoch) + "\n  max_epoch: " + itoa(maxEpoch) + "\n"
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// startEval writes and starts name's daemon with the given evaluate rules.
func (f *fixture) startEval(name, release string, minEpoch, maxEpoch uint64) *Server {
	f.t.Helper()
	if err := os.WriteFile(f.configPath(name), []byte(f.evalYAML(name, ConsentGranted, release, minEpoch, maxEpoch)), 0o600); err != nil {
		f.t.Fatal(err)
	}
	cfg, err := LoadConfig(f.configPath(name))
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := NewServer(context.Background(), cfg, ServerOptions{ConfigPath: f.configPath(name), Logger: f.logger()})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

type evalResult struct {
	code   int
	reason string
	body   []byte
	err    error
}

// ask sends one attested request of the given mode on a fresh connection.
func (f *fixture) ask(s *Server, name string, rr ReleaseRequest) evalResult {
	pin, _ := ParsePin(s.Pin())
	d := &net.Dialer{Deadline: time.Now().Add(20 * time.Second)}
	c, err := tls.DialWithDialer(d, "tcp", s.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		VerifyConnection: pinVerifier(pin), NextProtos: []string{"http/1.1"}})
	if err != nil {
		return evalResult{err: err}
	}
	defer c.Close()
	c.SetDeadline(d.Deadline)
	cs := c.ConnectionState()
	nonce, _ := ChannelNonce(&cs)
	if rr.Token, err = f.att.Mint("mcbn-test-"+name, []string{nonce}); err != nil {
		return evalResult{err: err}
	}
	rr.Version = ProtocolVersion
	body, _ := json.Marshal(rr)
	req, _ := http.NewRequest(http.MethodPost, "https://"+s.Addr().String()+ReleasePath, bytes.NewReader(body))
	if err := req.Write(c); err != nil {
		return evalResult{err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return evalResult{err: err}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var ref Refusal
	if resp.StatusCode != http.StatusOK {
		json.Unmarshal(data, &ref)
	}
	return evalResult{code: resp.StatusCode, reason: ref.Reason, body: data}
}

func evalReq(identity string, epoch uint64) ReleaseRequest {
	return ReleaseRequest{Mode: ModeEvaluate, Identity: identity, Epoch: epoch}
}

// Two daemons answer partials for an epoch in their window; the partials
// verify and combine into the PSK computed from the group secret; the
// replies hold nothing of the shares; the audit line names mode and epoch.
func TestEvaluateEndToEnd(t *testing.T) {
	f := newFixture(t)
	tg, err := tprf.NewGroup(f.group)
	if err != nil {
		t.Fatal(err)
	}
	in := tg.Input("Client_identity", 4)
	var partials []*tprf.Partial
	for _, name := range []string{"alice", "carol"} {
		s := f.startEval(name, ReleaseEvaluateOnly, 3, 5)
		r := f.ask(s, name, evalReq("Client_identity", 4))
		if r.err != nil || r.code != http.StatusOK {
			t.Fatalf("%s: %+v", name, r)
		}
		for n, sh := range f.shares {
			if bytes.Contains(r.body, []byte(hex.EncodeToString(sh.Value))) {
				t.Fatalf("%s's reply holds %s's share", name, n)
			}
		}
		if _, err := psk.ParseShare(r.body); err == nil {
			t.Fatal("the reply parses as a share")
		}
		p, err := ParseEvaluateResponse(r.body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := tg.Verify(in, p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		partials = append(partials, p)
		rec := lastAudit(t, f.auditPath(name))
		if rec.Decision != DecisionRelease || !strings.Contains(rec.Detail, "mode evaluate, epoch 4") || !strings.Contains(rec.Detail, "participant "+name) {
			t.Fatalf("%s's audit line: %+v", name, rec)
		}
	}
	key, bad, err := tg.CombinePSK(in, partials, 32)
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	secret, err := psk.Combine(f.group, []*psk.Share{f.shares["alice"], f.shares["bob"]})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tprf.ReferencePSK(secret, in, 32)
	if !bytes.Equal(key, want) {
		t.Fatal("the combined PSK differs from the reference")
	}
	f.checkLogsClean()
}

// Epochs outside [min_epoch, max_epoch] are refused as policy_denied with
// the check epoch_window, and audited with the epoch asked for.
func TestEvaluateEpochWindow(t *testing.T) {
	f := newFixture(t)
	s := f.startEval("alice", "", 3, 5)
	for _, ep := range []uint64{0, 2, 6, 1 << 40} {
		r := f.ask(s, "alice", evalReq("Client_identity", ep))
		if r.err != nil || r.code != http.StatusForbidden || r.reason != ReasonPolicyDenied {
			t.Fatalf("epoch %d: %+v", ep, r)
		}
		rec := lastAudit(t, f.auditPath("alice"))
		if !strings.HasPrefix(rec.Detail, "epoch_window: mode evaluate, epoch "+itoa(ep)+" outside") {
			t.Fatalf("epoch %d audit: %q", ep, rec.Detail)
		}
	}
	for _, ep := range []uint64{3, 5} {
		if r := f.ask(s, "alice", evalReq("Client_identity", ep)); r.code != http.StatusOK {
			t.Fatalf("epoch %d: %+v", ep, r)
		}
	}
	// The default window is epoch 0 only.
	f2 := newFixture(t)
	s2 := f2.startServer("bob", f2.devPolicy, ConsentGranted)
	if r := f2.ask(s2, "bob", evalReq("id", 0)); r.code != http.StatusOK {
		t.Fatalf("default window, epoch 0: %+v", r)
	}
	if r := f2.ask(s2, "bob", evalReq("id", 1)); r.reason != ReasonPolicyDenied {
		t.Fatalf("default window, epoch 1: %+v", r)
	}
}

// release: evaluate-only refuses the raw share to an attested, allowed
// caller, and still evaluates; the default serves both.
func TestEvaluateOnlyRefusesShare(t *testing.T) {
	f := newFixture(t)
	s := f.startEval("alice", ReleaseEvaluateOnly, 0, 1)
	if r := f.ask(s, "alice", ReleaseRequest{}); r.code != http.StatusForbidden || r.reason != ReasonPolicyDenied {
		t.Fatalf("share from an evaluate-only daemon: %+v", r)
	}
	if rec := lastAudit(t, f.auditPath("alice")); !strings.HasPrefix(rec.Detail, "mode: mode share refused") {
		t.Fatalf("audit: %q", rec.Detail)
	}
	if r := f.ask(s, "alice", evalReq("x", 1)); r.code != http.StatusOK {
		t.Fatalf("evaluate: %+v", r)
	}
	s2 := f.startEval("bob", ReleaseAny, 0, 0)
	if r := f.ask(s2, "bob", ReleaseRequest{}); r.code != http.StatusOK {
		t.Fatalf("share from release: any: %+v", r)
	}
}

// A revoked consent stops evaluations like releases.
func TestRevokedConsentStopsEvaluations(t *testing.T) {
	f := newFixture(t)
	s := f.startEval("alice", ReleaseEvaluateOnly, 0, 9)
	if r := f.ask(s, "alice", evalReq("id", 2)); r.code != http.StatusOK {
		t.Fatalf("before the revoke: %+v", r)
	}
	if err := replaceFile(f.configPath("alice"), []byte(f.evalYAML("alice", ConsentRevoked, ReleaseEvaluateOnly, 0, 9)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := f.ask(s, "alice", evalReq("id", 3)); r.code != http.StatusForbidden || r.reason != ReasonConsentRevoked {
		t.Fatalf("after the revoke: %+v", r)
	}
}

// An evaluation checked under a window that is narrowed before it passes
// the gate is not answered (the reload is confirmed first): the caller is
// told to retry, and then refused under the new window.
func TestEvaluateRacingWindowChange(t *testing.T) {
	f := newFixture(t)
	s := f.startEval("alice", "", 0, 5)
	reached, proceed := make(chan struct{}), make(chan struct{})
	h := func(st string) {
		if st == "before_gate" {
			select {
			case <-reached:
			default:
				close(reached)
				<-proceed
			}
		}
	}
	s.testHook.Store(&h)
	res := make(chan evalResult, 1)
	go func() { res <- f.ask(s, "alice", evalReq("id", 5)) }()
	within(t, "the evaluation to reach the gate", reached)
	if err := replaceFile(f.configPath("alice"), []byte(f.evalYAML("alice", ConsentGranted, "", 0, 4)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if r := within(t, "the evaluation", res); r.code != http.StatusServiceUnavailable || r.reason != ReasonUnavailable {
		t.Fatalf("an evaluation checked under the old window: %+v", r)
	}
	if r := f.ask(s, "alice", evalReq("id", 5)); r.reason != ReasonPolicyDenied {
		t.Fatalf("retry under the new window: %+v", r)
	}
}

func TestParseEvaluateRequests(t *testing.T) {
	tok := `"token":"a.b.c"`
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{`{"version":1,` + tok + `,"mode":"evaluate","identity":"Client_identity","epoch":7}`, true},
		{`{"version":1,` + tok + `,"mode":"evaluate","identity":"x"}`, true},
		{`{"version":1,` + tok + `,"mode":"share"}`, true},
		{`{"version":1,` + tok + `,"mode":"evaluate","epoch":7}`, false},
		{`{"version":1,` + tok + `,"mode":"evaluate","identity":"` + strings.Repeat("a", maxIdentityLen+1) + `"}`, false},
		{`{"version":1,` + tok + `,"epoch":7}`, false},
		{`{"version":1,` + tok + `,"identity":"x"}`, false},
		{`{"version":1,` + tok + `,"mode":"sever"}`, false},
		{`{"version":1,` + tok + `,"mode":"evaluate","identity":"x","epoch":-1}`, false},
		{`{"version":1,` + tok + `,"mode":"evaluate","identity":"x","epoch":18446744073709551616}`, false},
	} {
		_, err := ParseReleaseRequest([]byte(c.body))
		if (err == nil) != c.ok {
			t.Errorf("%.80s: err %v", c.body, err)
		}
	}
}

func TestConfigReleaseRules(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		extra, field string
	}{
		{"release: sometimes\n", "release"},
		{"evaluate:\n  min_epoch: 5\n  max_epoch: 4\n", "evaluate.min_epoch"},
		{"evaluate:\n  max_epoch: -1\n", ""},
		{"evaluate:\n  window: 3\n", ""},
	} {
		_, err := ParseConfig([]byte(f.configYAML("alice", f.devPolicy, ConsentGranted)+c.extra), f.dir)
		if err == nil {
			t.Errorf("%q accepted", c.extra)
			continue
		}
		if c.field != "" && !strings.HasPrefix(err.Error(), c.field+":") {
			t.Errorf("%q: %v", c.extra, err)
		}
	}
	cfg, err := ParseConfig([]byte(f.configYAML("alice", f.devPolicy, ConsentGranted)), f.dir)
	if err != nil || cfg.Release != ReleaseAny || cfg.Evaluate != (EvaluateConfig{}) {
		t.Fatalf("defaults: %v %+v", err, cfg)
	}
}

func FuzzParseEvaluateResponse(f *testing.F) {
	f.Add([]byte(`{"version":1,"partial":"6d63626e54505246"}`))
	f.Add([]byte(`{"version":1,"partial":"` + strings.Repeat("00", 200) + `"}`))
	f.Add([]byte(`{"version":2,"partial":""}`))
	f.Add([]byte(`{"version":1,"partial":"AB"} x`))
	f.Add([]byte(`{"version":1,"share":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseEvaluateResponse(body)
		if err != nil {
			if p != nil {
				t.Fatal("partial and error")
			}
			return
		}
		b, err := p.MarshalBinary()
		if err != nil || !bytes.Contains(body, []byte(hex.EncodeToString(b))) {
			t.Fatalf("accepted a partial that does not re-encode as sent: %v", err)
		}
	})
}

// FuzzParseEvaluateRequest: requests with the evaluate fields; whatever is
// accepted keeps the mode rules.
func FuzzParseEvaluateRequest(f *testing.F) {
	f.Add([]byte(`{"version":1,"token":"a.b.c","mode":"evaluate","identity":"Client_identity","epoch":7}`))
	f.Add([]byte(`{"version":1,"token":"a.b.c","mode":"share","epoch":0}`))
	f.Add([]byte(`{"version":1,"token":"a.b.c","mode":"evaluate","identity":"","epoch":1}`))
	f.Add([]byte(`{"version":1,"token":"a.b.c","mode":"evaluate","identity":"x","epoch":1e3}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseReleaseRequest(body)
		if err != nil {
			return
		}
		switch r.Mode {
		case ModeEvaluate:
			if r.Identity == "" || len(r.Identity) > maxIdentityLen {
				t.Fatalf("accepted evaluate with identity of %d bytes", len(r.Identity))
			}
		case "", ModeShare:
			if r.Identity != "" || r.Epoch != 0 {
				t.Fatal("accepted share with evaluate fields")
			}
		default:
			t.Fatalf("accepted mode %q", r.Mode)
		}
	})
}
