package examples_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/gather"
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
		"mcbn shareholder serve --config $p.yaml", "mcbn proxy server --config server.yaml", "mcbn proxy client --config client.yaml",
		"--socket run/teeserver.sock")

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
	rewrite := map[string]string{"run/teeserver.sock": att.Socket(), "keys/group.json": filepath.Join(keys, "group.json")}
	for i, name := range []string{"alice", "bob", "carol"} {
		path := filepath.Join(dir, name+".yaml")
		text := strings.NewReplacer("http://127.0.0.1:8400", att.Issuer(), fmt.Sprintf("listen: 127.0.0.1:845%d", i+1), "listen: 127.0.0.1:0",
			fmt.Sprintf("listen: 127.0.0.1:945%d", i+1), "listen: 127.0.0.1:0").Replace(readExample(t, path))
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
	targets, err := gather.LoadCheckTargets(clientPath)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := gather.Check(context.Background(), targets[0].Config, nil)
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

// The README's steps, run by a shell with stand-ins for the commands that
// would start servers or reach the network (mcbn, go, python3, socat,
// curl), each logging its directory and arguments, in a copy of this
// directory: the steps leave every file of the example as it was (the pins
// go into copies in the work directory) and create nothing here; the server
// app's HTTP server serves a directory that neither is nor contains the
// keys; and the proxies start from configs with every pin filled in.
func TestLocalReadmeSteps(t *testing.T) {
	bash := needTool(t, "bash")
	readme := readExample(t, "local", "README.md")
	start := strings.Index(readme, "```sh\n")
	end := strings.Index(readme[start+6:], "```")
	if start < 0 || end < 0 {
		t.Fatal("local/README.md: no ```sh block")
	}
	script := readme[start+6 : start+6+end]

	sandbox := t.TempDir()
	repo := filepath.Join(sandbox, "repo")
	local := filepath.Join(repo, "examples", "local")
	os.MkdirAll(local, 0o755)
	entries, err := os.ReadDir("local")
	if err != nil {
		t.Fatal(err)
	}
	orig := map[string]string{}
	for _, e := range entries {
		orig[e.Name()] = readExample(t, "local", e.Name())
		writeFile(t, filepath.Join(local, e.Name()), orig[e.Name()], 0o644)
	}
	stubs := filepath.Join(sandbox, "bin")
	snap := filepath.Join(sandbox, "snap")
	os.Mkdir(stubs, 0o755)
	os.Mkdir(snap, 0o755)
	os.Mkdir(filepath.Join(sandbox, "tmp"), 0o755)
	calls := filepath.Join(sandbox, "calls.log")
	logCall := `printf '%s\t%s\n' "$PWD" "$(basename "$0") $*" >> "$CALLS"` + "\n"
	for name, body := range map[string]string{
		"go": "", "python3": "", "socat": "", "curl": "",
		// mcbn: psk split makes the files it names; shareholder serve
		// prints a pin; the proxies' configs are kept for inspection.
		"mcbn": `case "$1 $2" in
"psk split") out=$(echo "$@" | sed -n 's/.*--out \([^ ]*\).*/\1/p'); mkdir -p "$out"
	for f in group alice.share bob.share carol.share; do echo stub > "$out/$f.json"; done ;;
"shareholder serve") echo "pin: sha256:$(printf %s "$4" | sha256sum | cut -c1-64)" ;;
"proxy server"|"proxy client") cp "$4" "$SNAP/$2.yaml" ;;
esac
`,
	} {
		writeFile(t, filepath.Join(stubs, name), "#!/bin/sh\n"+logCall+body, 0o755)
	}
	// The stand-ins exit by themselves: the README's `sleep` (for the
	// daemons to start) and its clean-up `kill` wait for them instead, so
	// each has run when the next step reads what it wrote.
	env := filepath.Join(sandbox, "env.sh")
	writeFile(t, env, "kill() { wait; }\nsleep() { wait; }\n", 0o644)
	cmd := exec.Command(bash, "-c", script)
	cmd.Dir = repo
	cmd.Env = []string{"PATH=" + stubs + ":/usr/bin:/bin", "HOME=" + sandbox, "TMPDIR=" + filepath.Join(sandbox, "tmp"),
		"CALLS=" + calls, "SNAP=" + snap, "BASH_ENV=" + env}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the steps failed: %v\n%s", err, out)
	}

	// Nothing in the example directory changed or appeared.
	after, _ := os.ReadDir(local)
	for _, e := range after {
		if _, ok := orig[e.Name()]; !ok {
			t.Errorf("the steps created %s in examples/local", e.Name())
		} else if got := readFile(t, filepath.Join(local, e.Name())); got != orig[e.Name()] {
			t.Errorf("the steps changed examples/local/%s", e.Name())
		}
	}
	if len(after) != len(orig) {
		t.Errorf("examples/local had %d files, now %d", len(orig), len(after))
	}

	// The HTTP server serves neither the keys nor a directory holding them.
	var keysDir, served string
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, calls)), "\n") {
		cwd, call, _ := strings.Cut(line, "\t")
		args := strings.Fields(call)
		switch {
		case len(args) > 2 && args[0] == "mcbn" && args[1] == "psk" && args[2] == "split":
			keysDir = filepath.Join(cwd, flagValue(args, "--out"))
		case len(args) > 2 && args[0] == "python3" && args[2] == "http.server":
			served = cwd
			if d := flagValue(args, "--directory"); d != "" {
				served = filepath.Join(cwd, d)
			}
		}
	}
	if keysDir == "" || served == "" {
		t.Fatalf("the steps ran no key split (%q) or no HTTP server (%q):\n%s", keysDir, served, readFile(t, calls))
	}
	if rel, err := filepath.Rel(served, keysDir); err != nil || rel == "." || !strings.HasPrefix(rel, "..") {
		t.Errorf("the server app serves %s, which holds the keys in %s", served, keysDir)
	}

	// The proxies started from configs with the pins filled in.
	for _, mode := range []string{"server", "client"} {
		text := readFile(t, filepath.Join(snap, mode+".yaml"))
		if strings.Contains(text, "_PIN") || strings.Count(text, "pin: \"sha256:") != 3 {
			t.Errorf("mcbn proxy %s started with pins not filled in:\n%s", mode, text)
		}
	}
}
