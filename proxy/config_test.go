package proxy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodServer = `
routes:
  - name: web
    listen: tls://127.0.0.1:8443
    connect: tcp://127.0.0.1:8080
    psk:
      hex: 00112233445566778899aabbccddeeff
`

func load(t *testing.T, mode Mode, yamlText string, flags map[string]string, env map[string]string) (*Config, error) {
	t.Helper()
	return LoadConfig(mode, LoadOptions{
		Flags:  merge(map[string]string{"config": "cfg.yaml"}, flags),
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Read:   func(string) ([]byte, error) { return []byte(yamlText), nil },
	})
}

func merge(a, b map[string]string) map[string]string {
	for k, v := range b {
		a[k] = v
	}
	return a
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name, mode, yaml, want string
	}{
		{"unknown key with line", "server", "routes:\n  - name: web\n    lisen: tls://:1\n", `line 3: unknown key "lisen"`},
		{"unknown top key", "server", "admn: x\n", `line 1: unknown key "admn"`},
		{"no scheme", "server", strings.Replace(goodServer, "tls://127.0.0.1:8443", "127.0.0.1:8443", 1), "routes[0] (web): listen: \"127.0.0.1:8443\" has no scheme"},
		{"bad port", "server", strings.Replace(goodServer, "8080", "80800", 1), "routes[0] (web): connect: \"tcp://127.0.0.1:80800\": bad port"},
		{"bad host port", "server", strings.Replace(goodServer, "tcp://127.0.0.1:8080", "tcp://nohost", 1), "routes[0] (web): connect:"},
		{"plain listener on server", "server", strings.Replace(goodServer, "tls://", "tcp://", 1), "listen: a server proxy listens for tunnels"},
		{"tls connect on server", "server", strings.Replace(goodServer, "tcp://", "tls://", 1), "connect: a server proxy connects to a plain backend"},
		{"tls listener on client", "client", goodServer, "listen: a client proxy listens for plain traffic"},
		{"mixed transports", "server", strings.Replace(goodServer, "tcp://", "udp://", 1), "is udp but listen"},
		{"missing psk", "server", "routes:\n  - name: web\n    listen: tls://:1\n    connect: tcp://127.0.0.1:2\n", "routes[0] (web): psk: missing"},
		{"two psks", "server", goodServer + "      file: /x\n", "psk.hex and psk.file are all set"},
		{"bad hex", "server", strings.Replace(goodServer, "00112233445566778899aabbccddeeff", "zz", 1), "psk.hex: key is not valid hex"},
		{"short key", "server", strings.Replace(goodServer, "00112233445566778899aabbccddeeff", "0011", 1), "psk.hex: key is 2 bytes"},
		{"duplicate listeners", "server", goodServer + "  - name: web2\n    listen: tls://:8443\n    connect: tcp://127.0.0.1:8081\n    psk: {hex: 00112233445566778899aabbccddeeff}\n",
			"routes[1] (web2): listen: tls://:8443 overlaps the listener of routes[0]"},
		{"duplicate names", "server", goodServer + "  - name: web\n    listen: tls://:9443\n    connect: tcp://127.0.0.1:8081\n    psk: {hex: 00112233445566778899aabbccddeeff}\n",
			"routes[1] (web): name: the same name as routes[0]"},
		{"bad duration", "server", goodServer + "    timeouts: {handshake: soon}\n", `"soon" is not a duration`},
		{"bad suite", "server", goodServer + "    tls: {cipher_suites: [RC4-MD5]}\n", `tls: cipher_suites: unknown suite "RC4-MD5"`},
		{"bad dtls suite", "server", "routes:\n  - listen: dtls://:1\n    connect: udp://127.0.0.1:2\n    psk: {hex: 00112233445566778899aabbccddeeff}\n    dtls: {cipher_suites: [PSK-RC4]}\n", `dtls.cipher_suites: unknown or unsupported DTLS PSK suite "PSK-RC4"`},
		{"bad version", "server", goodServer + "    tls: {min_version: \"1.1\"}\n", `tls: min_version: "1.1" is not 1.2 or 1.3`},
		{"mode mismatch", "client", "mode: server\n" + goodServer, "the config file is for a server proxy"},
		{"no routes", "server", "admin: 127.0.0.1:9090\n", "routes: none configured"},
		{"bad admin", "server", "admin: nowhere\n" + goodServer, "admin:"},
		{"admin overlaps", "server", "admin: 127.0.0.1:8443\n" + goodServer, "overlaps the admin listener"},
		{"unknown source kind", "server", strings.Replace(goodServer, "hex: 00112233445566778899aabbccddeeff", "source: shares", 1), `psk.source: unknown kind "shares"`},
		{"bad log format", "server", "log_format: xml\n" + goodServer, `log_format: "xml" is not text or json`},
		{"two documents", "server", goodServer + "---\nadmin: x\n", "more than one YAML document"},
		{"misplaced key is not quoted", "server", "routes:\n  - psk: 00112233445566778899aabbccddeeff\n", "line 2: got a string (value hidden), want a mapping"},
		{"misspelt mode", "client", "mode: sever\n" + goodServer, `mode: unknown mode "sever" (want client or server)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, Mode(tc.mode), tc.yaml, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigDefaultsAndPrecedence(t *testing.T) {
	c, err := load(t, ModeServer, goodServer, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	if r.Transport != "tcp" || r.Timeouts.Handshake.D() != DefaultHandshakeTimeout || r.Limits.MaxConnections != DefaultMaxConnections ||
		c.DrainTimeout.D() != DefaultDrainTimeout || c.ProbeInterval.D() != DefaultProbeInterval || r.IdleTimeout() != 0 || c.LogFormat != "text" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	// Environment over the file, flags over the environment, per-route env
	// by name.
	c, err = load(t, ModeServer, goodServer,
		map[string]string{"handshake-timeout": "3s", "log-format": "json"},
		map[string]string{"MCBN_PROXY_HANDSHAKE_TIMEOUT": "7s", "MCBN_PROXY_DIAL_TIMEOUT": "9s",
			"MCBN_PROXY_ADMIN": "127.0.0.1:9999", "MCBN_PROXY_ROUTE_WEB_MAX_CONNECTIONS": "12", "MCBN_PROXY_PROBE_INTERVAL": "0s"})
	if err != nil {
		t.Fatal(err)
	}
	r = c.Routes[0]
	if r.Timeouts.Handshake.D() != 3*time.Second || r.Timeouts.Dial.D() != 9*time.Second || c.Admin != "127.0.0.1:9999" ||
		r.Limits.MaxConnections != 12 || c.LogFormat != "json" || c.ProbeInterval != 0 {
		t.Fatalf("precedence wrong: %+v %+v", c, r)
	}
	// Flags alone make a route.
	c, err = LoadConfig(ModeClient, LoadOptions{Flags: map[string]string{
		"listen": "udp://127.0.0.1:5353", "connect": "dtls://server:8082", "psk": "00112233445566778899aabbccddeeff", "dtls-connection-id": "false"},
		Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Routes[0]; r.Name != "route1" || r.Transport != "udp" || *r.DTLS.ConnectionID || r.ConnectEndpoint().Port != 8082 {
		t.Fatalf("flag route: %+v", r)
	}
	// Route flags with several routes in the file are ambiguous.
	two := goodServer + "  - name: b\n    listen: tls://:9443\n    connect: tcp://127.0.0.1:8081\n    psk: {hex: 00112233445566778899aabbccddeeff}\n"
	if _, err := load(t, ModeServer, two, map[string]string{"dial-timeout": "1s"}, nil); err == nil || !strings.Contains(err.Error(), "--dial-timeout set one route, but the config file has 2 routes") {
		t.Fatalf("err = %v", err)
	}
	if _, err := load(t, ModeServer, goodServer, map[string]string{"max-connections": "many"}, nil); err == nil || !strings.Contains(err.Error(), `limits.max_connections (--max-connections): "many" is not a whole number`) {
		t.Fatalf("err = %v", err)
	}
}

func TestExamplesLoad(t *testing.T) {
	for _, tc := range []struct {
		file string
		mode Mode
		n    int
	}{{"client.yaml", ModeClient, 2}, {"server.yaml", ModeServer, 2}} {
		path := filepath.Join("..", "examples", "proxy", tc.file)
		c, err := LoadConfig(tc.mode, LoadOptions{Flags: map[string]string{"config": path}, Getenv: func(string) (string, bool) { return "", false }})
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if len(c.Routes) != tc.n {
			t.Fatalf("%s: %d routes", tc.file, len(c.Routes))
		}
		// The other mode must refuse it.
		other := ModeServer
		if tc.mode == ModeServer {
			other = ModeClient
		}
		if _, err := LoadConfig(other, LoadOptions{Flags: map[string]string{"config": path}}); err == nil {
			t.Fatalf("%s loaded as a %s config", tc.file, other)
		}
	}
}

func TestSourcesAndPermissions(t *testing.T) {
	key := randomKey(t)
	dir := t.TempDir()
	open := filepath.Join(dir, "open.psk")
	os.WriteFile(open, []byte(hexKey(key)), 0o644)
	if _, err := NewFileSource(DefaultIdentity, open); err == nil || !strings.Contains(err.Error(), "must not be accessible to group or others") {
		t.Fatalf("a 0644 PSK file was accepted: %v", err)
	}
	os.Chmod(open, 0o600)
	s, err := NewFileSource(DefaultIdentity, open)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := s.Key(DefaultIdentity); err != nil || !bytes.Equal(k, key) {
		t.Fatalf("Key = %x, %v", k, err)
	}
	if _, err := s.Key("other"); err != ErrUnknownIdentity {
		t.Fatalf("unknown identity: %v", err)
	}
	os.WriteFile(open, []byte("  \n"+hexKey(randomKey(t))+"\n\n"), 0o600)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Changes():
	default:
		t.Fatal("no change signalled after a new key")
	}
	os.WriteFile(open, []byte(hexKey(key)[:10]), 0o600)
	err = s.Reload()
	if err == nil || strings.Contains(err.Error(), hexKey(key)[:10]) {
		t.Fatalf("bad key reload: %v (must fail without quoting the file)", err)
	}
	// Env source through buildSource.
	t.Setenv("TEST_MCBN_PSK", hexKey(key))
	src, id, err := buildSource(&Route{PSK: PSKConfig{Env: "TEST_MCBN_PSK"}}, ModeClient, nil)
	if err != nil || id != DefaultIdentity {
		t.Fatal(err)
	}
	if k, _ := src.Key(id); !bytes.Equal(k, key) {
		t.Fatal("env key differs")
	}
	if _, _, err := buildSource(&Route{PSK: PSKConfig{Env: "TEST_MCBN_UNSET"}}, ModeClient, nil); err == nil || !strings.Contains(err.Error(), "TEST_MCBN_UNSET is not set") {
		t.Fatalf("unset env: %v", err)
	}
	// A client using a PSKsecrets file takes the first identity, as stunnel.
	sec := writeSecret(t, "psk.txt", "carol:"+hexKey(key)+"\ndave:another ascii key, long enough\n")
	_, id, err = buildSource(&Route{PSK: PSKConfig{Secrets: sec}}, ModeClient, nil)
	if err != nil || id != "carol" {
		t.Fatalf("secrets identity = %q, %v", id, err)
	}
}

func TestParsePSKSecrets(t *testing.T) {
	hex16 := "0123456789abcdef0123456789ABCDEF"
	for _, tc := range []struct {
		name, in string
		want     map[string]string // identity -> key bytes
		err      string
	}{
		{"hex key is decoded", "alice:" + hex16 + "\n", map[string]string{"alice": "\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef"}, ""},
		{"ascii key kept", "bob:this is a long ascii key!!\n", map[string]string{"bob": "this is a long ascii key!!"}, ""},
		{"odd-length hex is an error", "a:" + hex16 + "0", nil, `line 1: key for "a" is 33 hex digits, an odd number`},
		{"odd-length with a non-hex character is ascii", "a:" + hex16 + "g", map[string]string{"a": hex16 + "g"}, ""},
		{"trailing spaces are key bytes", "c:" + hex16 + "  \n", map[string]string{"c": hex16 + "  "}, ""},
		{"CRLF and colon in key", "d:e:" + hex16 + "\r\n", map[string]string{"d": "e:" + hex16}, ""},
		{"spaces in identity kept", " e :" + hex16, map[string]string{" e ": "\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef"}, ""},
		{"empty lines skipped", "\na:" + hex16 + "\n\nb:" + hex16 + "\n", map[string]string{"a": "\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef", "b": "\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef"}, ""},
		{"short hex", "b:0123456789abcdef0123456789abcd\n", nil, "line 1: hexadecimal key for \"b\" is 15 bytes, shorter than 16"},
		{"short ascii", "x:0123456789abcdef0123456789abcdef\ncarol:short\n", nil, "line 2: ASCII key for \"carol\" is 5 bytes"},
		{"too long", "x:" + strings.Repeat("k", 513), nil, "is 513 bytes, longer than 512"},
		{"comment is not a comment", "# keys\nalice:" + hex16, nil, "line 1: not in IDENTITY:KEY format"},
		{"duplicate identity", "a:" + hex16 + "\na:" + hex16 + "\n", nil, "line 2: identity \"a\" appears twice"},
		{"empty identity", ":" + hex16, nil, "line 1: empty identity"},
		{"empty file", "\n\n", nil, "no IDENTITY:KEY line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, order, err := ParsePSKSecrets(strings.NewReader(tc.in), false)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), hex16) || strings.Contains(err.Error(), "this is a long") {
					t.Fatalf("error quotes a key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(tc.want) || len(order) != len(tc.want) {
				t.Fatalf("got %d keys", len(keys))
			}
			for id, k := range tc.want {
				if string(keys[id]) != k {
					t.Fatalf("key for %q = %q, want %q", id, keys[id], k)
				}
			}
		})
	}
}

func TestEnvNames(t *testing.T) {
	if got := EnvName("psk-file"); got != "MCBN_PROXY_PSK_FILE" {
		t.Fatal(got)
	}
	if got := RouteEnvName("web-api.v2", "handshake-timeout"); got != "MCBN_PROXY_ROUTE_WEB_API_V2_HANDSHAKE_TIMEOUT" {
		t.Fatal(got)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodServer))
	for _, p := range []string{"../examples/proxy/client.yaml", "../examples/proxy/server.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("routes: [{listen: 'dtls://:1', connect: 'udp://h:2', psk: {secrets: /x}, timeouts: {idle: 1s}}]"))
	f.Add([]byte("routes:\n  - {}\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		for _, m := range []Mode{ModeClient, ModeServer} {
			cc := *c
			cc.Routes = append([]Route(nil), c.Routes...)
			cc.Mode = m
			if cc.Validate() == nil {
				for i := range cc.Routes {
					if cc.Routes[i].listen.Scheme == "" || cc.Routes[i].connect.Port == 0 {
						t.Fatalf("validated route without parsed endpoints: %+v", cc.Routes[i])
					}
				}
			}
		}
	})
}

func FuzzParsePSKSecrets(f *testing.F) {
	f.Add([]byte("alice:0123456789abcdef0123456789abcdef\nbob:an ascii key that is long\n"))
	f.Add([]byte("a:b:c\r\n\n"))
	f.Add([]byte(":" + strings.Repeat("0", 40)))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, order, err := ParsePSKSecrets(bytes.NewReader(data), len(data)%2 == 0)
		if err != nil {
			return
		}
		if len(keys) != len(order) || len(keys) == 0 {
			t.Fatalf("%d keys, %d identities", len(keys), len(order))
		}
		for _, id := range order {
			if k := keys[id]; len(k) < minKeyLen || len(k) > maxKeyLen || id == "" {
				t.Fatalf("identity %q: key of %d bytes accepted", id, len(k))
			}
		}
	})
}

// TestRegisteredSource: a registered kind gets its options decoded
// strictly, and an unknown option names the key.
type testKindOptions struct {
	Group string `yaml:"group"`
}

var testKindGot testKindOptions

// Registered once per test binary, as a real source kind is in an init.
func init() {
	RegisterSource("test-kind", func(spec SourceSpec) (Source, error) {
		if err := spec.Decode(&testKindGot); err != nil {
			return nil, err
		}
		return NewStaticSource(spec.Identity, bytes.Repeat([]byte{1}, 16)), nil
	})
}

func TestRegisteredSource(t *testing.T) {
	testKindGot = testKindOptions{}
	good := "routes:\n  - listen: tls://127.0.0.1:0\n    connect: tcp://127.0.0.1:9\n    psk:\n      source: test-kind\n      options:\n        group: g1\n"
	c, err := load(t, ModeServer, good, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if testKindGot.Group != "g1" {
		t.Fatalf("options decoded as %+v", testKindGot)
	}
	c, err = load(t, ModeServer, strings.Replace(good, "group: g1", "grup: g1", 1), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(c, Options{}); err == nil || !strings.Contains(err.Error(), `routes[0] (route1): psk.source test-kind: line 7: unknown key "grup"`) {
		t.Fatalf("err = %v", err)
	}
}

// A misspelt MCBN_PROXY_* variable, or one for a route that does not exist,
// is an error naming it; the real ones pass.
func TestUnknownEnvironmentVariables(t *testing.T) {
	loadEnv := func(env map[string]string) error {
		var list []string
		for k, v := range env {
			list = append(list, k+"="+v)
		}
		_, err := LoadConfig(ModeServer, LoadOptions{
			Flags:   map[string]string{"config": "cfg.yaml"},
			Getenv:  func(k string) (string, bool) { v, ok := env[k]; return v, ok },
			Environ: func() []string { return list },
			Read:    func(string) ([]byte, error) { return []byte(goodServer), nil },
		})
		return err
	}
	if err := loadEnv(map[string]string{"MCBN_PROXY_LOG_LEVEL": "debug", "MCBN_PROXY_ROUTE_WEB_MAX_CONNECTIONS": "10", "PATH": "/bin"}); err != nil {
		t.Fatalf("known variables: %v", err)
	}
	// A key variable named by psk.env may carry the prefix too.
	if err := loadEnv(map[string]string{"MCBN_PROXY_PSK_ENV": "MCBN_PROXY_WEB_KEY", "MCBN_PROXY_PSK": "", "MCBN_PROXY_WEB_KEY": "00112233445566778899aabbccddeeff"}); err != nil && strings.Contains(err.Error(), "MCBN_PROXY_WEB_KEY") {
		t.Fatalf("psk.env variable refused: %v", err)
	}
	for name, want := range map[string]string{
		"MCBN_PROXY_PSK_FLIE":                  "MCBN_PROXY_PSK_FLIE is not a setting of mcbn proxy",
		"MCBN_PROXY_ROUTE_API_MAX_CONNECTIONS": "MCBN_PROXY_ROUTE_API_MAX_CONNECTIONS names no route and setting",
	} {
		if err := loadEnv(map[string]string{name: "x"}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
