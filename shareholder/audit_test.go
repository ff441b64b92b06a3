package shareholder

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeAuditLog(t *testing.T, n int) (string, [][]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a, err := OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		d := DecisionRefuse
		if i%2 == 0 {
			d = DecisionRelease
		}
		if _, err := a.Append(AuditRecord{Remote: "127.0.0.1:1234", Subject: "vm", ImageDigest: testDigest, Decision: d, Reason: "ok", Detail: fmt.Sprint("decision ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	data, _ := os.ReadFile(path)
	return path, bytes.SplitAfter(data, []byte("\n"))[:n]
}

func verifyLines(lines [][]byte) error {
	_, err := VerifyAudit(bytes.NewReader(bytes.Join(lines, nil)))
	return err
}

func wantLine(t *testing.T, err error, line int) {
	t.Helper()
	var ae *AuditError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v, want an AuditError at line %d", err, line)
	}
	if ae.Line != line {
		t.Fatalf("error at line %d (%v), want line %d", ae.Line, err, line)
	}
}

func TestAuditChain(t *testing.T) {
	path, lines := writeAuditLog(t, 5)
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", fi.Mode().Perm())
	}
	sum, err := VerifyAudit(bytes.NewReader(bytes.Join(lines, nil)))
	if err != nil || sum.Lines != 5 || sum.Releases != 3 || sum.Refusals != 2 {
		t.Fatalf("verify: %+v %v", sum, err)
	}

	t.Run("edited", func(t *testing.T) {
		l := append([][]byte(nil), lines...)
		l[2] = bytes.Replace(l[2], []byte(`"decision":"release"`), []byte(`"decision":"refuse"`), 1)
		wantLine(t, verifyLines(l), 3)
	})
	t.Run("deleted", func(t *testing.T) {
		l := append(append([][]byte(nil), lines[:1]...), lines[2:]...)
		wantLine(t, verifyLines(l), 2)
	})
	t.Run("reordered", func(t *testing.T) {
		l := append([][]byte(nil), lines...)
		l[3], l[4] = l[4], l[3]
		wantLine(t, verifyLines(l), 4)
	})
	t.Run("torn last line", func(t *testing.T) {
		l := append([][]byte(nil), lines...)
		l[4] = l[4][:len(l[4])-10]
		wantLine(t, verifyLines(l), 5)
	})
	t.Run("rehashed edit still breaks the chain", func(t *testing.T) {
		l := append([][]byte(nil), lines...)
		rec, _, err := ParseAuditLine(bytes.TrimSuffix(l[1], []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		rec.Decision = DecisionRelease
		line, _, _ := encodeAuditLine(*rec)
		l[1] = append(line, '\n')
		wantLine(t, verifyLines(l), 3)
	})

	// Reopening continues the chain; a tampered log is refused at open.
	a, err := OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(AuditRecord{Decision: DecisionRefuse, Reason: "bad_request"}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	f, _ := os.Open(path)
	sum, err = VerifyAudit(f)
	f.Close()
	if err != nil || sum.Lines != 6 {
		t.Fatalf("after reopen: %+v %v", sum, err)
	}
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(data, []byte("decision 1"), []byte("decision X"), 1), 0o600)
	if _, err := OpenAuditLog(path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("tampered log opened: %v", err)
	}
}

func TestAuditLogRefusesLooseMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(path, nil, 0o644)
	os.Chmod(path, 0o644)
	if _, err := OpenAuditLog(path); err == nil {
		t.Fatal("opened a world-readable audit log")
	}
}
