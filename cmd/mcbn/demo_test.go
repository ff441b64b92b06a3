package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The lines the demo prints to try by hand start with a command that runs
// this mcbn: "mcbn" only when that is it on PATH, go run after go run (its
// binary is gone when go run ends), else the binary's full path.
func TestRunnableCommand(t *testing.T) {
	tmp := t.TempDir()
	checkout := filepath.Join(tmp, "checkout")
	os.MkdirAll(filepath.Join(checkout, "cmd", "mcbn"), 0o755)
	bin := filepath.Join(tmp, "bin dir", "mcbn") // a space: must be quoted
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.WriteFile(bin, []byte("#!/bin/sh\necho \"ran $*\"\n"), 0o755)
	other := filepath.Join(tmp, "other", "mcbn")
	os.MkdirAll(filepath.Dir(other), 0o755)
	os.WriteFile(other, []byte("#!/bin/sh\necho other\n"), 0o755)
	goRun := filepath.Join(tmp, "go-build1234", "b001", "exe", "mcbn")
	onPath := func(p string) func(string) (string, error) {
		return func(string) (string, error) { return p, nil }
	}
	notOnPath := func(string) (string, error) { return "", errors.New("not found") }
	for _, tc := range []struct {
		name, exe string
		lookPath  func(string) (string, error)
		wd, want  string
	}{
		{"installed", bin, onPath(bin), checkout, "mcbn"},
		{"another mcbn on PATH", bin, onPath(other), checkout, "'" + bin + "'"},
		{"built, not on PATH", bin, notOnPath, tmp, "'" + bin + "'"},
		{"go run in a checkout", goRun, notOnPath, checkout, "go run ./cmd/mcbn"},
		{"go run elsewhere", goRun, notOnPath, tmp, "go run github.com/mcbn/mcbn/cmd/mcbn"},
		{"relative", "mcbn", notOnPath, checkout, filepath.Join(checkout, "mcbn")},
	} {
		if got := runnableCommand(tc.exe, tc.lookPath, tc.wd, "github.com/mcbn/mcbn/cmd/mcbn"); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	// The full-path form runs from a shell, from any directory.
	cmd := exec.Command("sh", "-c", runnableCommand(bin, notOnPath, tmp, "")+" psk combine")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ran psk combine" {
		t.Fatalf("sh -c: %v %q", err, out)
	}
}

// `mcbn demo --kms` runs the mixed group (alice and bob daemons, carol a
// Cloud KMS participant against the local fakes) to the end: exit 0, the
// KMS steps narrated, carol's share left only sealed in --dir.
func TestDemoKMSFlag(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := run("demo", "--kms", "--dir", dir)
	if code != 0 {
		t.Fatalf("mcbn demo --kms: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, want := range []string{"carol is a Cloud KMS participant", "two shareholder daemons (alice, bob)",
		"carol refused: key_disabled", "carol enables her key version", "demo --kms --keep", "Done in"} {
		if !strings.Contains(out, want) {
			t.Errorf("mcbn demo --kms output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "carol.share.kms.json")); err != nil {
		t.Errorf("no sealed share for carol: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "carol.share.json")); !os.IsNotExist(err) {
		t.Errorf("carol's plain share is still in --dir (%v)", err)
	}
}
