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

// Combinations that do not make one story are refused before anything
// starts, as a usage error (exit 2) naming the flags.
func TestDemoFlagCombinationsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rotate", "--tprf"}, "--rotate and --tprf cannot be combined"},
		{[]string{"--kms", "--tprf"}, "--kms and --tprf cannot be combined"},
		{[]string{"--kms", "--rotate"}, "--kms and --rotate cannot be combined"},
		{[]string{"--kms", "--tee", "mock-tsm"}, "--kms and --tee mock-tsm cannot be combined"},
		{[]string{"--tee", "sgx"}, `--tee "sgx": want dev or mock-tsm`},
	} {
		code, out, errs := run(append([]string{"demo"}, tc.args...)...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("mcbn demo %v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, errs, tc.want)
		}
		if strings.Contains(out, "Starting") {
			t.Errorf("mcbn demo %v started something before refusing:\n%s", tc.args, out)
		}
	}
}

// `mcbn demo --rotate --tee mock-tsm`: the rotation story on raw (mock)
// TEE evidence runs to the end with no failed request.
func TestDemoRotateFlag(t *testing.T) {
	code, out, errs := run("demo", "--rotate", "--tee", "mock-tsm", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("mcbn demo --rotate --tee mock-tsm: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, want := range []string{"mock-tsm directory", "Server first", "client /status: epochs.current = 8",
		", failed: 0", "Client_identity/7, with epoch 7's right key, is refused", "released to: mock-tsm evidence",
		"demo --rotate --tee mock-tsm --keep", "Done in"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// `mcbn demo --tprf --dkg --tee mock-tsm`: a dealer-free group, partial
// evaluations only, raw (mock) evidence: epoch 2 reached with no failed
// request, no share released, revocation still closes the network.
func TestDemoTPRFFlag(t *testing.T) {
	code, out, errs := run("demo", "--tprf", "--dkg", "--tee", "mock-tsm", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("mcbn demo --tprf --dkg --tee mock-tsm: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, want := range []string{"dealer-free ceremony (DKG)", "evaluate-only", "epoch 2 pending",
		"client /status: epochs.current = 2", ", failed: 0", "TCP: a new tunnel is refused",
		"0 shares released", "no \"released share\" line anywhere", "demo --dkg --tprf --tee mock-tsm --keep", "Done in"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
