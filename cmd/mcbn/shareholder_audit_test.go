package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/shareholder"
)

// audit verify checks a rotated series as one chain, a single file on its
// own, and names a deleted or edited file.
func TestShareholderAuditVerifySeries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a, err := shareholder.OpenAuditLogWith(path, shareholder.AuditOptions{RotateBytes: 1500, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := a.Append(shareholder.AuditRecord{Remote: "127.0.0.1:1", Decision: shareholder.DecisionRefuse, Reason: "bad_request",
			Detail: fmt.Sprintf("n%d %s", i, strings.Repeat("x", 200))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.AppendSummary(time.Time{}, map[string]uint64{"bad_request": 4}); err != nil {
		t.Fatal(err)
	}
	head := a.Head()
	a.Close()
	files, err := shareholder.AuditSeries(path)
	if err != nil || len(files) < 4 {
		t.Fatalf("series %v %v", files, err)
	}
	n := len(files) - 1 // rotate records

	code, out, errs := shRun("shareholder", "audit", "verify", path)
	want := fmt.Sprintf("ok: %d lines (0 releases, 10 refusals, 4 more refusals in summaries), head %s\n", 11+n, head)
	if code != 0 || !strings.HasSuffix(out, want) || !strings.HasPrefix(out, path+".1: seq 1-") || strings.Contains(out, "chain checked starts") {
		t.Fatalf("series: exit %d:\n%s%s", code, out, errs)
	}
	code, out, errs = shRun("shareholder", "audit", "verify", "--single", path+".2")
	if code != 0 || !strings.Contains(out, "the chain checked starts at seq ") {
		t.Fatalf("--single rotated file: exit %d:\n%s%s", code, out, errs)
	}
	code, _, errs = shRun("shareholder", "audit", "verify", "--head", head, path)
	if code != 0 {
		t.Fatalf("--head of the series: exit %d: %s", code, errs)
	}

	data, _ := os.ReadFile(path + ".2")
	os.WriteFile(path+".2", bytes.Replace(data, []byte(`"n`), []byte(`"N`), 1), 0o600)
	code, _, errs = shRun("shareholder", "audit", "verify", path)
	if code != 1 || !strings.Contains(errs, path+".2: line 2: content does not match its hash") {
		t.Fatalf("edited middle file: exit %d: %s", code, errs)
	}
	os.Remove(path + ".2")
	code, _, errs = shRun("shareholder", "audit", "verify", path)
	if code != 1 || !strings.Contains(errs, "audit.jsonl.2 is missing between audit.jsonl.1 and audit.jsonl.3") {
		t.Fatalf("deleted middle file: exit %d: %s", code, errs)
	}
}
