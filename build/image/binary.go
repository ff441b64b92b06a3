package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// buildBinary compiles ./cmd/mcbn from the module in dir into out as a
// static, path-free, VCS-free binary. The environment is set explicitly so
// the builder's own GOFLAGS or CGO settings cannot leak in.
func buildBinary(ctx context.Context, dir, out, goarch, version string) error {
	cmd := exec.CommandContext(ctx, "go", "build",
		"-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X main.version="+version,
		"-o", out, "./cmd/mcbn")
	cmd.Dir = dir
	cmd.Env = append(filterEnv(os.Environ()),
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch,
		"GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=-mod=readonly", "GOEXPERIMENT=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

// moduleRoot finds the directory holding go.mod, from the working directory
// up, so the tool works from the repository root or from build/image.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// filterEnv drops the variables buildBinary sets itself.
func filterEnv(env []string) []string {
	var kept []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CGO_ENABLED", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "GOFLAGS", "GOEXPERIMENT":
			continue
		}
		kept = append(kept, kv)
	}
	return kept
}
