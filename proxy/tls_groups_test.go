package proxy

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

func TestTLSGroupsConfig(t *testing.T) {
	// YAML, in preference order, names in any case and OpenSSL's aliases.
	c, err := load(t, ModeServer, goodServer+"    tls: {groups: [x25519, prime256v1]}\n", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tlsSettings(&c.Routes[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := []tlspsk.CurveID{tlspsk.X25519, tlspsk.CurveP256}; !slices.Equal(tc.CurvePreferences, want) {
		t.Fatalf("CurvePreferences %v, want %v", tc.CurvePreferences, want)
	}
	// Not set: tlspsk's default (nil).
	c, err = load(t, ModeServer, goodServer, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tc, _ := tlsSettings(&c.Routes[0]); tc.CurvePreferences != nil {
		t.Fatalf("default CurvePreferences %v, want nil", tc.CurvePreferences)
	}
	// Without a config file: the flag over its MCBN_PROXY_ variable, the
	// per-route variable over both. (With a file, TLS settings come from
	// the file only: TestPinnedSettingsConflictWithConfig.)
	route := map[string]string{"name": "web", "listen": "tls://127.0.0.1:8443", "connect": "tcp://127.0.0.1:8080", "psk": "00112233445566778899aabbccddeeff"}
	for _, tc := range []struct {
		flags, env map[string]string
		want       []tlspsk.CurveID
	}{
		{map[string]string{"tls-groups": "P-256, X25519"}, map[string]string{"MCBN_PROXY_TLS_GROUPS": "X25519"}, []tlspsk.CurveID{tlspsk.CurveP256, tlspsk.X25519}},
		{nil, map[string]string{"MCBN_PROXY_TLS_GROUPS": "X25519MLKEM768,X25519"}, []tlspsk.CurveID{tlspsk.X25519MLKEM768, tlspsk.X25519}},
		{nil, map[string]string{"MCBN_PROXY_TLS_GROUPS": "X25519", "MCBN_PROXY_ROUTE_WEB_TLS_GROUPS": "X25519MLKEM768,P-256"},
			[]tlspsk.CurveID{tlspsk.X25519MLKEM768, tlspsk.CurveP256}},
	} {
		env := tc.env
		c, err := LoadConfig(ModeServer, LoadOptions{Flags: merge(merge(map[string]string{}, route), tc.flags),
			Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
		if err != nil {
			t.Fatalf("%v %v: %v", tc.flags, tc.env, err)
		}
		got, _ := tlsSettings(&c.Routes[0])
		if !slices.Equal(got.CurvePreferences, tc.want) {
			t.Fatalf("%v %v: CurvePreferences %v, want %v", tc.flags, tc.env, got.CurvePreferences, tc.want)
		}
	}
	// A list of only the hybrid is fine when TLS 1.2 is off.
	if _, err := load(t, ModeServer, goodServer+"    tls: {groups: [X25519MLKEM768], min_version: \"1.3\"}\n", nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestTLSGroupsErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ name, yaml, flag, want string }{
		{"unknown", "    tls: {groups: [X25519, X448]}\n", "",
			`routes[0] (web): tls: groups: unknown group "X448" (known: X25519MLKEM768, X25519, P-256)`},
		{"twice", "    tls: {groups: [X25519, x25519]}\n", "", `routes[0] (web): tls: groups: X25519 is listed twice`},
		{"hybrid only with TLS 1.2", "    tls: {groups: [X25519MLKEM768]}\n", "",
			`routes[0] (web): tls: groups: X25519MLKEM768 is TLS 1.3 only, so TLS 1.2 (min_version 1.2) would have no group`},
		{"not a list", "    tls: {groups: X25519}\n", "", `line 8: got a string (value hidden), want a list`},
		{"flag", "", "X25519,ffdhe2048", `routes[0] (web): tls: groups: unknown group "ffdhe2048"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.flag != "" {
				_, err = LoadConfig(ModeServer, LoadOptions{Flags: map[string]string{"name": "web", "listen": "tls://127.0.0.1:8443",
					"connect": "tcp://127.0.0.1:8080", "psk": "00112233445566778899aabbccddeeff", "tls-groups": tc.flag},
					Getenv: func(string) (string, bool) { return "", false }})
			} else {
				_, err = load(t, ModeServer, goodServer+tc.yaml, nil, nil)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// handshakeGroups runs a handshake between configs made by tlsSettings
// from the two groups settings and returns what the client saw.
func handshakeGroups(t *testing.T, client, server []string, minVersion string) (tlspsk.ConnectionState, error) {
	t.Helper()
	settings := func(groups []string) *tlspsk.Config {
		r := &Route{TLS: TLSConfig{MinVersion: minVersion, MaxVersion: "1.3", PSKHash: "sha256", Groups: groups}}
		c, err := tlsSettings(r)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	key := randomKey(t)
	cc, sc := settings(client), settings(server)
	cc.Key = key
	sc.Key = key
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srvState := make(chan tlspsk.ConnectionState, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			close(srvState)
			return
		}
		s := tlspsk.Server(raw, sc)
		defer s.Close()
		if s.HandshakeContext(ctx) == nil {
			srvState <- s.ConnectionState()
		}
		close(srvState)
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tlspsk.Client(raw, cc)
	defer c.Close()
	if err := c.HandshakeContext(ctx); err != nil {
		return tlspsk.ConnectionState{}, err
	}
	st := c.ConnectionState()
	if ss, ok := <-srvState; !ok || ss.Group != st.Group {
		t.Fatalf("server saw group %v (ok %v), client %v", ss.Group, ok, st.Group)
	}
	return st, nil
}

func TestTLSGroupsHandshake(t *testing.T) {
	for _, tc := range []struct {
		name           string
		client, server []string
		want           tlspsk.CurveID
		hrr            bool
	}{
		{"defaults", nil, nil, tlspsk.X25519MLKEM768, false},
		{"client X25519", []string{"X25519"}, nil, tlspsk.X25519, false},
		{"client P-256", []string{"P-256"}, nil, tlspsk.CurveP256, false},
		{"server X25519", nil, []string{"X25519"}, tlspsk.X25519, false}, // the default client sends an X25519 share too
		// A share the client sent beats the server's order: no extra round trip.
		{"server P-256 first", nil, []string{"P-256", "X25519"}, tlspsk.X25519, false},
		{"server P-256 only", nil, []string{"P-256"}, tlspsk.CurveP256, true},
		{"both X25519", []string{"X25519", "P-256"}, []string{"X25519"}, tlspsk.X25519, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := handshakeGroups(t, tc.client, tc.server, "1.2")
			if err != nil {
				t.Fatal(err)
			}
			if st.Group != tc.want || st.HelloRetryRequest != tc.hrr || st.Version != tlspsk.VersionTLS13 {
				t.Fatalf("group %v (HRR %v, version %x), want %v (HRR %v)", st.Group, st.HelloRetryRequest, st.Version, tc.want, tc.hrr)
			}
		})
	}
	t.Run("nothing shared", func(t *testing.T) {
		_, err := handshakeGroups(t, []string{"X25519"}, []string{"X25519MLKEM768"}, "1.3")
		if r := tlspsk.FailureReason(err); r != reasonNoShared {
			t.Fatalf("err %v (reason %q), want reason %s", err, r, reasonNoShared)
		}
	})
}

// TestTLSGroupsThroughProxies: a client proxy set to X25519 makes tunnels
// with X25519, and both proxies log the group.
func TestTLSGroupsThroughProxies(t *testing.T) {
	backend := echoServer(t)
	client, server := tcpPair(t, randomKey(t), backend.String(), func(c, s *Route) {
		c.TLS.Groups = []string{"X25519"}
	})
	got, err := roundTrip(t, client.url("web"), []byte("hello"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	for _, p := range []*testProxy{client, server} {
		waitFor(t, 3*time.Second, string(p.cfg.Mode)+" log of the group", func() bool {
			return strings.Contains(p.logs.String(), "group=X25519\n")
		})
	}
}

// TestTLSGroupsOpenSSL: a server proxy set to P-256 asks openssl s_client
// (which sends an X25519 share first) for P-256 and gets it; a client proxy
// set to P-256 gets P-256 from openssl s_server.
func TestTLSGroupsOpenSSL(t *testing.T) {
	openssl := needBinary(t, "openssl")
	t.Run("server proxy", func(t *testing.T) {
		key := randomKey(t)
		srv := serverProxy(t, "tls://127.0.0.1:0", "tcp://"+echoServer(t).String(), PSKConfig{Hex: hexKey(key)},
			func(r *Route) { r.TLS.Groups = []string{"P-256"} })
		peer := startPeer(t, testCtx(t), openssl, "s_client", "-quiet", "-tls1_3", "-psk", hexKey(key),
			"-psk_identity", DefaultIdentity, "-connect", srv.url("svc"))
		fmt.Fprintln(peer.stdin, "hello over P-256")
		waitFor(t, 10*time.Second, "the echo in s_client's output", func() bool {
			return strings.Contains(peer.out.String(), "hello over P-256")
		})
		if !strings.Contains(srv.logs.String(), "group=P-256\n") {
			t.Fatalf("no group=P-256 in the server proxy's log")
		}
	})
	t.Run("client proxy", func(t *testing.T) {
		key := randomKey(t)
		peer, port := openSSLServer(t, openssl, "-psk", hexKey(key), "-nocert", "-tls1_3", "-naccept", "1")
		cp := clientProxy(t, "tcp://127.0.0.1:0", fmt.Sprintf("tls://127.0.0.1:%d", port), PSKConfig{Hex: hexKey(key)},
			func(r *Route) { r.TLS.Groups = []string{"P-256"} })
		c, err := net.Dial("tcp", cp.url("app"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintln(c, "from the app")
		waitFor(t, 10*time.Second, "s_server to print the app's line", func() bool { return strings.Contains(peer.out.String(), "from the app") })
		if !strings.Contains(cp.logs.String(), "group=P-256\n") {
			t.Fatalf("no group=P-256 in the client proxy's log")
		}
	})
}
