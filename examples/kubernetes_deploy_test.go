package examples_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/shareholder"
)

// What a user applies, run as far as it can be without a cluster:
// setup.sh writes the overlay into a new directory (and nothing into the
// repository), kubectl kustomize renders it, and the rendered deployment
// passes the contract with every placeholder filled in. Then each pod's
// files are laid out as the kubelet would (ConfigMap and Secret files with
// the kubelet's modes, emptyDirs, a persistent volume) and its init
// containers' install commands run on them; every mcbn container's command
// line then runs with the image's entrypoint: the dev attesters and the
// shareholders start (all attesters sign with one key; each shareholder
// serves the pin the proxies hold), the proxies' --check passes, and
// `mcbn proxy check` on the client proxy's config gets 3/3 shares. A
// restarted shareholder, after the kubelet's remount of its volume, keeps
// its pin and continues its audit chain.
//
// Addresses are the only rewrite: each pod has its own network namespace in
// Kubernetes (127.0.0.1:8400 in every pod, a Service name per shareholder),
// here they share one, so listeners take free ports and the shareholders'
// issuer is the client pod's attester (the same URL, key and issuer in
// every pod of a cluster).
func TestKubernetesDeploy(t *testing.T) {
	kubectl := needTool(t, "kubectl")
	needTool(t, "openssl")
	install := needTool(t, "install") // coreutils' install stands in for busybox's
	bin := mcbnBinary(t)
	entry := imageEntrypoints(t)

	digest := func(s string) string { h := sha256.Sum256([]byte(s)); return "sha256:" + hex.EncodeToString(h[:]) }
	proxyImage := "registry.example/mcbn/mcbn-proxy@" + digest("proxy")
	shImage := "registry.example/mcbn/mcbn-shareholder@" + digest("shareholder")
	before := dirDigest(t, k8sDir)
	work := filepath.Join(t.TempDir(), "work")
	setup := exec.Command("sh", filepath.Join(k8sDir, "setup.sh"), work)
	setup.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"MCBN_PROXY_IMAGE="+proxyImage, "MCBN_SHAREHOLDER_IMAGE="+shImage)
	if out, err := setup.CombinedOutput(); err != nil || !strings.Contains(string(out), "kubectl apply -k "+work) {
		t.Fatalf("setup.sh: %v\n%s", err, out)
	}
	if after := dirDigest(t, k8sDir); after != before {
		t.Fatal("setup.sh changed files of examples/kubernetes")
	}
	rendered, err := exec.Command(kubectl, "kustomize", work).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", work, err)
	}
	objs, err := decodeK8s("kubectl kustomize", rendered)
	if err != nil {
		t.Fatal(err)
	}
	set := newK8sSet(objs)
	checkK8s(t, set, true, entry)
	for _, ph := range []string{"REPLACE", "_PIN", "PROXY_IMAGE_DIGEST", "REGISTRY/"} {
		if bytes.Contains(rendered, []byte(ph)) {
			t.Errorf("the rendered deployment still holds the placeholder %s", ph)
		}
	}
	for _, p := range set.pods {
		for _, c := range p.allContainers() {
			if want := map[string]string{"mcbn-proxy": proxyImage, "mcbn-shareholder": shImage}[imageName(c.Image)]; want != "" && c.Image != want {
				t.Errorf("%s: container %s: image %s, want %s", p.where, c.Name, c.Image, want)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The pods' files.
	pods := map[string]*podFS{}
	for _, p := range set.pods {
		pods[p.name] = layOut(t, set, p, install)
	}
	type running struct {
		f   *podFS
		c   *corev1.Container
		av  []string
		cfg string // the config file as the process reads it
	}
	byRole := map[string][]running{}
	for _, name := range sortedKeys(pods) {
		f := pods[name]
		for _, c := range f.pod.spec.Containers {
			if !isMCBN(&c) {
				continue
			}
			av := argv(&c, entry)
			r := running{f: f, c: &c, av: av}
			if cfg := flagValue(av, "--config"); cfg != "" {
				r.cfg = f.host(&c, cfg)
			}
			byRole[mcbnRole(av)] = append(byRole[mcbnRole(av)], r)
		}
	}
	if n := []int{len(byRole["dev-attester"]), len(byRole["shareholder"]), len(byRole["proxy"])}; n[0] != 5 || n[1] != 3 || n[2] != 2 {
		t.Fatalf("dev attesters, shareholders, proxies: %v, want 5, 3, 2", n)
	}

	// The dev attesters: every one starts from its arguments, and all sign
	// with the same key, or the shareholders could not verify the proxies.
	issuers := map[string]string{} // pod -> issuer
	kids := map[string]bool{}
	for _, r := range byRole["dev-attester"] {
		args := r.f.mapArgs(r.c, r.av[1:])
		for i := range args {
			if i > 0 && args[i-1] == "--listen" {
				args[i] = "127.0.0.1:0"
			}
		}
		out := startMCBN(t, bin, args, "issuer:", "key id:")
		issuers[r.f.pod.name] = out["issuer:"]
		kids[out["key id:"]] = true
	}
	if len(kids) != 1 {
		t.Fatalf("the dev attesters sign with %d different keys", len(kids))
	}

	// The pins the proxies hold.
	wantPins := map[string]string{}
	for _, r := range byRole["proxy"] {
		targets, err := gather.ParseCheckTargets([]byte(readFile(t, r.cfg)))
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range targets {
			for _, sh := range tg.Config.Shareholders {
				if old, ok := wantPins[sh.Name]; ok && old != sh.Pin {
					t.Errorf("the proxies hold two pins for %s", sh.Name)
				}
				wantPins[sh.Name] = sh.Pin
			}
		}
	}

	// The shareholders, from their ConfigMap configs (paths mapped, the
	// issuer given) and the init containers' copies. Each start after the
	// first is a restart: the kubelet mounts the audit volume again, with
	// the pod's fsGroupChangePolicy, and the daemon must keep its pin.
	type daemon struct {
		name, addr string
		stop       func()
	}
	shConfigs := map[string]string{} // config as laid out, before rewriting
	for _, r := range byRole["shareholder"] {
		shConfigs[r.cfg] = readFile(t, r.cfg)
	}
	started := false
	startShareholders := func(issuer string) []daemon {
		t.Helper()
		var ds []daemon
		for _, r := range byRole["shareholder"] {
			name := strings.TrimSuffix(r.f.pod.name, "-shareholder")
			if started {
				psc := r.f.pod.spec.SecurityContext
				kubeletRemount(t, r.f.dirs["audit"], *psc.FSGroup, psc.FSGroupChangePolicy)
			}
			text := strings.NewReplacer("listen: 0.0.0.0:8441", "listen: 127.0.0.1:0", `"127.0.0.1:9464"`, `"127.0.0.1:0"`,
				"http://127.0.0.1:8400", issuer).Replace(r.f.mapText(r.c, shConfigs[r.cfg]))
			writeFile(t, r.cfg, text, 0o644)
			out, stop := startMCBNStoppable(t, bin, r.f.mapArgs(r.c, r.av[1:]), "pin:", "listening:")
			if out["pin:"] != wantPins[name] {
				t.Errorf("%s serves pin %s; the proxies hold %s", name, out["pin:"], wantPins[name])
			}
			ds = append(ds, daemon{name: name, addr: strings.TrimPrefix(out["listening:"], "https://"), stop: stop})
		}
		started = true
		return ds
	}

	// Each proxy's own command line with --check (the consent dry run):
	// every route reaches 3/3 shares. The shareholders trust the issuer of
	// that proxy's pod, as they trust the one URL of every pod in a cluster.
	auditLines := map[string]int{}
	for _, r := range byRole["proxy"] {
		ds := startShareholders(issuers[r.f.pod.name])
		var pairs []string
		for _, d := range ds {
			pairs = append(pairs, `url: "https://`+d.name+`-shareholder:8441"`, `url: "https://`+d.addr+`"`)
		}
		text := r.f.mapText(r.c, readFile(t, r.cfg))
		writeFile(t, r.cfg, strings.NewReplacer(pairs...).Replace(text), 0o644)
		args := r.f.mapArgs(r.c, slices.Concat(r.av[1:], []string{"--check"}))
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil || strings.Count(string(out), "3/3 shares (threshold 2)") != 2 {
			t.Errorf("%s: mcbn %s --check: %v\n%s", r.f.pod.where, strings.Join(r.av[1:], " "), err, out)
		}
		for _, d := range ds {
			d.stop()
		}
		for _, sr := range byRole["shareholder"] {
			log := filepath.Join(sr.f.dirs["audit"], "audit.jsonl")
			n := strings.Count(readFile(t, log), "\n")
			if n <= auditLines[log] {
				t.Errorf("%s: the audit log did not grow (%d lines, then %d)", sr.f.pod.where, auditLines[log], n)
			}
			auditLines[log] = n
		}
	}
	// One chain per shareholder across its restarts.
	for log := range auditLines {
		if out, err := exec.Command(bin, "shareholder", "audit", "verify", log).CombinedOutput(); err != nil {
			t.Errorf("audit chain across restarts: %v\n%s", err, out)
		}
	}
}

// setup.sh refuses an image not pinned by digest (the policy and the dev
// attester name the proxy's digest) and a work directory that exists (it
// would mix keys of two ceremonies), before it makes anything.
func TestKubernetesSetupRefuses(t *testing.T) {
	pinned := "registry.example/mcbn-proxy@sha256:" + strings.Repeat("ab", 32)
	for _, c := range []struct {
		name, proxy, shareholder, work, want string
	}{
		{"tag", "registry.example/mcbn-proxy:v1", pinned, "new", "MCBN_PROXY_IMAGE must be REPOSITORY@sha256"},
		{"missing", pinned, "", "new", "MCBN_SHAREHOLDER_IMAGE must be REPOSITORY@sha256"},
		{"work exists", pinned, pinned, ".", "exists; give a new directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command("sh", filepath.Join(k8sDir, "setup.sh"), filepath.Join(dir, c.work))
			cmd.Env = append(os.Environ(), "MCBN_PROXY_IMAGE="+c.proxy, "MCBN_SHAREHOLDER_IMAGE="+c.shareholder)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("setup.sh: %v\n%s", err, out)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("setup.sh made %d entries before refusing", len(entries))
			}
		})
	}
}

// The kubelet's default fsGroupChangePolicy, at a second mount of the
// audit volume, makes the log group-readable, and the daemon's audit log
// check (shareholder.OpenAuditLog, what it runs at start) refuses it: why
// the StatefulSet sets OnRootMismatch, under which the log keeps its mode.
func TestKubeletRemountAuditLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	onRoot := corev1.FSGroupChangeOnRootMismatch
	kubeletRemount(t, dir, 65532, &onRoot) // the first mount of a fresh volume
	path := filepath.Join(dir, "audit.jsonl")
	l, err := shareholder.OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	kubeletRemount(t, dir, 65532, &onRoot)
	if l, err := shareholder.OpenAuditLog(path); err != nil {
		t.Fatalf("after an OnRootMismatch remount: %v", err)
	} else {
		l.Close()
	}
	kubeletRemount(t, dir, 65532, nil)
	if l, err := shareholder.OpenAuditLog(path); err == nil {
		l.Close()
		t.Fatal("after a default remount the daemon accepted a group-readable audit log")
	} else if !strings.Contains(err.Error(), "group or others") {
		t.Fatalf("after a default remount: %v, want the mode refusal", err)
	}
}

// podFS is a pod's volumes laid out in a short temporary directory (the
// attester's socket path must stay short).
type podFS struct {
	pod  *k8sPod
	root string
	dirs map[string]string // volume -> directory
}

// layOut writes a pod's volumes as the kubelet would and runs its init
// containers' install commands on them.
func layOut(t *testing.T, s *k8sSet, p *k8sPod, install string) *podFS {
	t.Helper()
	root, err := os.MkdirTemp("", "k8s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	f := &podFS{pod: p, root: root, dirs: map[string]string{}}
	fsGroup := p.spec.SecurityContext.FSGroup
	for _, name := range sortedKeys(p.vols) {
		v := p.vols[name]
		dir := filepath.Join(root, name)
		f.dirs[name] = dir
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		files, err := s.volumeFiles(v)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case files != nil:
			for rel, file := range files {
				var data []byte
				if file.secret {
					data = s.secrets[file.object].Data[file.key]
				} else {
					data = []byte(s.configMaps[file.object].Data[file.key])
				}
				path := filepath.Join(dir, rel)
				os.MkdirAll(filepath.Dir(path), 0o755)
				writeFile(t, path, string(data), 0o600)
				if err := os.Chmod(path, kubeletFile(file.mode, fsGroup).mode); err != nil {
					t.Fatal(err)
				}
			}
		case v.EmptyDir != nil:
			mode := fs.FileMode(0o777)
			if fsGroup != nil {
				mode |= fs.ModeSetgid
			}
			os.Chmod(dir, mode)
		case v.PersistentVolumeClaim != nil:
			if fsGroup == nil {
				t.Fatalf("%s: volume %s: a persistent volume without fsGroup", p.where, name)
			}
			kubeletRemount(t, dir, *fsGroup, p.spec.SecurityContext.FSGroupChangePolicy)
		}
	}
	for i := range p.spec.InitContainers {
		c := &p.spec.InitContainers[i]
		av := append(append([]string(nil), c.Command...), c.Args...)
		if _, _, _, err := parseInstall(av); err != nil {
			t.Fatalf("%s: init container %s: %v", p.where, c.Name, err)
		}
		if out, err := exec.Command(install, f.mapArgs(c, av[1:])...).CombinedOutput(); err != nil {
			t.Fatalf("%s: init container %s: %v\n%s", p.where, c.Name, err, out)
		}
	}
	return f
}

// host maps a path of container c to where it is laid out.
func (f *podFS) host(c *corev1.Container, pth string) string {
	_, v, rel, ok := f.pod.mount(c, pth)
	if !ok {
		return pth
	}
	h := filepath.Join(f.dirs[v.Name], rel)
	if strings.HasSuffix(pth, "/") {
		h += "/"
	}
	return h
}

// mapArgs maps the absolute paths among a container's arguments.
func (f *podFS) mapArgs(c *corev1.Container, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if strings.HasPrefix(a, "/") {
			out[i] = f.host(c, a)
		}
	}
	return out
}

// mapText maps the absolute paths of a config text read by container c.
func (f *podFS) mapText(c *corev1.Container, text string) string {
	return absPathRE.ReplaceAllStringFunc(text, func(m string) string {
		p := absPathRE.FindStringSubmatch(m)[1]
		return strings.Replace(m, p, f.host(c, p), 1)
	})
}

// kubeletRemount is the kubelet's fsGroup ownership change of a writable
// volume at mount time: every directory gets group rwx and setgid, every
// file group rw; with OnRootMismatch it is skipped when the volume's root
// already has them. (The group change itself is left out: the modes are
// what the daemon checks.)
func kubeletRemount(t *testing.T, dir string, fsGroup int64, policy *corev1.PodFSGroupChangePolicy) {
	t.Helper()
	if policy != nil && *policy == corev1.FSGroupChangeOnRootMismatch {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o770 == 0o770 && fi.Mode()&fs.ModeSetgid != 0 {
			return
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, fi.Mode().Perm()|0o770|fs.ModeSetgid)
		}
		return os.Chmod(p, fi.Mode().Perm()|0o660)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startMCBN runs bin with args until the test ends, returning the value
// after each wanted prefix on its standard output.
func startMCBN(t *testing.T, bin string, args []string, want ...string) map[string]string {
	t.Helper()
	out, _ := startMCBNStoppable(t, bin, args, want...)
	return out
}

// startMCBNStoppable is startMCBN with a function that stops the process
// (SIGTERM, then kill) and waits for it.
func startMCBNStoppable(t *testing.T, bin string, args []string, want ...string) (map[string]string, func()) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		})
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(stop)
	got := map[string]string{}
	timeout := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("mcbn %s exited before it was ready:\n%s", strings.Join(args, " "), stderr.String())
			}
			for _, w := range want {
				if v, found := strings.CutPrefix(l, w); found {
					got[w] = strings.TrimSpace(v)
				}
			}
		case <-timeout:
			t.Fatalf("mcbn %s: not ready after 30s:\n%s", strings.Join(args, " "), stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	return got, stop
}

// dirDigest hashes the names and contents of a directory's files.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		h.Write([]byte(p + "\x00"))
		h.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
