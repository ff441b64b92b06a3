package examples_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigyaml "sigs.k8s.io/yaml"

	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// The Kubernetes example (examples/kubernetes) is checked as a contract,
// without a cluster: every document decodes strictly into the Kubernetes API
// types (k8s.io/api; an unknown or misspelt field is an error); every path a
// container's arguments or its configuration names lies in a volume the
// container mounts, as a key of the ConfigMap or Secret behind it or in a
// volume an init container fills; Secret files are readable by the user that
// reads them with modes our own checks accept, as the kubelet writes them;
// and the configs parse. kubernetes_deploy_test.go then renders the overlay
// setup.sh writes with kubectl kustomize and runs every mcbn container's
// command line against files laid out as the kubelet would.

const k8sDir = "kubernetes"

// k8sObj is one manifest document decoded strictly into its API type.
type k8sObj struct {
	where string // file: Kind/name, for messages
	kind  string
	name  string
	obj   any
}

// k8sTypes are the kinds the manifests may use. A new kind must be added
// here so that it is decoded strictly too.
var k8sTypes = map[string]func() any{
	"v1/ConfigMap":        func() any { return &corev1.ConfigMap{} },
	"v1/Secret":           func() any { return &corev1.Secret{} },
	"v1/Service":          func() any { return &corev1.Service{} },
	"apps/v1/Deployment":  func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet": func() any { return &appsv1.StatefulSet{} },
}

// splitYAML splits a YAML stream at its "---" lines and drops documents
// holding only comments and blank lines.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur []string
	flush := func() {
		for _, l := range cur {
			if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
				docs = append(docs, []byte(strings.Join(cur, "\n")))
				break
			}
		}
		cur = nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}

// decodeK8s decodes every document of a manifest stream strictly: an
// unknown or duplicate field, a wrong type or an unknown kind is an error.
func decodeK8s(file string, data []byte) ([]k8sObj, error) {
	var out []k8sObj
	for i, doc := range splitYAML(data) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := sigyaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", file, i+1, err)
		}
		mk, ok := k8sTypes[head.APIVersion+"/"+head.Kind]
		if !ok {
			return nil, fmt.Errorf("%s: document %d: apiVersion %q kind %q is not one the tests decode (add it to k8sTypes)", file, i+1, head.APIVersion, head.Kind)
		}
		obj := mk()
		if err := sigyaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: %s/%s: %v", file, head.Kind, head.Metadata.Name, err)
		}
		if head.Metadata.Name == "" {
			return nil, fmt.Errorf("%s: document %d (%s) has no metadata.name", file, i+1, head.Kind)
		}
		out = append(out, k8sObj{where: fmt.Sprintf("%s: %s/%s", file, head.Kind, head.Metadata.Name), kind: head.Kind, name: head.Metadata.Name, obj: obj})
	}
	return out, nil
}

// kustomization is the part of a kustomization.yaml the example uses,
// decoded strictly: a field not listed here is an error, so the test is
// updated when the kustomization grows.
type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Resources  []string `yaml:"resources"`
	Labels     []struct {
		Pairs            map[string]string `yaml:"pairs"`
		IncludeSelectors bool              `yaml:"includeSelectors"`
	} `yaml:"labels"`
	Images []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		Digest  string `yaml:"digest"`
	} `yaml:"images"`
	GeneratorOptions struct {
		DisableNameSuffixHash bool `yaml:"disableNameSuffixHash"`
	} `yaml:"generatorOptions"`
	ConfigMapGenerator []kustomizeGenerator `yaml:"configMapGenerator"`
	SecretGenerator    []kustomizeGenerator `yaml:"secretGenerator"`
}

type kustomizeGenerator struct {
	Name  string   `yaml:"name"`
	Type  string   `yaml:"type"`
	Files []string `yaml:"files"`
}

func loadKustomization(dir string) (*kustomization, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %v", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s/kustomization.yaml: apiVersion %q kind %q", dir, k.APIVersion, k.Kind)
	}
	return &k, nil
}

// loadBase reads the kustomize base the way kubectl kustomize does for the
// parts it uses: every listed resource must exist in the directory and
// decode strictly; every manifest in the directory must be listed.
func loadBase(t *testing.T, dir string) []k8sObj {
	t.Helper()
	k, err := loadKustomization(dir)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	var objs []k8sObj
	for _, r := range k.Resources {
		if filepath.IsAbs(r) || strings.Contains(r, "..") || strings.Contains(r, "/") {
			t.Errorf("resource %q: the base lists files of its own directory only (kustomize refuses files outside its root)", r)
			continue
		}
		listed[r] = true
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
			continue
		}
		o, err := decodeK8s(r, data)
		if err != nil {
			t.Error(err)
			continue
		}
		objs = append(objs, o...)
	}
	all, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range all {
		if b := filepath.Base(f); b != "kustomization.yaml" && !listed[b] {
			t.Errorf("%s is not in kustomization.yaml's resources: kubectl apply -k would leave it out", b)
		}
	}
	return objs
}

// k8sSet is a decoded deployment: its objects by kind and its pods.
type k8sSet struct {
	objs       []k8sObj
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	services   map[string]*corev1.Service
	pods       []*k8sPod
}

// k8sPod is the pod template of a Deployment or StatefulSet.
type k8sPod struct {
	where    string
	name     string
	kind     string
	replicas *int32
	selector map[string]string
	labels   map[string]string
	spec     *corev1.PodSpec
	vols     map[string]corev1.Volume // spec.volumes and the claim templates
	claims   map[string]bool          // volumes that are claim templates
	svcName  string                   // a StatefulSet's serviceName
}

func newK8sSet(objs []k8sObj) *k8sSet {
	s := &k8sSet{objs: objs, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}, services: map[string]*corev1.Service{}}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.ConfigMap:
			s.configMaps[v.Name] = v
		case *corev1.Secret:
			s.secrets[v.Name] = v
		case *corev1.Service:
			s.services[v.Name] = v
		case *appsv1.Deployment:
			s.pods = append(s.pods, newK8sPod(o.where, "Deployment", v.Name, v.Spec.Replicas, v.Spec.Selector, &v.Spec.Template, nil, ""))
		case *appsv1.StatefulSet:
			s.pods = append(s.pods, newK8sPod(o.where, "StatefulSet", v.Name, v.Spec.Replicas, v.Spec.Selector, &v.Spec.Template, v.Spec.VolumeClaimTemplates, v.Spec.ServiceName))
		}
	}
	return s
}

func newK8sPod(where, kind, name string, replicas *int32, sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, claims []corev1.PersistentVolumeClaim, svc string) *k8sPod {
	p := &k8sPod{where: where, kind: kind, name: name, replicas: replicas, labels: tmpl.Labels, spec: &tmpl.Spec,
		vols: map[string]corev1.Volume{}, claims: map[string]bool{}, svcName: svc}
	if sel != nil {
		p.selector = sel.MatchLabels
	}
	for _, v := range tmpl.Spec.Volumes {
		p.vols[v.Name] = v
	}
	for _, c := range claims {
		p.vols[c.Name] = corev1.Volume{Name: c.Name, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name}}}
		p.claims[c.Name] = true
	}
	return p
}

// allContainers lists init containers first, as the kubelet runs them.
func (p *k8sPod) allContainers() []*corev1.Container {
	var out []*corev1.Container
	for i := range p.spec.InitContainers {
		out = append(out, &p.spec.InitContainers[i])
	}
	for i := range p.spec.Containers {
		out = append(out, &p.spec.Containers[i])
	}
	return out
}

func (p *k8sPod) isInit(c *corev1.Container) bool {
	for i := range p.spec.InitContainers {
		if &p.spec.InitContainers[i] == c {
			return true
		}
	}
	return false
}

// k8sFile is one file of a ConfigMap, Secret or projected volume.
type k8sFile struct {
	secret bool
	object string // the ConfigMap or Secret
	key    string
	mode   os.FileMode // as declared (item mode, else defaultMode, else 0644)
}

// volumeFiles lists the files of a ConfigMap, Secret or projected volume by
// their path in the volume (nil for other volumes). An object of the set
// contributes its keys (all of them, or its items); an object created
// outside the manifests must list its keys as items, so that the manifest
// declares what it expects.
func (s *k8sSet) volumeFiles(v corev1.Volume) (map[string]k8sFile, error) {
	files := map[string]k8sFile{}
	add := func(secret bool, object string, items []corev1.KeyToPath, def *int32) error {
		var keys []string
		known := false
		if secret {
			if o, ok := s.secrets[object]; ok {
				known = true
				for k := range o.Data {
					keys = append(keys, k)
				}
				for k := range o.StringData {
					keys = append(keys, k)
				}
			}
		} else if o, ok := s.configMaps[object]; ok {
			known = true
			for k := range o.Data {
				keys = append(keys, k)
			}
			for k := range o.BinaryData {
				keys = append(keys, k)
			}
		}
		mode := os.FileMode(0o644)
		if def != nil {
			mode = os.FileMode(*def)
		}
		what := map[bool]string{false: "ConfigMap", true: "Secret"}[secret]
		if len(items) == 0 {
			if !known {
				return fmt.Errorf("volume %s: %s %s is not in the manifests: list its keys under items", v.Name, what, object)
			}
			for _, k := range keys {
				files[k] = k8sFile{secret, object, k, mode}
			}
			return nil
		}
		for _, it := range items {
			if known && !slices.Contains(keys, it.Key) {
				return fmt.Errorf("volume %s: %s %s has no key %q (keys: %s)", v.Name, what, object, it.Key, strings.Join(keys, ", "))
			}
			m := mode
			if it.Mode != nil {
				m = os.FileMode(*it.Mode)
			}
			if _, dup := files[it.Path]; dup {
				return fmt.Errorf("volume %s: two files at %s", v.Name, it.Path)
			}
			files[it.Path] = k8sFile{secret, object, it.Key, m}
		}
		return nil
	}
	var err error
	switch {
	case v.ConfigMap != nil:
		err = add(false, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.DefaultMode)
	case v.Secret != nil:
		err = add(true, v.Secret.SecretName, v.Secret.Items, v.Secret.DefaultMode)
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			switch {
			case src.ConfigMap != nil:
				err = add(false, src.ConfigMap.Name, src.ConfigMap.Items, v.Projected.DefaultMode)
			case src.Secret != nil:
				err = add(true, src.Secret.Name, src.Secret.Items, v.Projected.DefaultMode)
			default:
				err = fmt.Errorf("volume %s: a projected source other than a ConfigMap or Secret", v.Name)
			}
			if err != nil {
				break
			}
		}
	default:
		return nil, nil
	}
	return files, err
}

// The kubelet's model of volume files. It writes ConfigMap, Secret and
// projected files as root. With a pod fsGroup it then changes their group to
// fsGroup and adds group read (mode |= 0440: the ownership change of a
// read-only volume); so a Secret item of mode 0400 becomes root:fsGroup 0440.
// Without fsGroup it stays root:root 0400, which no other user can read.
// Writable volumes (emptyDir, persistent) get group fsGroup, setgid and
// group read-write on every file (mode |= 0660, directories |= 0770) at each
// mount, unless fsGroupChangePolicy is OnRootMismatch and the root already
// has them.
type fileOwner struct {
	uid, gid int64
	mode     os.FileMode
}

func kubeletFile(mode os.FileMode, fsGroup *int64) fileOwner {
	if fsGroup == nil {
		return fileOwner{0, 0, mode}
	}
	return fileOwner{0, *fsGroup, mode | 0o440}
}

// canRead reports whether a process of uid with groups gids may read f.
func canRead(f fileOwner, uid int64, gids []int64) bool {
	switch {
	case uid == 0:
		return true
	case f.uid == uid:
		return f.mode&0o400 != 0
	case slices.Contains(gids, f.gid):
		return f.mode&0o040 != 0
	default:
		return f.mode&0o004 != 0
	}
}

// identity returns the user and groups a container runs as.
func (p *k8sPod) identity(c *corev1.Container) (uid int64, gids []int64, ok bool) {
	psc := p.spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	u, g := psc.RunAsUser, psc.RunAsGroup
	if csc.RunAsUser != nil {
		u = csc.RunAsUser
	}
	if csc.RunAsGroup != nil {
		g = csc.RunAsGroup
	}
	if u == nil || g == nil {
		return 0, nil, false
	}
	gids = append(gids, *g)
	if psc.FSGroup != nil {
		gids = append(gids, *psc.FSGroup)
	}
	return *u, append(gids, psc.SupplementalGroups...), true
}

// mount returns the container's mount holding path (the longest mount
// path that contains it), its volume and the path inside the volume.
func (p *k8sPod) mount(c *corev1.Container, pth string) (corev1.VolumeMount, corev1.Volume, string, bool) {
	best := -1
	for i, m := range c.VolumeMounts {
		if (pth == m.MountPath || strings.HasPrefix(pth, strings.TrimSuffix(m.MountPath, "/")+"/")) &&
			(best < 0 || len(m.MountPath) > len(c.VolumeMounts[best].MountPath)) {
			best = i
		}
	}
	if best < 0 {
		return corev1.VolumeMount{}, corev1.Volume{}, "", false
	}
	m := c.VolumeMounts[best]
	rel := strings.TrimPrefix(strings.TrimPrefix(pth, strings.TrimSuffix(m.MountPath, "/")), "/")
	if m.SubPath != "" {
		rel = path.Join(m.SubPath, rel)
	}
	v, ok := p.vols[m.Name]
	return m, v, rel, ok
}

// initCopy is a file an init container installs into a volume:
// `install -m MODE SRC... DIR/`, the only init command the example uses.
type initCopy struct {
	container string
	src       string // path in the init container
	volume    string // destination volume
	rel       string // path in that volume
	mode      os.FileMode
}

// parseInstall reads `install -m MODE SRC... DIR/` (busybox's and GNU's
// common form; DIR must end in / so the copies keep their names).
func parseInstall(argv []string) (mode os.FileMode, srcs []string, dir string, err error) {
	if len(argv) < 5 || path.Base(argv[0]) != "install" || argv[1] != "-m" {
		return 0, nil, "", fmt.Errorf("%q is not install -m MODE SRC... DIR/", argv)
	}
	var m uint64
	if _, err := fmt.Sscanf(argv[2], "%o", &m); err != nil || m > 0o777 {
		return 0, nil, "", fmt.Errorf("install -m %q: not an octal mode", argv[2])
	}
	dir = argv[len(argv)-1]
	if !strings.HasSuffix(dir, "/") {
		return 0, nil, "", fmt.Errorf("install destination %q: end it with / (a directory)", dir)
	}
	return os.FileMode(m), argv[3 : len(argv)-1], dir, nil
}

// argv is a container's command line: command and args, or the image's
// entrypoint (entrypoints: image name -> argv) and args.
func argv(c *corev1.Container, entrypoints map[string][]string) []string {
	if len(c.Command) > 0 {
		return append(slices.Clone(c.Command), c.Args...)
	}
	return append(slices.Clone(entrypoints[imageName(c.Image)]), c.Args...)
}

// imageName is the last path element of an image reference without tag or
// digest: mcbn-proxy for REGISTRY/mcbn-proxy@sha256:...
func imageName(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	ref = path.Base(ref)
	ref, _, _ = strings.Cut(ref, ":")
	return ref
}

func isMCBN(c *corev1.Container) bool { return strings.HasPrefix(imageName(c.Image), "mcbn-") }

// imageEntrypoints reads the generic images' entrypoints from build/image,
// so the contract follows the images the tool builds.
func imageEntrypoints(t *testing.T) map[string][]string {
	t.Helper()
	src := readExample(t, "..", "build", "image", "image.go")
	out := map[string][]string{}
	for _, m := range regexp.MustCompile(`\{"(mcbn-[a-z]+)", \[\]string\{([^}]*)\}\}`).FindAllStringSubmatch(src, -1) {
		var words []string
		for _, w := range strings.Split(m[2], ",") {
			words = append(words, strings.Trim(strings.TrimSpace(w), `"`))
		}
		out[m[1]] = words
	}
	if len(out["mcbn-proxy"]) == 0 || len(out["mcbn-shareholder"]) == 0 {
		t.Fatalf("build/image/image.go: no entrypoints for mcbn-proxy and mcbn-shareholder found (%v)", out)
	}
	return out
}

// absPathRE finds absolute paths of at least two elements in config text
// (a file:// URL's path included; URLs' host parts are not paths).
var absPathRE = regexp.MustCompile(`(?:^|[\s"'\[,{=]|file://)(/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+)`)

func absPaths(text string) []string {
	var out []string
	for _, m := range absPathRE.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// flagValue returns the value after flag in args.
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// checkPath checks one path container c reads or writes: it lies in a
// volume c mounts; in a ConfigMap, Secret or projected volume it is one of
// the declared keys; in a read-only emptyDir an init container installs it;
// a writable emptyDir or persistent volume may hold anything c creates.
func (s *k8sSet) checkPath(p *k8sPod, c *corev1.Container, pth string, copies []initCopy) error {
	m, v, rel, ok := p.mount(c, pth)
	if !ok {
		return fmt.Errorf("container %s: %s is in no volume it mounts", c.Name, pth)
	}
	files, err := s.volumeFiles(v)
	if err != nil {
		return err
	}
	switch {
	case rel == "":
		// the volume's own directory (e.g. a web root)
	case files != nil:
		if _, ok := files[rel]; !ok {
			var have []string
			for k := range files {
				have = append(have, k)
			}
			sort.Strings(have)
			return fmt.Errorf("container %s: %s: volume %s mounted at %s holds %s, not %s", c.Name, pth, v.Name, m.MountPath, strings.Join(have, ", "), rel)
		}
	case v.EmptyDir != nil || v.PersistentVolumeClaim != nil:
		if m.ReadOnly {
			for _, cp := range copies {
				if cp.volume == v.Name && cp.rel == rel {
					return nil
				}
			}
			return fmt.Errorf("container %s: %s: volume %s is read-only here and no init container installs %s", c.Name, pth, v.Name, rel)
		}
	default:
		return fmt.Errorf("container %s: %s: volume %s is of a kind the contract does not know", c.Name, pth, v.Name)
	}
	return nil
}

// initCopies lists what the pod's init containers install, checking that
// each reads its sources from its own mounts and can read them.
func (s *k8sSet) initCopies(p *k8sPod) ([]initCopy, []error) {
	var out []initCopy
	var errs []error
	for i := range p.spec.InitContainers {
		c := &p.spec.InitContainers[i]
		mode, srcs, dir, err := parseInstall(append(slices.Clone(c.Command), c.Args...))
		if err != nil {
			errs = append(errs, fmt.Errorf("init container %s: %v", c.Name, err))
			continue
		}
		m, v, rel, ok := p.mount(c, strings.TrimSuffix(dir, "/"))
		if !ok || m.ReadOnly || v.EmptyDir == nil {
			errs = append(errs, fmt.Errorf("init container %s: destination %s is not a writable emptyDir it mounts", c.Name, dir))
			continue
		}
		for _, src := range srcs {
			out = append(out, initCopy{container: c.Name, src: src, volume: v.Name, rel: path.Join(rel, path.Base(src)), mode: mode})
		}
	}
	return out, errs
}

// mcbnRole names what an mcbn container runs: "proxy", "shareholder",
// "dev-attester", or "" for anything else.
func mcbnRole(av []string) string {
	if len(av) < 3 || av[0] != "/mcbn" {
		return ""
	}
	switch {
	case av[1] == "proxy" && (av[2] == "client" || av[2] == "server"):
		return "proxy"
	case av[1] == "shareholder" && av[2] == "serve":
		return "shareholder"
	case av[1] == "dev" && av[2] == "attester":
		return "dev-attester"
	}
	return ""
}

// fileText returns the text of a ConfigMap file container c sees at pth.
func (s *k8sSet) fileText(p *k8sPod, c *corev1.Container, pth string) (string, error) {
	_, v, rel, ok := p.mount(c, pth)
	if !ok {
		return "", fmt.Errorf("container %s: %s is in no volume it mounts", c.Name, pth)
	}
	files, err := s.volumeFiles(v)
	if err != nil {
		return "", err
	}
	f, ok := files[rel]
	if !ok || f.secret {
		return "", fmt.Errorf("container %s: %s is not a ConfigMap file", c.Name, pth)
	}
	cm, ok := s.configMaps[f.object]
	if !ok {
		return "", fmt.Errorf("container %s: %s comes from ConfigMap %s, which is not in the manifests", c.Name, pth, f.object)
	}
	return cm.Data[f.key], nil
}

// shareholderInfo is what the proxies must agree with about one shareholder.
type shareholderInfo struct {
	where    string
	audience string
	port     string
	service  string
}

// checkK8s checks a deployment. rendered: image digests and pins are filled
// in (kubectl kustomize of setup.sh's overlay); otherwise placeholders are
// allowed where setup.sh fills them.
func checkK8s(t *testing.T, s *k8sSet, rendered bool, entry map[string][]string) {
	t.Helper()
	if len(s.pods) == 0 {
		t.Fatal("no Deployment or StatefulSet")
	}
	digestRE := regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	shareholders := map[string]shareholderInfo{} // by participant name
	type proxyUse struct {
		where string
		sh    gather.ShareholderConfig
	}
	var uses []proxyUse
	for _, p := range s.pods {
		errorf := func(format string, a ...any) { t.Helper(); t.Errorf(p.where+": "+format, a...) }
		for k, v := range p.selector {
			if p.labels[k] != v {
				errorf("selector %s=%s does not match the pod labels %v", k, v, p.labels)
			}
		}
		if len(p.selector) == 0 {
			errorf("no selector.matchLabels")
		}
		psc := p.spec.SecurityContext
		if psc == nil {
			errorf("no pod securityContext")
			continue
		}
		if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			errorf("pod securityContext.runAsNonRoot is not true")
		}
		if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			errorf("pod seccompProfile is not RuntimeDefault")
		}
		if b := p.spec.AutomountServiceAccountToken; b == nil || *b {
			errorf("automountServiceAccountToken is not false: no pod here needs API credentials")
		}
		// Service links put variables in every container; a Service named
		// mcbn-proxy would inject MCBN_PROXY_* names the proxy refuses.
		if b := p.spec.EnableServiceLinks; b == nil || *b {
			errorf("enableServiceLinks is not false")
		}
		copies, errs := s.initCopies(p)
		for _, err := range errs {
			errorf("%v", err)
		}
		mounted := map[string]bool{}
		for _, c := range p.allContainers() {
			cerr := func(format string, a ...any) {
				t.Helper()
				errorf("container %s: "+format, append([]any{c.Name}, a...)...)
			}
			switch {
			case digestRE.MatchString(c.Image):
			case !rendered && isMCBN(c) && strings.HasSuffix(c.Image, "@sha256:REPLACE_WITH_DIGEST"):
			default:
				cerr("image %q is not pinned by digest", c.Image)
			}
			sc := c.SecurityContext
			if sc == nil {
				cerr("no securityContext")
				continue
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				cerr("allowPrivilegeEscalation is not false")
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				cerr("readOnlyRootFilesystem is not true")
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				cerr("capabilities do not drop ALL")
			}
			if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
				cerr("runAsNonRoot is false")
			}
			uid, gids, ok := p.identity(c)
			if !ok {
				cerr("no runAsUser and runAsGroup (pod or container)")
			}
			if isMCBN(c) && uid != 65532 {
				cerr("runs as %d; the mcbn images' user is 65532", uid)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, okReq := c.Resources.Requests[r]
				lim, okLim := c.Resources.Limits[r]
				if !okReq || !okLim {
					cerr("no %s request and limit", r)
				} else if req.Cmp(lim) > 0 {
					cerr("%s request %s above its limit %s", r, req.String(), lim.String())
				}
			}
			av := argv(c, entry)
			role := mcbnRole(av)
			if isMCBN(c) && role == "" {
				cerr("runs %q, which is no mcbn role the contract knows", av)
			}
			if role == "proxy" || role == "shareholder" {
				for name, pr := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
					if pr == nil || pr.HTTPGet == nil {
						cerr("no HTTP %s probe", name)
						continue
					}
					if !hasPort(c, pr.HTTPGet.Port.String(), corev1.ProtocolTCP) {
						cerr("%s probe port %s is not a TCP port of the container", name, pr.HTTPGet.Port.String())
					}
				}
			}
			for _, m := range c.VolumeMounts {
				v, ok := p.vols[m.Name]
				if !ok {
					cerr("mounts %s, which is no volume of the pod", m.Name)
					continue
				}
				mounted[m.Name] = true
				files, err := s.volumeFiles(v)
				if err != nil {
					cerr("%v", err)
				}
				if sec := secretsOf(v); len(sec) > 0 && !p.isInit(c) {
					cerr("mounts Secret %s: the kubelet writes its files root-owned, so 0400 is unreadable by uid %d and fsGroup makes them group-readable, which mcbn refuses for shares and keys; let an init container copy them", strings.Join(sec, ", "), uid)
				}
				for rel, f := range files {
					if !f.secret {
						continue
					}
					if fo := kubeletFile(f.mode, psc.FSGroup); !canRead(fo, uid, gids) {
						cerr("cannot read %s/%s: the kubelet makes it uid %d gid %d mode %04o", m.MountPath, rel, fo.uid, fo.gid, fo.mode)
					}
				}
				if p.claims[m.Name] {
					if m.ReadOnly {
						cerr("mounts the persistent volume %s read-only", m.Name)
					}
					if psc.FSGroup == nil {
						cerr("persistent volume %s without fsGroup: a fresh volume's root is root-owned, not writable by %d", m.Name, uid)
					}
					if psc.FSGroupChangePolicy == nil || *psc.FSGroupChangePolicy != corev1.FSGroupChangeOnRootMismatch {
						cerr("persistent volume %s without fsGroupChangePolicy OnRootMismatch: the kubelet would add group rw to the audit log at every mount, and the daemon refuses a group-readable audit log", m.Name)
					}
				}
			}
			for i, a := range av {
				if i > 0 && strings.HasPrefix(a, "/") && !strings.ContainsAny(a, " ;|") {
					if err := s.checkPath(p, c, a, copies); err != nil {
						errorf("%v", err)
					}
				}
			}
			cfgPath := flagValue(av, "--config")
			if role != "proxy" && role != "shareholder" {
				continue
			}
			if cfgPath == "" {
				cerr("no --config")
				continue
			}
			text, err := s.fileText(p, c, cfgPath)
			if err != nil {
				errorf("%v", err)
				continue
			}
			for _, pth := range absPaths(text) {
				if err := s.checkPath(p, c, pth, copies); err != nil {
					errorf("%s: %v", cfgPath, err)
				}
			}
			switch role {
			case "proxy":
				for _, sh := range checkProxyConfig(t, s, p, c, av[2], cfgPath, text, rendered) {
					uses = append(uses, proxyUse{p.where, sh})
				}
			case "shareholder":
				info, name := checkShareholderConfig(t, s, p, c, cfgPath, text)
				if name != "" {
					shareholders[name] = info
				}
			}
		}
		for name := range p.vols {
			if !mounted[name] {
				errorf("volume %s is mounted by no container", name)
			}
		}
		// The copies are owner-only and owned by whoever reads them.
		for _, cp := range copies {
			if cp.mode&0o077 != 0 || cp.mode&0o400 == 0 {
				errorf("init container %s installs %s with mode %04o: owner-only (0400 or 0600) is what mcbn accepts", cp.container, cp.rel, cp.mode)
			}
			var init *corev1.Container
			for i := range p.spec.InitContainers {
				if p.spec.InitContainers[i].Name == cp.container {
					init = &p.spec.InitContainers[i]
				}
			}
			iu, _, _ := p.identity(init)
			for _, c := range p.spec.Containers {
				for _, m := range c.VolumeMounts {
					if u, _, _ := p.identity(&c); m.Name == cp.volume && u != iu {
						errorf("container %s (uid %d) reads %s, which init container %s installs as uid %d, mode %04o", c.Name, u, cp.rel, cp.container, iu, cp.mode)
					}
				}
			}
		}
		if p.kind == "StatefulSet" {
			if p.replicas == nil || *p.replicas != 1 {
				errorf("replicas is not 1: a shareholder's audit log is one hash chain with one writer")
			}
			svc, ok := s.services[p.svcName]
			if !ok || svc.Spec.ClusterIP != corev1.ClusterIPNone {
				errorf("serviceName %q is not a headless Service of the deployment", p.svcName)
			}
		}
	}
	for _, svc := range s.services {
		var target *k8sPod
		for _, p := range s.pods {
			if len(svc.Spec.Selector) > 0 && matches(svc.Spec.Selector, p.labels) {
				target = p
			}
		}
		if target == nil {
			t.Errorf("Service %s selects no pod", svc.Name)
			continue
		}
		for _, sp := range svc.Spec.Ports {
			found := false
			for _, c := range target.spec.Containers {
				found = found || hasPort(&c, sp.TargetPort.String(), sp.Protocol)
			}
			if !found {
				t.Errorf("Service %s port %s targets %s/%s, which no container of %s has", svc.Name, sp.Name, sp.TargetPort.String(), sp.Protocol, target.name)
			}
		}
	}
	// What the proxies expect of each shareholder is what it is.
	for _, u := range uses {
		info, ok := shareholders[u.sh.Name]
		if !ok {
			t.Errorf("%s: shareholder %s is not deployed", u.where, u.sh.Name)
			continue
		}
		aud := u.sh.Audience
		if aud == "" {
			aud = u.sh.URL
		}
		if aud != info.audience {
			t.Errorf("%s: asks tokens for %s with audience %s, but %s verifies audience %s", u.where, u.sh.Name, aud, info.where, info.audience)
		}
		if want := "https://" + info.service + ":" + info.port; u.sh.URL != want {
			t.Errorf("%s: %s's URL is %s, but it is served at %s", u.where, u.sh.Name, u.sh.URL, want)
		}
	}
	for _, cm := range s.configMaps {
		for key, text := range cm.Data {
			if strings.HasSuffix(key, ".cel") {
				if _, err := shareholder.CompilePolicy(text, 0); err != nil {
					t.Errorf("ConfigMap %s: %s: %v", cm.Name, key, err)
				}
			}
		}
	}
}

// secretsOf names the Secrets a volume projects.
func secretsOf(v corev1.Volume) []string {
	var out []string
	if v.Secret != nil {
		out = append(out, v.Secret.SecretName)
	}
	if v.Projected != nil {
		for _, src := range v.Projected.Sources {
			if src.Secret != nil {
				out = append(out, src.Secret.Name)
			}
		}
	}
	return out
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// hasPort reports whether c has a port named or numbered port with proto.
func hasPort(c *corev1.Container, port string, proto corev1.Protocol) bool {
	for _, cp := range c.Ports {
		pp := cp.Protocol
		if pp == "" {
			pp = corev1.ProtocolTCP
		}
		if pp == proto && (cp.Name == port || fmt.Sprint(cp.ContainerPort) == port) {
			return true
		}
	}
	return false
}

// checkProxyConfig validates a proxy config as `mcbn proxy MODE --config`
// loads it (no file is read: the ConfigMap text is given), checks that its
// attestation socket is the one a dev attester of the pod serves, that each
// remote address is a Service of the deployment, and returns its
// shareholders.
func checkProxyConfig(t *testing.T, s *k8sSet, p *k8sPod, c *corev1.Container, mode, cfgPath, text string, rendered bool) []gather.ShareholderConfig {
	t.Helper()
	where := p.where + ": " + cfgPath
	cfg, err := proxy.LoadConfig(proxy.Mode(mode), proxy.LoadOptions{
		Flags:   map[string]string{"config": cfgPath},
		Read:    func(string) ([]byte, error) { return []byte(text), nil },
		Getenv:  func(string) (string, bool) { return "", false },
		Environ: func() []string { return nil },
	})
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	for _, r := range cfg.Routes {
		ep := r.ConnectEndpoint()
		if mode != "client" {
			continue
		}
		host, port := ep.Host, fmt.Sprint(ep.Port)
		proto := corev1.ProtocolTCP
		if ep.Network() == "udp" {
			proto = corev1.ProtocolUDP
		}
		svc, ok := s.services[host]
		if !ok {
			t.Errorf("%s: route %s connects to %s, which is no Service of the deployment", where, r.Name, r.Connect)
			continue
		}
		found := false
		for _, sp := range svc.Spec.Ports {
			found = found || (fmt.Sprint(sp.Port) == port && sp.Protocol == proto)
		}
		if !found {
			t.Errorf("%s: route %s connects to %s, but Service %s has no %s port %s", where, r.Name, r.Connect, host, proto, port)
		}
	}
	targets, err := gather.ParseCheckTargets([]byte(text))
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	var out []gather.ShareholderConfig
	for _, tg := range targets {
		att := tg.Config.Attestation
		if att.Provider != "dev" {
			// No Kubernetes node runs the Confidential Space launcher, so
			// its socket is nowhere; the dev attester is all that works here.
			t.Errorf("%s: %s: attestation provider %q: on Kubernetes only the dev attester (provider dev) can answer", where, tg.Where, att.Provider)
			continue
		}
		pm, pv, prel, ok := p.mount(c, att.Socket)
		if !ok || pv.EmptyDir == nil || pm.ReadOnly {
			t.Errorf("%s: attestation socket %s is not in a shared emptyDir the proxy mounts", where, att.Socket)
		}
		served := false
		for _, o := range p.spec.Containers {
			if mcbnRole(argv(&o, nil)) != "dev-attester" || flagValue(o.Args, "--socket") == "" {
				continue
			}
			am, av, arel, ok := p.mount(&o, flagValue(o.Args, "--socket"))
			served = served || (ok && av.Name == pv.Name && arel == prel && !am.ReadOnly)
		}
		if !served {
			t.Errorf("%s: no dev attester of the pod serves the attestation socket %s", where, att.Socket)
		}
		for _, sh := range tg.Config.Shareholders {
			if rendered || !strings.HasSuffix(sh.Pin, "_PIN") {
				if _, err := shareholder.ParsePin(sh.Pin); err != nil {
					t.Errorf("%s: %s pin: %v", where, sh.Name, err)
				}
			}
			out = append(out, sh)
		}
	}
	return out
}

// checkShareholderConfig decodes a shareholder config strictly (every key
// one the daemon knows) and returns what the proxies must agree with.
func checkShareholderConfig(t *testing.T, s *k8sSet, p *k8sPod, c *corev1.Container, cfgPath, text string) (shareholderInfo, string) {
	t.Helper()
	where := p.where + ": " + cfgPath
	var cfg shareholder.Config
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Errorf("%s: %v", where, err)
		return shareholderInfo{}, ""
	}
	if line, err := shareholder.ParseConsentLine([]byte(text)); err != nil || line != cfg.Consent {
		t.Errorf("%s: consent line %q (%v), YAML value %q", where, line, err, cfg.Consent)
	}
	_, port, err := splitHostPort(cfg.Listen)
	if err != nil {
		t.Errorf("%s: listen: %v", where, err)
	}
	if !hasPort(c, port, corev1.ProtocolTCP) {
		t.Errorf("%s: listens on port %s, which the container does not declare", where, port)
	}
	svc := ""
	for _, sv := range s.services {
		if matches(sv.Spec.Selector, p.labels) {
			svc = sv.Name
		}
	}
	if cfg.TLS.Cert == "" || cfg.TLS.Key == "" {
		t.Errorf("%s: no tls.cert and tls.key: a generated certificate changes at every start and breaks every proxy's pin", where)
	}
	// The audit log must outlive the pod: a persistent volume.
	if _, v, _, ok := p.mount(c, cfg.AuditLog); !ok || !p.claims[v.Name] {
		t.Errorf("%s: audit_log %s is not on a persistent volume: a rescheduled pod would lose the hash chain", where, cfg.AuditLog)
	}
	if cfg.Verifier.Issuer == "https://confidentialcomputing.googleapis.com" {
		t.Errorf("%s: verifies Confidential Space tokens, which no Kubernetes pod can obtain", where)
	}
	return shareholderInfo{where: where, audience: cfg.Verifier.Audience, port: port, service: svc}, cfg.Name
}

func splitHostPort(s string) (string, string, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", "", fmt.Errorf("%q is not host:port", s)
	}
	return s[:i], s[i+1:], nil
}

// The example as shipped: the base decodes strictly and lists every
// manifest; the deployment passes the contract (checkK8s) with placeholders
// only where setup.sh fills them; the three shareholders differ only in
// their names; and the README says which attestation this can use.
func TestKubernetesManifests(t *testing.T) {
	objs := loadBase(t, k8sDir)
	checkK8s(t, newK8sSet(objs), false, imageEntrypoints(t))

	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind]++
	}
	if want := map[string]int{"ConfigMap": 5, "StatefulSet": 3, "Deployment": 2, "Service": 4}; fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
	alice := readExample(t, k8sDir, "shareholder-alice.yaml")
	for _, p := range []string{"bob", "carol"} {
		if got, want := readExample(t, k8sDir, "shareholder-"+p+".yaml"), strings.ReplaceAll(alice, "alice", p); got != want {
			t.Errorf("shareholder-%s.yaml is not shareholder-alice.yaml with alice replaced by %s (regenerate it with sed)", p, p)
		}
	}

	// Every placeholder is one setup.sh fills in.
	setup := readExample(t, k8sDir, "setup.sh")
	placeholders := map[string]bool{}
	for _, f := range []string{"shareholder-alice.yaml", "shareholder-bob.yaml", "shareholder-carol.yaml", "server.yaml", "client.yaml"} {
		for _, m := range regexp.MustCompile(`sha256:[A-Z][A-Z_]*|REGISTRY/[a-z-]+`).FindAllString(readExample(t, k8sDir, f), -1) {
			placeholders[m] = true
		}
	}
	for ph := range placeholders {
		var filled bool
		switch {
		case strings.HasSuffix(ph, "_PIN"):
			name := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(ph, "sha256:"), "_PIN"))
			filled = strings.Contains(setup, "s/sha256:${P}_PIN/$pin/g") && regexp.MustCompile(`for p in [a-z ]*\b`+name+`\b`).MatchString(setup)
		case ph == "sha256:PROXY_IMAGE_DIGEST":
			filled = strings.Contains(setup, `s/sha256:PROXY_IMAGE_DIGEST/$proxy_digest/g`)
		case ph == "sha256:REPLACE_WITH_DIGEST":
			filled = true // the images, below
		case strings.HasPrefix(ph, "REGISTRY/"):
			filled = strings.Contains(setup, "  - name: "+ph+"\n")
		}
		if !filled {
			t.Errorf("placeholder %s: setup.sh does not fill it in", ph)
		}
	}
	if len(placeholders) != 7 {
		t.Errorf("placeholders %v: want the three pins, the proxy digest, two images and their digest", placeholders)
	}
	mustContain(t, "kubernetes/README.md", readExample(t, k8sDir, "README.md"),
		"TEST cluster", "dev attester", "TDX", "SEV-SNP", "not attestation", "kubectl apply -k", "Helm",
		"sh examples/kubernetes/setup.sh", "mcbn shareholder pin", "OnRootMismatch", "fsGroup")
}

// The kubelet's Secret files against our own share check, for the three
// ways of mounting a share: the old manifest's Secret 0400 with fsGroup is
// group-readable and psk.LoadShare refuses it; without fsGroup it is
// root-owned and uid 65532 cannot read it; the init container's copy
// (65532, 0400) is both readable and accepted. checkK8s holds the manifests
// to the third.
func TestKubeletSecretFiles(t *testing.T) {
	_, shares, err := psk.Split("k8s", 2, []string{"alice", "bob"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := psk.MarshalShare(shares[0])
	if err != nil {
		t.Fatal(err)
	}
	fsGroup := int64(65532)
	for _, c := range []struct {
		name           string
		file           fileOwner
		read, accepted bool
	}{
		{"Secret 0400 with fsGroup", kubeletFile(0o400, &fsGroup), true, false},
		{"Secret 0400 without fsGroup", kubeletFile(0o400, nil), false, true},
		{"init container copy 0400", fileOwner{65532, 65532, 0o400}, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "share.json")
			writeFile(t, p, string(data), 0o600)
			if err := os.Chmod(p, c.file.mode); err != nil {
				t.Fatal(err)
			}
			_, err := psk.LoadShare(p)
			if read := canRead(c.file, 65532, []int64{65532, fsGroup}); read != c.read || (err == nil) != c.accepted {
				t.Fatalf("mode %04o uid %d gid %d: readable by 65532 %v (want %v), psk.LoadShare: %v (want accepted %v)",
					c.file.mode, c.file.uid, c.file.gid, read, c.read, err, c.accepted)
			}
		})
	}
}

// decodeAll reads every document of a multi-document YAML file.
func decodeAll(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []map[string]any
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

// get walks nested maps and lists: get(d, "spec", "template", 0).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// cloudbuild.yaml: every step names an image and arguments; the build step
// runs build/image with --out and --push; every flag it passes is one
// build/image defines; every ./path it names exists; every user
// substitution it uses is defined.
func TestCloudBuild(t *testing.T) {
	docs := decodeAll(t, filepath.Join("..", "cloudbuild.yaml"))
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	cb := docs[0]
	raw := readExample(t, "..", "cloudbuild.yaml")
	subs, _ := cb["substitutions"].(map[string]any)
	for _, m := range regexp.MustCompile(`\$\{(_[A-Z0-9_]+)\}`).FindAllStringSubmatch(raw, -1) {
		if _, ok := subs[m[1]]; !ok {
			t.Errorf("substitution %s used but not defined", m[1])
		}
	}
	flags := readExample(t, "..", "build", "image", "main.go")
	steps := cb["steps"].([]any)
	ids := map[string]bool{}
	sawPush := false
	for i, s := range steps {
		id, _ := get(s, "id").(string)
		ids[id] = true
		if get(s, "name") == nil {
			t.Errorf("step %d has no builder image", i)
		}
		waits, _ := get(s, "waitFor").([]any)
		for _, w := range waits {
			if !ids[w.(string)] {
				t.Errorf("step %s waits for unknown step %v", id, w)
			}
		}
		var words []string
		argv, _ := get(s, "args").([]any)
		if len(argv) == 0 {
			t.Errorf("step %s has no args", id)
		}
		for _, a := range argv {
			words = append(words, a.(string))
		}
		args := strings.Join(words, " ")
		for _, p := range regexp.MustCompile(`\./[\w./-]+`).FindAllString(args, -1) {
			if _, err := os.Stat(filepath.Join("..", strings.TrimSuffix(p, "/"))); err != nil {
				t.Errorf("step %s names %s: %v", id, p, err)
			}
		}
		if strings.Contains(args, "go run ./build/image") {
			sawPush = strings.Contains(args, "--push") && strings.Contains(args, "--out")
			run := args[strings.Index(args, "go run ./build/image"):]
			if i := strings.Index(run, "|"); i > 0 {
				run = run[:i]
			}
			for _, f := range regexp.MustCompile(`\s--([a-z]+)`).FindAllStringSubmatch(run, -1) {
				if !strings.Contains(flags, `"`+f[1]+`"`) {
					t.Errorf("step %s passes --%s, which build/image does not define", id, f[1])
				}
			}
		}
	}
	if !sawPush {
		t.Error("no step runs go run ./build/image with --out and --push")
	}
}
