package shareholder

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testRotateBytes = 2000

func openRotating(t *testing.T, path string) *AuditLog {
	t.Helper()
	a, err := OpenAuditLogWith(path, AuditOptions{Logger: quietLogger(), RotateBytes: testRotateBytes})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// appendRefusals appends n refuse records of about 450 bytes.
func appendRefusals(t *testing.T, a *AuditLog, n int) {
	t.Helper()
	for i := range n {
		if _, err := a.Append(AuditRecord{Remote: "127.0.0.1:1", Decision: DecisionRefuse, Reason: ReasonBadRequest,
			Detail: fmt.Sprintf("refusal %d %s", i, strings.Repeat("x", 200))}); err != nil {
			t.Fatal(err)
		}
	}
}

// firstRecord parses the first line of a file.
func firstRecord(t *testing.T, path string) (*AuditRecord, string) {
	t.Helper()
	data := readBytes(t, path)
	rec, hash, err := ParseAuditLine(data[:bytes.IndexByte(data, '\n')])
	if err != nil {
		t.Fatal(err)
	}
	return rec, hash
}

func verifyFile(t *testing.T, path string) AuditSummary {
	t.Helper()
	sum, err := VerifyAuditFile(bytes.NewReader(readBytes(t, path)), "")
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return sum
}

// copyDir copies the regular files of dir into a new temp dir.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Type().IsRegular() {
			os.WriteFile(filepath.Join(to, e.Name()), readBytes(t, filepath.Join(dir, e.Name())), 0o600)
		}
	}
	return to
}

func TestAuditRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	a := openRotating(t, path)
	appendRefusals(t, a, 12)

	files, err := AuditSeries(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 || files[0] != path+".1" || files[len(files)-1] != path {
		t.Fatalf("series %v: want several rotations, PATH.1 first and PATH last", files)
	}
	for i, f := range files {
		if f != path && f != fmt.Sprintf("%s.%d", path, i+1) {
			t.Fatalf("file %d is %s", i, f)
		}
		if fi, _ := os.Stat(f); fi.Size() > testRotateBytes || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %d bytes mode %04o, want at most %d, 0600", f, fi.Size(), fi.Mode().Perm(), testRotateBytes)
		}
	}
	sum, err := VerifyAuditFiles(files, "")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Refusals != 12 || sum.Lines != 12+len(files)-1 || sum.Head != a.Head() || sum.FirstSeq != 1 || sum.Start != AuditGenesis || len(sum.Files) != len(files) {
		t.Fatalf("series summary %+v", sum)
	}

	// Each later file begins with a rotate record carrying the last hash
	// (and seq) of the file before.
	for i := 1; i < len(files); i++ {
		prev := verifyFile(t, files[i-1])
		rec, _ := firstRecord(t, files[i])
		if rec.Decision != DecisionRotate || rec.Prev != prev.Head || rec.Seq != prev.LastSeq+1 ||
			rec.Detail != "continues "+filepath.Base(files[i-1]) {
			t.Fatalf("%s begins with %+v; %s ends at seq %d hash %s", files[i], rec, files[i-1], prev.LastSeq, prev.Head)
		}
	}

	// A rotated file on its own verifies and says where its chain starts;
	// the strict whole-log check refuses it.
	mid := verifyFile(t, files[1])
	if mid.Start != verifyFile(t, files[0]).Head || mid.FirstSeq != verifyFile(t, files[0]).LastSeq+1 {
		t.Fatalf("%s alone: %+v", files[1], mid)
	}
	if _, err := VerifyAudit(bytes.NewReader(readBytes(t, files[1]))); err == nil || !strings.Contains(err.Error(), "line 1: this file continues an earlier one") {
		t.Fatalf("strict verify of a continued file: %v", err)
	}
	// A head from an earlier file is found across the series.
	early := verifyFile(t, files[0])
	if s, err := VerifyAuditFiles(files, early.Head); err != nil || s.SeenAt != int(early.LastSeq) {
		t.Fatalf("head of %s in the series: %+v %v", files[0], s, err)
	}

	// A restart continues the series.
	a.Close()
	a = openRotating(t, path)
	appendRefusals(t, a, 6)
	head := a.Head()
	a.Close()
	files, _ = AuditSeries(path)
	if sum, err := VerifyAuditFiles(files, ""); err != nil || sum.Refusals != 18 || sum.Head != head {
		t.Fatalf("after restart: %+v %v", sum, err)
	}

	wantErr := func(t *testing.T, err error, file string, line int, msg string) {
		t.Helper()
		var ae *AuditError
		if !errors.As(err, &ae) || ae.File != file || ae.Line != line || !strings.Contains(ae.Msg, msg) {
			t.Fatalf("error %v, want %s line %d: %s", err, file, line, msg)
		}
	}
	t.Run("middle file deleted", func(t *testing.T) {
		d := copyDir(t, dir)
		p := filepath.Join(d, "audit.jsonl")
		os.Remove(p + ".2")
		if _, err := AuditSeries(p); err == nil || !strings.Contains(err.Error(), "audit.jsonl.2 is missing between audit.jsonl.1 and audit.jsonl.3") {
			t.Fatalf("series with a gap: %v", err)
		}
		// Renumbered to hide the gap: the chain breaks at the next file.
		n := len(files) - 1
		for i := 3; i <= n; i++ {
			os.Rename(fmt.Sprintf("%s.%d", p, i), fmt.Sprintf("%s.%d", p, i-1))
		}
		fs, err := AuditSeries(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = VerifyAuditFiles(fs, "")
		wantErr(t, err, p+".2", 1, "does not follow the last line of the previous file")
	})
	t.Run("middle file edited", func(t *testing.T) {
		d := copyDir(t, dir)
		p := filepath.Join(d, "audit.jsonl")
		data := readBytes(t, p+".2")
		os.WriteFile(p+".2", bytes.Replace(data, []byte("refusal "), []byte("refusaL "), 1), 0o600)
		fs, _ := AuditSeries(p)
		_, err := VerifyAuditFiles(fs, "")
		wantErr(t, err, p+".2", 2, "content does not match its hash")
	})
	t.Run("files swapped", func(t *testing.T) {
		d := copyDir(t, dir)
		p := filepath.Join(d, "audit.jsonl")
		os.Rename(p+".2", p+".x")
		os.Rename(p+".3", p+".2")
		os.Rename(p+".x", p+".3")
		fs, _ := AuditSeries(p)
		_, err := VerifyAuditFiles(fs, "")
		wantErr(t, err, p+".2", 1, "does not follow the last line of the previous file")
	})
	t.Run("oldest files pruned", func(t *testing.T) {
		d := copyDir(t, dir)
		p := filepath.Join(d, "audit.jsonl")
		os.Remove(p + ".1")
		os.Remove(p + ".2")
		fs, _ := AuditSeries(p)
		sum, err := VerifyAuditFiles(fs, "")
		if err != nil || sum.Start == AuditGenesis || sum.FirstSeq < 3 {
			t.Fatalf("pruned series: %+v %v", sum, err)
		}
		// The daemon still opens it: the newest rotated file is there.
		a, err := OpenAuditLogWith(p, AuditOptions{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		a.Close()
	})
	t.Run("newest rotated file deleted", func(t *testing.T) {
		d := copyDir(t, dir)
		p := filepath.Join(d, "audit.jsonl")
		fs, _ := AuditSeries(p)
		os.Remove(fs[len(fs)-2])
		if _, err := OpenAuditLogWith(p, AuditOptions{Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "does not continue") {
			t.Fatalf("open without the newest rotated file: %v", err)
		}
	})
	t.Run("active file replaced", func(t *testing.T) {
		d := copyDir(t, dir)
		p := filepath.Join(d, "audit.jsonl")
		os.Remove(p)
		fresh, err := OpenAuditLog(filepath.Join(t.TempDir(), "x"))
		if err != nil {
			t.Fatal(err)
		}
		fresh.Append(refuseRec)
		fresh.Close()
		os.WriteFile(p, readBytes(t, filepath.Join(filepath.Dir(fresh.path), "x")), 0o600)
		if _, err := OpenAuditLogWith(p, AuditOptions{Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "does not continue") {
			t.Fatalf("open with a fresh active file: %v", err)
		}
	})
}

// A crash between the rename and the new file's first record (or a
// failed create, or a full disk while writing the rotate record) leaves
// the series intact: the next record continues it.
func TestAuditRotationInterrupted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	a := openRotating(t, path)
	appendRefusals(t, a, 6)
	a.Close()

	check := func(t *testing.T) AuditSummary {
		t.Helper()
		files, err := AuditSeries(path)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := VerifyAuditFiles(files, "")
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	before := check(t)

	t.Run("crash after the rename", func(t *testing.T) {
		ns, _ := rotatedAuditFiles(path)
		os.Rename(path, rotatedName(path, ns[len(ns)-1]+1))
		for _, empty := range []bool{false, true} {
			if empty { // created, but no record yet
				os.Rename(path, rotatedName(path, ns[len(ns)-1]+2))
				os.WriteFile(path, nil, 0o600)
			}
			if sum := check(t); sum.Lines == 0 {
				t.Fatal("nothing verified")
			}
			a := openRotating(t, path)
			appendRefusals(t, a, 1)
			a.Close()
			rec, _ := firstRecord(t, path)
			if rec.Decision != DecisionRotate {
				t.Fatalf("the new file begins with %+v", rec)
			}
		}
		if sum := check(t); sum.Refusals != before.Refusals+2 {
			t.Fatalf("after recovery: %+v", sum)
		}
	})
	t.Run("create fails, then the rotate record hits a full disk", func(t *testing.T) {
		a := openRotating(t, path)
		defer a.Close()
		head := a.Head()
		a.create = func(string) (auditFile, error) { return nil, errors.New("create: injected") }
		appendRefusals(t, a, 1) // fits in the current file
		head = a.Head()
		var err error
		for range 8 { // until a rotation is due
			if _, err = a.Append(refuseRec); err != nil {
				break
			}
			head = a.Head()
		}
		if err == nil || !strings.Contains(err.Error(), "create: injected") || a.Head() != head {
			t.Fatalf("append with a failing create: %v", err)
		}
		var ff *faultFile
		a.create = func(p string) (auditFile, error) {
			f, err := createAuditFile(p)
			ff = &faultFile{auditFile: f, room: 20}
			return ff, err
		}
		if _, err := a.Append(refuseRec); !strings.Contains(fmt.Sprint(err), "no space left") || a.Head() != head {
			t.Fatalf("append with a full disk at the rotate record: %v", err)
		}
		if fi, _ := os.Stat(path); fi.Size() != 0 {
			t.Fatalf("the fragment of the rotate record stayed: %d bytes", fi.Size())
		}
		ff.set(func(f *faultFile) { f.room = -1 })
		if _, err := a.Append(refuseRec); err != nil {
			t.Fatal(err)
		}
		if sum := check(t); sum.Head != a.Head() {
			t.Fatalf("after the disk has room: %+v", sum)
		}
	})
}

// Refusal summaries: one line with counts by reason, checked and counted
// by the verifier; nothing is written for an empty window.
func TestAuditAppendSummary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, err := OpenAuditLogWith(path, AuditOptions{Logger: quietLogger(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	head := a.Head()
	if h, err := a.AppendSummary(now.Add(-time.Minute), map[string]uint64{ReasonBadRequest: 0}); err != nil || h != head {
		t.Fatalf("empty summary: %v", err)
	}
	if _, err := a.AppendSummary(now.Add(-time.Minute), map[string]uint64{ReasonBadRequest: 7, ReasonTokenInvalid: 3}); err != nil {
		t.Fatal(err)
	}
	many := map[string]uint64{}
	for i := range 40 {
		many[fmt.Sprintf("r%02d", i)] = 1
	}
	if _, err := a.AppendSummary(time.Time{}, many); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(AuditRecord{Decision: DecisionRotate}); err == nil {
		t.Fatal("Append wrote a rotate record")
	}
	if _, err := a.Append(AuditRecord{Decision: DecisionRefusalSummary}); err == nil {
		t.Fatal("Append wrote a summary without counts")
	}
	sum := verifyPath(t, path)
	if sum.Lines != 2 || sum.Summarized != 50 || sum.Refusals != 0 {
		t.Fatalf("summary %+v", sum)
	}
	data := readBytes(t, path)
	first, _, err := ParseAuditLine(data[:bytes.IndexByte(data, '\n')])
	if err != nil {
		t.Fatal(err)
	}
	if first.Decision != DecisionRefusalSummary || first.Since != "2026-01-02T03:03:05Z" || first.Time != "2026-01-02T03:04:05Z" ||
		first.Counts[ReasonBadRequest] != 7 || first.Counts[ReasonTokenInvalid] != 3 ||
		first.Detail != "10 refusals not logged individually since 2026-01-02T03:03:05Z" {
		t.Fatalf("summary record %+v", first)
	}
	second, _, _ := ParseAuditLine(bytes.Split(data, []byte("\n"))[1])
	if len(second.Counts) != maxSummaryReasons || second.Counts[summaryOther] != 9 || second.Since != "" {
		t.Fatalf("merged summary %d reasons, other %d", len(second.Counts), second.Counts[summaryOther])
	}
}
