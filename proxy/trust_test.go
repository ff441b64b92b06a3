package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// TestPinnedSettingsConflictWithConfig: with a config file, a flag or an
// environment variable that would change where a route's traffic goes or
// with which key is an error naming it, not an override; tuning settings
// still apply.
func TestPinnedSettingsConflictWithConfig(t *testing.T) {
	for _, tc := range []struct {
		flags, env map[string]string
		want       string
	}{
		{map[string]string{"connect": "tcp://attacker.example:80"}, nil,
			"--connect conflicts with --config: a route's addresses come from the config file, which the release policy pins"},
		{map[string]string{"listen": "tls://0.0.0.0:19443"}, nil, "--listen conflicts with --config: a route's addresses come"},
		{map[string]string{"psk-source": "test-kind"}, nil, "--psk-source conflicts with --config: a route's PSK and identity come"},
		{map[string]string{"psk": "00112233445566778899aabbccddeeff"}, nil, "--psk conflicts with --config"},
		{map[string]string{"identity": "mallory"}, nil, "--identity conflicts with --config"},
		{map[string]string{"tls-allow-psk-only": "true"}, nil, "--tls-allow-psk-only conflicts with --config: a route's TLS settings come"},
		{map[string]string{"dtls-cipher-suites": "PSK-AES128-CCM8"}, nil, "--dtls-cipher-suites conflicts with --config: a route's DTLS settings come"},
		{nil, map[string]string{"MCBN_PROXY_CONNECT": "tcp://attacker.example:80"}, "MCBN_PROXY_CONNECT conflicts with --config"},
		{nil, map[string]string{"MCBN_PROXY_PSK_FILE": "/tmp/mine"}, "MCBN_PROXY_PSK_FILE conflicts with --config"},
		{nil, map[string]string{"MCBN_PROXY_ROUTE_WEB_CONNECT": "tcp://attacker.example:80"},
			"routes[0] (web): MCBN_PROXY_ROUTE_WEB_CONNECT conflicts with --config: a route's addresses come"},
		{nil, map[string]string{"MCBN_PROXY_ROUTE_WEB_PSK_HEX": ""}, ""}, // empty counts as unset
	} {
		_, err := load(t, ModeServer, goodServer, tc.flags, tc.env)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v %v: %v", tc.flags, tc.env, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want %q", tc.flags, tc.env, err, tc.want)
		}
	}
	// The config file named by MCBN_PROXY_CONFIG pins the same way.
	_, err := LoadConfig(ModeServer, LoadOptions{Flags: map[string]string{"connect": "tcp://attacker.example:80"},
		Getenv: func(k string) (string, bool) { return "cfg.yaml", k == "MCBN_PROXY_CONFIG" },
		Read:   func(string) ([]byte, error) { return []byte(goodServer), nil }})
	if err == nil || !strings.Contains(err.Error(), "--connect conflicts with --config (MCBN_PROXY_CONFIG)") {
		t.Fatalf("config from the environment: %v", err)
	}
	// Tuning is still allowed, by flag and by variable.
	c, err := load(t, ModeServer, goodServer, map[string]string{"max-connections": "7", "log-level": "debug", "admin": "127.0.0.1:9999"},
		map[string]string{"MCBN_PROXY_ROUTE_WEB_HANDSHAKE_TIMEOUT": "3s", "MCBN_PROXY_FIRST_BYTE_TIMEOUT": "2s"})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Routes[0]; r.Limits.MaxConnections != 7 || r.Timeouts.Handshake.D().String() != "3s" || r.Timeouts.FirstByte.D().String() != "2s" ||
		c.Admin != "127.0.0.1:9999" || r.Connect != "tcp://127.0.0.1:8080" {
		t.Fatalf("tuning not applied or route changed: %+v", r)
	}
	// Without a config file, flags make the route as before.
	c, err = LoadConfig(ModeServer, LoadOptions{Flags: map[string]string{"listen": "tls://127.0.0.1:8443", "connect": "tcp://127.0.0.1:1",
		"psk": "00112233445566778899aabbccddeeff"}, Getenv: func(string) (string, bool) { return "", false }})
	if err != nil || c.Routes[0].Connect != "tcp://127.0.0.1:1" {
		t.Fatalf("flag route: %v", err)
	}
}

// TestClientPublicListenNeedsConsent: a client proxy's plain listener on
// anything but loopback is refused, naming allow_public_listen, unless the
// route says allow_public_listen: true.
func TestClientPublicListenNeedsConsent(t *testing.T) {
	route := func(listen, extra string) string {
		connect := "tls://server.example:8443"
		if strings.HasPrefix(listen, "udp") {
			connect = "dtls://server.example:8853"
		}
		return fmt.Sprintf("mode: client\nroutes:\n  - name: web\n    listen: %s\n    connect: %s\n    psk: {hex: 00112233445566778899aabbccddeeff}\n%s", listen, connect, extra)
	}
	for _, listen := range []string{"tcp://0.0.0.0:19080", "tcp://:19080", "tcp://[::]:19080", "tcp://192.0.2.7:19080", "udp://0.0.0.0:5353", "tcp://app.internal:19080"} {
		_, err := load(t, ModeClient, route(listen, ""), nil, nil)
		if err == nil || !strings.Contains(err.Error(), "routes[0] (web): listen: "+listen+" is not a loopback address") ||
			!strings.Contains(err.Error(), "allow_public_listen: true") {
			t.Errorf("%s: %v", listen, err)
		}
		if _, err := load(t, ModeClient, route(listen, "    allow_public_listen: true\n"), nil, nil); err != nil {
			t.Errorf("%s with allow_public_listen: %v", listen, err)
		}
	}
	for _, listen := range []string{"tcp://127.0.0.1:19080", "tcp://[::1]:19080", "tcp://localhost:19080", "udp://127.0.0.53:53"} {
		if _, err := load(t, ModeClient, route(listen, ""), nil, nil); err != nil {
			t.Errorf("%s: %v", listen, err)
		}
	}
	// The flag-only route obeys the same rule.
	_, err := LoadConfig(ModeClient, LoadOptions{Flags: map[string]string{"listen": "tcp://0.0.0.0:19080", "connect": "tls://server.example:8443",
		"psk": "00112233445566778899aabbccddeeff"}, Getenv: func(string) (string, bool) { return "", false }})
	if err == nil || !strings.Contains(err.Error(), "allow_public_listen") {
		t.Fatalf("flag route on 0.0.0.0: %v", err)
	}
}

// TestWildcardListenersWarn: a route or admin listener on every interface
// (an empty host included) is logged as a warning; loopback ones are not.
func TestWildcardListenersWarn(t *testing.T) {
	key := hexKey(randomKey(t))
	open := startYAML(t, fmt.Sprintf(`mode: server
admin: ":0"
routes:
  - name: web
    listen: tls://:0
    connect: tcp://%s
    psk: {hex: %s}
  - name: dns
    listen: dtls://0.0.0.0:0
    connect: udp://%s
    psk: {hex: %s}
`, echoServer(t), key, udpEcho(t), key))
	logs := open.logs.String()
	for _, want := range []string{
		`level=WARN msg="the admin listener binds every interface`,
		`level=WARN msg="the route's listener binds every interface (empty host, 0.0.0.0 or ::)" route=web listen=tls://:0`,
		`level=WARN msg="the route's listener binds every interface (empty host, 0.0.0.0 or ::)" route=dns listen=dtls://0.0.0.0:0`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the log:\n%s", want, logs)
		}
	}
	closed := startYAML(t, fmt.Sprintf("mode: server\nadmin: 127.0.0.1:0\nroutes:\n  - name: web\n    listen: tls://127.0.0.1:0\n    connect: tcp://%s\n    psk: {hex: %s}\n",
		echoServer(t), key))
	if strings.Contains(closed.logs.String(), "every interface") {
		t.Fatalf("a loopback listener was warned about:\n%s", closed.logs.String())
	}
}
