package examples_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

const localDigest = "sha256:d6ccd81104d3611223453c1c891192f9587f8ecb13515a3b602242c7748b503f"

// examples/local, started the way its README says but on free ports: the
// three shareholder configs load and serve, the dry run over the client
// proxy's config finds 3/3 shares, the two proxy configs start, and an HTTP
// request goes through the tunnel. Only addresses and the attester are
// rewritten; keys, policy, audiences and routes are the files' own.
func TestLocalTopology(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"alice.yaml", "bob.yaml", "carol.yaml", "dev-policy.cel", "server.yaml", "client.yaml"} {
		writeFile(t, filepath.Join(dir, f), readExample(t, "local", f), 0o600)
	}
	mustContain(t, "local/README.md", readExample(t, "local", "README.md"),
		"mcbn psk split --group local --threshold 2 --participants alice,bob,carol --out keys", localDigest,
		"mcbn shareholder serve --config $p.yaml", "mcbn proxy server --config server.yaml", "mcbn proxy client --config client.yaml")

	// Step 1 of the README: the key ceremony.
	keys := filepath.Join(dir, "keys")
	os.Mkdir(keys, 0o700)
	g, shares, err := psk.Split("local", 2, []string{"alice", "bob", "carol"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	psk.WriteGroup(filepath.Join(keys, "group.json"), g)
	for _, s := range shares {
		if err := psk.WriteShare(filepath.Join(keys, s.Participant+".share.json"), s); err != nil {
			t.Fatal(err)
		}
	}
	// Step 2: the dev attester.
	att, err := attest.StartDevAttester(attest.DevAttesterConfig{Socket: filepath.Join(dir, "teeserver.sock"), ImageDigest: localDigest, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()

	// Step 3: the shareholders; their addresses and pins go into the proxy configs.
	rewrite := map[string]string{"/tmp/mcbn-local/teeserver.sock": att.Socket(), "keys/group.json": filepath.Join(keys, "group.json")}
	for i, name := range []string{"alice", "bob", "carol"} {
		path := filepath.Join(dir, name+".yaml")
		text := strings.NewReplacer("http://127.0.0.1:8400", att.Issuer(), fmt.Sprintf("listen: 127.0.0.1:845%d", i+1), "listen: 127.0.0.1:0").Replace(readExample(t, path))
		writeFile(t, path, text, 0o600)
		cfg, err := shareholder.LoadConfig(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s, err := shareholder.NewServer(context.Background(), cfg, shareholder.ServerOptions{ConfigPath: path, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rewrite[fmt.Sprintf(`url: "https://127.0.0.1:845%d"`, i+1)] = fmt.Sprintf(`url: "https://%s"`, s.Addr())
		rewrite["sha256:"+strings.ToUpper(name)+"_PIN"] = s.Pin()
	}
	var pairs []string
	for k, v := range rewrite {
		pairs = append(pairs, k, v)
	}
	r := strings.NewReplacer(pairs...)
	// The dry run (mcbn proxy check --config client.yaml).
	clientPath := filepath.Join(dir, "client.yaml")
	writeFile(t, clientPath, r.Replace(readExample(t, clientPath)), 0o600)
	targets, err := shareholder.LoadCheckTargets(clientPath)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := shareholder.Check(context.Background(), targets[0].Config, nil)
	if err != nil || !prog.Enough() || !strings.HasPrefix(prog.String(), "3/3 shares (threshold 2)") {
		t.Fatalf("dry run: %v %v", prog, err)
	}

	// Steps 4-6: the server app, the proxies on free ports, one request.
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "local app\n") })}
	appAddr := startHTTP(t, app)
	server := startFromFile(t, strings.NewReplacer("tls://127.0.0.1:8443", "tls://127.0.0.1:0", "dtls://127.0.0.1:8853", "dtls://127.0.0.1:0",
		"tcp://127.0.0.1:8080", "tcp://"+appAddr, "127.0.0.1:9090", "127.0.0.1:0").Replace(r.Replace(readExample(t, "local", "server.yaml"))))
	client := startFromFile(t, strings.NewReplacer("tcp://127.0.0.1:9080", "tcp://127.0.0.1:0", "udp://127.0.0.1:9053", "udp://127.0.0.1:0",
		"tls://127.0.0.1:8443", "tls://"+server.Addr("web").String(), "dtls://127.0.0.1:8853", "dtls://"+server.Addr("dgram").String(),
		"127.0.0.1:9091", "127.0.0.1:0").Replace(r.Replace(readExample(t, "local", "client.yaml"))))
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + client.Addr("web").String() + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) == "local app\n" {
				return
			}
		}
		if time.Now().After(deadline) {
			_, why := client.Ready()
			t.Fatalf("no answer through the local topology: %v %v", err, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startFromFile starts a proxy from a rewritten example config.
func startFromFile(t *testing.T, yaml string) *proxy.Proxy {
	t.Helper()
	return staticProxy(t, yaml)
}

func startHTTP(t *testing.T, s *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}
