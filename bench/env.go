package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// env is what every section shares: a scratch directory, the mcbn binary
// and the key material, all removed by close.
type env struct {
	dir     string
	mcbn    string // path of the built binary
	secrets string // PSKsecrets file, Client_identity:<64 hex digits>
	quick   bool
}

// needPeers are the external programs the TCP sections start.
var needPeers = []string{"iperf3", "stunnel", "socat"}

// missingPeers returns the peers not found in PATH.
func missingPeers() []string {
	var miss []string
	for _, p := range needPeers {
		if _, err := exec.LookPath(p); err != nil {
			miss = append(miss, p)
		}
	}
	return miss
}

// newEnv builds mcbn from the module root into a fresh scratch directory.
func newEnv(quick bool) (*env, error) {
	dir, err := os.MkdirTemp("", "mcbn-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, quick: quick}
	scratch.Lock()
	scratch.dirs = append(scratch.dirs, dir)
	scratch.Unlock()
	root, err := moduleRoot()
	if err != nil {
		e.close()
		return nil, err
	}
	e.mcbn = filepath.Join(dir, "mcbn")
	cmd := exec.Command("go", "build", "-o", e.mcbn, "./cmd/mcbn")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		e.close()
		return nil, fmt.Errorf("go build ./cmd/mcbn: %v\n%s", err, out)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		e.close()
		return nil, err
	}
	e.secrets = filepath.Join(dir, "psk.txt")
	if err := os.WriteFile(e.secrets, []byte("Client_identity:"+hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() { os.RemoveAll(e.dir) }

// scratch lists the scratch directories, for removal on Ctrl-C.
var scratch struct {
	sync.Mutex
	dirs []string
}

func removeScratch() {
	scratch.Lock()
	defer scratch.Unlock()
	for _, d := range scratch.dirs {
		os.RemoveAll(d)
	}
}

// path names a file in the scratch directory.
func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// moduleRoot is the directory of this module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the mcbn module: run the bench from the repository")
	}
	return filepath.Dir(mod), nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort(network string) (int, error) {
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

// freePorts returns n distinct free ports.
func freePorts(network string, n int) ([]int, error) {
	seen := map[int]bool{}
	var ports []int
	for tries := 0; len(ports) < n && tries < 100; tries++ {
		p, err := freePort(network)
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	if len(ports) < n {
		return nil, errors.New("could not find free ports")
	}
	return ports, nil
}

func loop(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// waitTCP waits until addr accepts a connection, or p exits, or d passes.
func waitTCP(addr string, d time.Duration, p *proc) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited before listening on %s", p.describe(), addr)
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("nothing listens on %s after %v", addr, d)
			if p != nil {
				msg += ": " + p.describe()
			}
			return errors.New(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady polls an mcbn admin /readyz until it answers 200.
func waitReady(admin string, d time.Duration, p *proc) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for {
		resp, err := c.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("%s exited before it was ready", p.describe())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v", p.describe(), d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
