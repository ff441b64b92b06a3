package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
)

// syncBuffer is a bytes.Buffer safe to read while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The command starts an attester whose tokens verify through the printed
// issuer and socket, and stops cleanly on a signal.
func TestDevAttesterCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	orig := devSignalContext
	devSignalContext = func() (context.Context, context.CancelFunc) { return ctx, cancel }
	defer func() { devSignalContext = orig }()

	dir := t.TempDir()
	sock := filepath.Join(dir, "t.sock")
	keyFile := filepath.Join(dir, "dev.key")
	digest := "sha256:" + strings.Repeat("ab", 32)
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- dispatch([]string{"dev", "attester", "--socket", sock, "--image-digest", digest, "--key-file", keyFile}, &stdout, &stderr)
	}()

	issuerRE := regexp.MustCompile(`issuer:\s+(http://127\.0\.0\.1:\d+)`)
	var issuer string
	for deadline := time.Now().Add(20 * time.Second); issuer == ""; {
		if m := issuerRE.FindStringSubmatch(stdout.String()); m != nil {
			issuer = m[1]
			break
		}
		select {
		case rc := <-done:
			t.Fatalf("command exited %d: %s", rc, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no issuer printed; stdout %q stderr %q", stdout.String(), stderr.String())
		}
	}
	out := stdout.String()
	for _, want := range []string{"token socket: " + sock, "image digest: " + digest, "never pass a production policy"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	const aud, nonce = "https://alice.example", "0123456789abcdef0123456789abcdef"
	p, err := attest.NewProvider("dev", sock)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.Token(ctx, aud, []string{nonce})
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.NewVerifier(attest.VerifierConfig{Issuer: issuer, Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(ctx, tok, nonce)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.ImageDigest() != digest || c.SWName() != attest.DevSWName {
		t.Errorf("claims: digest %q swname %q", c.ImageDigest(), c.SWName())
	}
	if strings.Contains(stdout.String()+stderr.String(), tok) {
		t.Error("the token appears in the command's output")
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}

	cancel()
	select {
	case rc := <-done:
		if rc != 0 {
			t.Fatalf("exit code %d: %s", rc, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("command did not stop")
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestDevAttesterCommandErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "e.sock")
	cases := []struct {
		args []string
		rc   int
		msg  string
	}{
		{[]string{"dev", "attester", "--help"}, 0, ""},
		{[]string{"dev", "attester", "extra"}, 2, "unexpected argument"},
		{[]string{"dev", "attester", "--image-digest", "sha256:xyz"}, 2, "64 lowercase hex"},
		{[]string{"dev", "attester", "--nope"}, 2, "unknown flag: --nope"},
		{[]string{"dev", "attester", "--listen", "0.0.0.0:0", "--socket", sock}, 1, "loopback"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		rc := dispatch(c.args, &stdout, &stderr)
		if rc != c.rc || !strings.Contains(stderr.String(), c.msg) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, rc, c.rc, stderr.String(), c.msg)
		}
		if c.rc == 0 && !strings.Contains(stdout.String(), "Usage:\n  mcbn dev attester") {
			t.Errorf("--help printed %q", stdout.String())
		}
	}
}
