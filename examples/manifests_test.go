package examples_test

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/shareholder"
)

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

// The Kubernetes manifests: the expected kinds; every mcbn container pinned
// by digest, non-root, read-only, no privilege escalation; its ports the
// ones its config listens on and its Service targets; the embedded proxy
// configs parse as proxy configs and the policy compiles.
func TestKubernetesManifests(t *testing.T) {
	want := map[string][]string{
		"shareholder.yaml": {"ConfigMap", "Deployment", "Service"},
		"server.yaml":      {"ConfigMap", "Deployment", "Service"},
		"client.yaml":      {"ConfigMap", "Deployment"},
	}
	for file, kinds := range want {
		docs := decodeAll(t, filepath.Join("kubernetes", file))
		var got []string
		ports := map[int]string{}
		for _, d := range docs {
			got = append(got, d["kind"].(string))
			switch d["kind"] {
			case "Deployment":
				checkDeployment(t, file, d, ports)
			case "ConfigMap":
				checkConfigMap(t, file, d)
			case "Service":
				for _, p := range get(d, "spec", "ports").([]any) {
					tp, _ := get(p, "targetPort").(int)
					if proto := get(p, "protocol"); ports[tp] != proto {
						t.Errorf("%s: Service targets %d/%v, no container port matches", file, tp, proto)
					}
				}
			}
		}
		if strings.Join(got, ",") != strings.Join(kinds, ",") {
			t.Errorf("%s: kinds %v, want %v", file, got, kinds)
		}
	}
}

func checkDeployment(t *testing.T, file string, d map[string]any, ports map[int]string) {
	t.Helper()
	pod := get(d, "spec", "template", "spec")
	if get(pod, "securityContext", "runAsNonRoot") != true {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", file)
	}
	found := false
	for _, c := range get(pod, "containers").([]any) {
		image, _ := get(c, "image").(string)
		if !strings.Contains(image, "/mcbn-") {
			continue
		}
		found = true
		if !regexp.MustCompile(`/mcbn-(proxy|shareholder)@sha256:`).MatchString(image) {
			t.Errorf("%s: image %q is not an mcbn image pinned by digest", file, image)
		}
		sc := get(c, "securityContext")
		if get(sc, "runAsNonRoot") != true || get(sc, "readOnlyRootFilesystem") != true || get(sc, "allowPrivilegeEscalation") != false {
			t.Errorf("%s: container securityContext %v", file, sc)
		}
		if u := get(sc, "runAsUser"); u != nil && u != 65532 {
			t.Errorf("%s: runAsUser %v, the image's user is 65532", file, u)
		}
		if get(c, "readinessProbe") == nil {
			t.Errorf("%s: no readiness probe", file)
		}
		for _, p := range get(c, "ports").([]any) {
			ports[get(p, "containerPort").(int)] = get(p, "protocol").(string)
		}
	}
	if !found {
		t.Errorf("%s: no mcbn container", file)
	}
}

func checkConfigMap(t *testing.T, file string, d map[string]any) {
	t.Helper()
	for key, v := range get(d, "data").(map[string]any) {
		text := v.(string)
		switch {
		case key == "server.yaml" || key == "client.yaml":
			cfg, err := proxy.ParseConfig([]byte(text))
			if err != nil {
				t.Errorf("%s: %s: %v", file, key, err)
				continue
			}
			if string(cfg.Mode) != strings.TrimSuffix(key, ".yaml") {
				t.Errorf("%s: %s has mode %s", file, key, cfg.Mode)
			}
		case strings.HasSuffix(key, ".cel"):
			if _, err := shareholder.CompilePolicy(text, 0); err != nil {
				t.Errorf("%s: %s: %v", file, key, err)
			}
		case key == "alice.yaml":
			var m map[string]any
			if err := yaml.Unmarshal([]byte(text), &m); err != nil || m["listen"] != "0.0.0.0:8441" {
				t.Errorf("%s: %s: %v %v", file, key, err, m["listen"])
			}
		case key == "group.json":
			if !json.Valid([]byte(text)) {
				t.Errorf("%s: group.json is not JSON", file)
			}
		}
	}
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
