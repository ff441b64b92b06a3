package demo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcbn/mcbn/shareholder"
)

// readAudit runs while the daemons write: a last line without its newline
// is a line being written and is not counted (CI once caught the demo
// reading one); a complete line that does not parse is still an error.
func TestReadAuditSkipsALineBeingWritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice.audit.jsonl")
	log, err := shareholder.OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := log.Append(shareholder.AuditRecord{Remote: "127.0.0.1:1", Subject: "dev:proxy",
		Decision: shareholder.DecisionRelease, Reason: "policy", Detail: "released share 1"}); err != nil {
		t.Fatal(err)
	}
	log.Close()
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(whole), "\n"), "\n")
	last := lines[len(lines)-1]

	// The same line again, cut short: what a reader sees mid-write.
	if err := os.WriteFile(path, []byte(string(whole)+last[:len(last)/2]), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := readAudit(dir, "alice")
	if err != nil {
		t.Fatalf("a line being written: %v", err)
	}
	if c.shares != 1 {
		t.Fatalf("%d shares counted, want 1", c.shares)
	}

	// Completed with a newline, the fragment is a broken line.
	if err := os.WriteFile(path, []byte(string(whole)+last[:len(last)/2]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readAudit(dir, "alice"); err == nil || !strings.Contains(err.Error(), "alice.audit.jsonl") {
		t.Fatalf("a broken complete line: %v", err)
	}
}
