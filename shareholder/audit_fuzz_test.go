package shareholder

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// chainLines encodes records as one chained file starting after prev at
// seq first.
func chainLines(prev string, first uint64, recs ...AuditRecord) []byte {
	var out []byte
	for i, r := range recs {
		r.Seq, r.Prev = first+uint64(i), prev
		if r.Time == "" {
			r.Time = "2026-01-01T00:00:00Z"
		}
		line, hash, _ := encodeAuditLine(r)
		out = append(append(out, line...), '\n')
		prev = hash
	}
	return out
}

// auditSeeds are logs for the audit fuzz targets: valid ones of every
// record kind, a continued file, a torn tail, a fragment spliced before a
// line, an edit, a rotate record inside a file.
func auditSeeds(f *testing.F) {
	release := AuditRecord{Remote: "127.0.0.1:1", Subject: "vm", ImageDigest: testDigest, Decision: DecisionRelease, Reason: ReasonOK, Detail: "released"}
	refuse := AuditRecord{Remote: "127.0.0.1:2", Decision: DecisionRefuse, Reason: ReasonBadRequest, Detail: "json: bad"}
	summary := AuditRecord{Decision: DecisionRefusalSummary, Reason: "not_logged", Since: "2026-01-01T00:00:00Z", Counts: map[string]uint64{"bad_request": 3}}
	rotate := AuditRecord{Decision: DecisionRotate, Reason: "rotated", Detail: "continues audit.jsonl.1"}
	log := chainLines(AuditGenesis, 1, release, refuse, summary)
	f.Add(log)
	f.Add([]byte{})
	f.Add(chainLines(testDigest[7:], 5, rotate, refuse, release))
	f.Add(append(bytes.Clone(log), log[:40]...))                                        // torn tail
	f.Add(append(append(bytes.Clone(log[:30]), log...), '\n'))                          // fragment spliced before a line
	f.Add(bytes.Replace(log, []byte("released"), []byte("releaseD"), 1))                // edited
	f.Add(chainLines(AuditGenesis, 1, refuse, rotate))                                  // rotate record inside a file
	f.Add(bytes.TrimSuffix(chainLines(AuditGenesis, 1, refuse, release), []byte{'\n'})) // complete but for the newline
}

// FuzzAuditVerify feeds arbitrary files to the verifier: whatever verifies
// is whole, complete lines; a torn tail is only an unterminated end after
// lines that verify.
func FuzzAuditVerify(f *testing.F) {
	auditSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		sum, err := VerifyAuditFile(bytes.NewReader(data), "")
		var ae *AuditError
		switch {
		case err == nil:
			if sum.Size != int64(len(data)) || sum.Lines != bytes.Count(data, []byte{'\n'}) {
				t.Fatalf("verified %d lines, %d bytes of %d", sum.Lines, sum.Size, len(data))
			}
			_, serr := VerifyAudit(bytes.NewReader(data))
			if (serr == nil) != (sum.Lines == 0 || sum.Start == AuditGenesis) {
				t.Fatalf("strict verify %v for a chain starting at %s", serr, sum.Start)
			}
		case errors.As(err, &ae) && ae.Torn:
			if bytes.IndexByte(data[sum.Size:], '\n') >= 0 || sum.Size == int64(len(data)) {
				t.Fatalf("torn at byte %d, but a newline follows or nothing does", sum.Size)
			}
			if s2, err := VerifyAuditFile(bytes.NewReader(data[:sum.Size]), ""); err != nil || s2.Lines != sum.Lines {
				t.Fatalf("the part before a torn line does not verify: %v", err)
			}
		case errors.As(err, &ae):
			if ae.Line < 1 {
				t.Fatalf("error at line %d", ae.Line)
			}
		default:
			t.Fatalf("not an AuditError: %v", err)
		}
	})
}

// FuzzAuditOpen feeds arbitrary files to the daemon's open: it either
// refuses a broken file and leaves it as it was, or cuts off at most a torn
// tail and appends on a chain that verifies.
func FuzzAuditOpen(f *testing.F) {
	auditSeeds(f)
	dir := f.TempDir() // one per worker; iterations run one at a time
	refuse := AuditRecord{Remote: "127.0.0.1:2", Decision: DecisionRefuse, Reason: ReasonBadRequest, Detail: "json: bad"}
	f.Fuzz(func(t *testing.T, data []byte) {
		sum, err := VerifyAuditFile(bytes.NewReader(data), "")
		var ae *AuditError
		errors.As(err, &ae)
		path := filepath.Join(dir, "audit.jsonl")
		os.Remove(path)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		a, oerr := OpenAuditLogWith(path, AuditOptions{Logger: quietLogger()})
		after, _ := os.ReadFile(path)
		if oerr != nil {
			if !bytes.Equal(after, data) {
				t.Fatal("a refused open changed the file")
			}
			if err == nil || ae == nil || ae.Torn {
				t.Fatalf("open refused a file that verifies but for a torn tail: %v", oerr)
			}
			return
		}
		defer a.Close()
		a.f = noSyncFile{a.f} // fsync is not under test here, and slow
		if err != nil && !(ae != nil && ae.Torn) {
			t.Fatalf("open accepted a broken file: %v", err)
		}
		if !bytes.Equal(after, data[:sum.Size]) {
			t.Fatalf("open kept %d bytes, want the %d verified", len(after), sum.Size)
		}
		if _, err := a.Append(refuse); err != nil {
			t.Fatal(err)
		}
		if s, err := VerifyAuditFile(bytes.NewReader(readBytes(t, path)), ""); err != nil || s.Lines != sum.Lines+1 {
			t.Fatalf("after an append: %+v %v", s, err)
		}
	})
}

// noSyncFile skips fsync.
type noSyncFile struct{ auditFile }

func (noSyncFile) Sync() error { return nil }
