package shareholder

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// AuditGenesis is the "prev" of the first line of every audit log: the hex
// SHA-256 of "mcbn audit genesis v1".
var AuditGenesis = func() string {
	h := sha256.Sum256([]byte("mcbn audit genesis v1"))
	return hex.EncodeToString(h[:])
}()

// Decisions.
const (
	DecisionRelease = "release"
	DecisionRefuse  = "refuse"
)

// AuditRecord is one decision. It never holds a share or a token.
type AuditRecord struct {
	Seq         uint64 `json:"seq"`
	Time        string `json:"time"`
	Remote      string `json:"remote"`
	Subject     string `json:"subject"`
	ImageDigest string `json:"image_digest"`
	Decision    string `json:"decision"`
	Reason      string `json:"reason"`
	Detail      string `json:"detail"`
	Prev        string `json:"prev"`
}

// maxAuditLine bounds one line; fields are clipped well below it.
const maxAuditLine = 8 << 10

// AuditLog appends hash-chained JSON lines to a file. Each line is the
// record's JSON with a final member "hash", the hex SHA-256 of the line as
// it would read without that member; the next line's "prev" is that hash.
// Every line is fsync'd before the decision takes effect.
type AuditLog struct {
	mu   sync.Mutex
	f    *os.File
	seq  uint64
	head string
}

// OpenAuditLog opens (creating with mode 0600) the audit log at path. An
// existing log is verified first: a broken chain is an error naming the line,
// so a tampered log is noticed at start rather than extended.
func OpenAuditLog(path string) (*AuditLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		f.Close()
		return nil, fmt.Errorf("%s: audit log is accessible to group or others (mode %04o); run: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	sum, err := VerifyAudit(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &AuditLog{f: f, seq: uint64(sum.Lines), head: sum.Head}, nil
}

// Head returns the hash of the last line (AuditGenesis when empty): log it
// or copy it elsewhere to anchor the chain.
func (a *AuditLog) Head() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.head
}

// Append writes one record (Seq, Prev and, when empty, Time are filled in)
// and syncs it to disk. It returns the new head.
func (a *AuditLog) Append(r AuditRecord) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return "", errors.New("audit log closed")
	}
	r.Seq = a.seq + 1
	r.Prev = a.head
	if r.Time == "" {
		r.Time = time.Now().UTC().Format(time.RFC3339Nano)
	}
	r.Remote, r.Subject, r.ImageDigest = clipField(r.Remote, 128), clipField(r.Subject, 512), clipField(r.ImageDigest, 128)
	r.Decision, r.Reason, r.Detail = clipField(r.Decision, 16), clipField(r.Reason, 64), clipField(r.Detail, 1024)
	line, hash, err := encodeAuditLine(r)
	if err != nil {
		return "", err
	}
	if _, err := a.f.Write(append(line, '\n')); err != nil {
		return "", fmt.Errorf("audit log: %w", err)
	}
	if err := a.f.Sync(); err != nil {
		return "", fmt.Errorf("audit log: %w", err)
	}
	a.seq, a.head = r.Seq, hash
	return hash, nil
}

// Close closes the file.
func (a *AuditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// encodeAuditLine renders r and appends its hash member.
func encodeAuditLine(r AuditRecord) (line []byte, hash string, err error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(body)
	hash = hex.EncodeToString(sum[:])
	line = append(body[:len(body)-1], `,"hash":"`+hash+`"}`...)
	return line, hash, nil
}

// hashSuffixLen is len(`,"hash":"` + 64 hex + `"}`).
const hashSuffixLen = 9 + 64 + 2

// ParseAuditLine checks one line on its own: the hash member matches the
// rest of the line, the record decodes strictly. It returns the record and
// the line's hash; chaining is checked by VerifyAudit.
func ParseAuditLine(line []byte) (*AuditRecord, string, error) {
	if len(line) > maxAuditLine {
		return nil, "", fmt.Errorf("line longer than %d bytes", maxAuditLine)
	}
	if len(line) < hashSuffixLen+2 || !bytes.HasPrefix(line[len(line)-hashSuffixLen:], []byte(`,"hash":"`)) || !bytes.HasSuffix(line, []byte(`"}`)) {
		return nil, "", errors.New(`not an audit line (no final "hash" member)`)
	}
	hash := string(line[len(line)-hashSuffixLen+9 : len(line)-2])
	if !isHex(hash, 64) {
		return nil, "", errors.New("hash is not 64 lowercase hex digits")
	}
	body := append(bytes.Clone(line[:len(line)-hashSuffixLen]), '}')
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != hash {
		return nil, "", errors.New("content does not match its hash: the line was edited")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r AuditRecord
	if err := dec.Decode(&r); err != nil {
		return nil, "", fmt.Errorf("not a valid audit record: %s", jsonKind(err))
	}
	if dec.More() {
		return nil, "", errors.New("trailing data")
	}
	if !isHex(r.Prev, 64) {
		return nil, "", errors.New("prev is not 64 lowercase hex digits")
	}
	switch r.Decision {
	case DecisionRelease, DecisionRefuse:
	default:
		return nil, "", fmt.Errorf("unknown decision %q", clipField(r.Decision, 16))
	}
	return &r, hash, nil
}

// AuditSummary describes a verified log.
type AuditSummary struct {
	Lines    int
	Releases int
	Refusals int
	Head     string // hash of the last line, AuditGenesis for an empty log
	// SeenAt is the line whose hash is the head VerifyAuditFrom was asked
	// to find (0 for AuditGenesis), or -1 when no line has it.
	SeenAt int
}

// AuditError names the first bad line of a log (1-based).
type AuditError struct {
	Line int
	Msg  string
}

func (e *AuditError) Error() string { return fmt.Sprintf("audit log line %d: %s", e.Line, e.Msg) }

// VerifyAudit reads a whole log and checks every line and the chain: each
// line's prev is the previous line's hash (the first: AuditGenesis) and seq
// counts 1, 2, 3, ... An edited line fails its own hash; a deleted, inserted
// or reordered line breaks the chain where it happened. Deleting lines at
// the end is only visible against a copy of the head (see Head).
func VerifyAudit(r io.Reader) (AuditSummary, error) { return VerifyAuditFrom(r, "") }

// VerifyAuditFrom is VerifyAudit that also looks for a head recorded
// earlier (the audit_head the daemon logs, or one a verify printed): if no
// line has that hash, lines were cut from the end (or the log replaced)
// since, which the chain alone cannot show. SeenAt tells where it was found.
func VerifyAuditFrom(r io.Reader, knownHead string) (AuditSummary, error) {
	knownHead = strings.ToLower(strings.TrimSpace(knownHead)) // as pasted
	sum := AuditSummary{Head: AuditGenesis, SeenAt: -1}
	if knownHead == AuditGenesis {
		sum.SeenAt = 0
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := readAuditLine(br)
		if err == io.EOF {
			return sum, nil
		}
		if err != nil {
			return sum, &AuditError{Line: n, Msg: err.Error()}
		}
		rec, hash, err := ParseAuditLine(line)
		if err != nil {
			return sum, &AuditError{Line: n, Msg: err.Error()}
		}
		if rec.Prev != sum.Head {
			return sum, &AuditError{Line: n, Msg: "does not follow the previous line (a line was deleted, inserted or reordered here)"}
		}
		if rec.Seq != uint64(n) {
			return sum, &AuditError{Line: n, Msg: fmt.Sprintf("seq %d, want %d (lines deleted or reordered)", rec.Seq, n)}
		}
		sum.Lines, sum.Head = n, hash
		if knownHead != "" && sum.SeenAt < 0 && hash == knownHead {
			sum.SeenAt = n
		}
		if rec.Decision == DecisionRelease {
			sum.Releases++
		} else {
			sum.Refusals++
		}
	}
}

// readAuditLine returns the next line without its newline; a final line
// without a newline is an error (a torn write).
func readAuditLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxAuditLine+1 {
			return nil, fmt.Errorf("line longer than %d bytes", maxAuditLine)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, errors.New("last line has no newline (torn write or truncated file)")
		default:
			return nil, err
		}
	}
}

// clipField bounds an untrusted string and makes it valid UTF-8.
func clipField(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return string(bytes.ToValidUTF8([]byte(s), []byte("?")))
}
