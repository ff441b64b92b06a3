package shareholder

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/psk"
	dto "github.com/prometheus/client_model/go"
)

// startLiar serves a release endpoint that hands out carol's share with a
// wrong value (alice's), as a malicious or broken shareholder would.
func startLiar(t *testing.T, f *fixture) ShareholderConfig {
	t.Helper()
	bad := *f.shares["carol"]
	bad.Value = bytes.Clone(f.shares["alice"].Value)
	return startFakeShareholder(t, "carol", &bad)
}

// startFakeShareholder answers every release request with share.
func startFakeShareholder(t *testing.T, name string, share *psk.Share) ShareholderConfig {
	t.Helper()
	file := marshalShare(t, share)
	return serveFake(t, name, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, ReleaseResponse{Version: ProtocolVersion, Share: file})
	})
}

func marshalShare(t *testing.T, share *psk.Share) []byte {
	t.Helper()
	file, err := psk.MarshalShare(share)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// serveFake serves handler as a shareholder daemon named name would, over
// TLS 1.3 with a self-signed certificate, and returns its proxy-side entry.
func serveFake(t *testing.T, name string, handler http.HandlerFunc) ShareholderConfig {
	t.Helper()
	cert, err := SelfSignedCert(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ShareholderConfig{Name: name, URL: "https://" + ln.Addr().String(), Pin: SPKIPin(cert.Leaf), Audience: "mcbn-test-" + name}
}

// A shareholder returning a corrupted share is named, and the PSK is still
// derived from the honest ones.
func TestCorruptedShareIdentified(t *testing.T) {
	f := newFixture(t)
	a := f.startServer("alice", f.devPolicy, ConsentGranted)
	b := f.startServer("bob", f.devPolicy, ConsentGranted)
	cfg := f.sourceConfig(entry("alice", a), entry("bob", b), startLiar(t, f))

	// The dry run asks everyone, so it always sees the liar.
	prog, err := Check(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := prog.String(); got != "2/3 shares (threshold 2): alice ok, bob ok, carol invalid: share fails verification against the group commitments" {
		t.Fatalf("check progress %q", got)
	}

	// A shareholder handing out someone else's (valid) share is named too.
	prog, err = Check(context.Background(), f.sourceConfig(entry("alice", a), entry("bob", b), startFakeShareholder(t, "carol", f.shares["bob"])), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := prog.String(); got != "2/3 shares (threshold 2): alice ok, bob ok, carol invalid: returned another participant's share" {
		t.Fatalf("check progress %q", got)
	}

	src, err := NewSharesSource(cfg, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// The source stops at T valid shares, so a round may finish before the
	// liar's answer is looked at; wait for a round that examined it.
	waitFor(t, "a round naming carol's invalid share", func() bool {
		p := src.Progress()
		return len(p.Outcomes) == 3 && p.Outcomes[2].State == StateInvalid && src.Status().Ready
	})
	k, err := src.Key("Client_identity")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k, f.expectedPSK("Client_identity", 1)) {
		t.Fatal("PSK differs from the honest shares' PSK")
	}
	var m dto.Metric
	if err := src.metrics.results.WithLabelValues("carol", StateInvalid, "").Write(&m); err != nil || m.GetCounter().GetValue() == 0 {
		t.Fatal("metrics do not name carol's invalid share")
	}
}

// With fewer than T shareholders reachable the source is not ready and
// says why.
func TestBelowThresholdNotReady(t *testing.T) {
	f := newFixture(t)
	a := f.startServer("alice", f.devPolicy, ConsentGranted)
	closed := closedAddr(t)
	cfg := f.sourceConfig(entry("alice", a),
		ShareholderConfig{Name: "bob", URL: "https://" + closed, Pin: a.Pin(), Audience: "mcbn-test-bob"},
		ShareholderConfig{Name: "carol", URL: "https://" + blackHole(t), Pin: a.Pin(), Audience: "mcbn-test-carol"})
	cfg.Timeout = 300 * time.Millisecond
	src, err := NewSharesSource(cfg, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitFor(t, "a completed round", func() bool { return src.Rounds() > 0 })
	st := src.Status()
	if st.Ready {
		t.Fatal("ready with one share of two")
	}
	if !strings.HasPrefix(st.State, "1/3 shares (threshold 2): alice ok, bob unreachable: ") || !strings.HasSuffix(st.State, "carol unreachable: timed out after 300ms") {
		t.Fatalf("status %q", st.State)
	}
	_, err = src.Key("Client_identity")
	if !errors.Is(err, proxy.ErrNotReady) || !strings.Contains(err.Error(), "1/3 shares") {
		t.Fatalf("Key: %v", err)
	}
}

// blackHole accepts connections and never answers.
func blackHole(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Revoking consent on enough shareholders drops the key within a refresh
// interval; granting it again brings the same key back.
func TestConsentRevocationDropsKey(t *testing.T) {
	f := newFixture(t)
	var entries []ShareholderConfig
	for _, n := range names {
		entries = append(entries, entry(n, f.startServer(n, f.devPolicy, ConsentGranted)))
	}
	src, err := NewSharesSource(f.sourceConfig(entries...), nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitFor(t, "ready", func() bool { return src.Status().Ready })
	want, _ := src.Key("Client_identity")
	drain(src.Changes())

	// One revocation leaves two: still ready.
	if changed, err := SetConsent(f.configPath("carol"), ConsentRevoked); err != nil || !changed {
		t.Fatalf("SetConsent: %v %v", changed, err)
	}
	waitFor(t, "carol's refusal seen", func() bool {
		p := src.Progress()
		return len(p.Outcomes) == 3 && p.Outcomes[2].String() == "carol refused: consent_revoked"
	})
	if !src.Status().Ready {
		t.Fatal("dropped the key with two of three consenting")
	}

	// A second revocation drops the key.
	if _, err := SetConsent(f.configPath("bob"), ConsentRevoked); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "key dropped", func() bool { return !src.Status().Ready })
	<-src.Changes()
	st := src.Status().State
	if st != "1/3 shares (threshold 2): alice ok, bob refused: consent_revoked, carol refused: consent_revoked" {
		t.Fatalf("status %q", st)
	}
	if _, err := src.Key("Client_identity"); !errors.Is(err, proxy.ErrNotReady) {
		t.Fatalf("Key after revocation: %v", err)
	}

	// Granting again recovers by itself.
	if _, err := SetConsent(f.configPath("bob"), ConsentGranted); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "key back", func() bool { return src.Status().Ready })
	got, _ := src.Key("Client_identity")
	if !bytes.Equal(got, want) {
		t.Fatal("a different key came back")
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
