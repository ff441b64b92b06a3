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
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
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

// Decisions (the "decision" member of a record).
const (
	DecisionRelease = "release"
	DecisionRefuse  = "refuse"
	// DecisionRotate is the first record of a file that continues the
	// chain of a rotated file: its prev is that file's last hash.
	DecisionRotate = "rotate"
	// DecisionRefusalSummary counts refusals that were not logged one by
	// one (see AppendSummary).
	DecisionRefusalSummary = "refusal_summary"
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
	// Since and Counts appear on refusal_summary records only: the start
	// of the window and the refusals in it by public reason.
	Since  string            `json:"since,omitempty"`
	Counts map[string]uint64 `json:"counts,omitempty"`
	Prev   string            `json:"prev"`
}

// maxAuditLine bounds one line; fields are clipped well below it.
const maxAuditLine = 8 << 10

// maxSummaryReasons bounds the reasons of one refusal summary; more are
// merged into "other" (summaryOther).
const (
	maxSummaryReasons = 32
	summaryOther      = "other"
)

// AuditOptions tune OpenAuditLogWith.
type AuditOptions struct {
	// Logger gets what the log repairs or notices on its own (a torn last
	// line dropped at open, a rotation, a write it could not undo).
	// nil: slog.Default().
	Logger *slog.Logger
	// RotateBytes, when > 0, rotates the log before a line would take the
	// file past this size: PATH is renamed PATH.N (N = 1, 2, ..., oldest
	// first) and a new PATH begins with a rotate record whose prev is the
	// last hash of PATH.N. A file always takes at least one record.
	RotateBytes int64
	// Now is the clock of record times (nil: time.Now).
	Now func() time.Time
}

// auditFile is what AuditLog needs of its file (*os.File; tests inject
// faults such as a full disk through it).
type auditFile interface {
	Write(p []byte) (int, error)
	Sync() error
	Truncate(size int64) error
	Close() error
}

// AuditLog appends hash-chained JSON lines to a file. Each line is the
// record's JSON with a final member "hash", the hex SHA-256 of the line as
// it would read without that member; the next line's "prev" is that hash.
// Every line is fsync'd before Append returns, and a line that cannot be
// written whole is cut off again: the file only ever ends on a complete,
// chained line (see Append).
type AuditLog struct {
	mu   sync.Mutex
	path string
	opts AuditOptions
	log  *slog.Logger
	now  func() time.Time
	// create opens a new active file (O_EXCL): tests wrap it.
	create func(path string) (auditFile, error)

	f         auditFile // nil after a rotation until the new file exists
	closed    bool
	seq       uint64 // seq of the last record (across files)
	head      string // hash of the last record
	size      int64  // bytes of complete lines in f: the last good end
	fileLines int    // records in f
	continued bool   // f begins with a rotate record
	next      int    // N of the next rotated file PATH.N
	prevName  string // base name of the newest rotated file

	dirty       bool // f may hold bytes past size (cutting a failed write back failed)
	needDirSync bool // a rename or creation in the directory is not yet durable
	needHeader  bool // f has yet to get its rotate record
}

// OpenAuditLog is OpenAuditLogWith with default options (no rotation).
func OpenAuditLog(path string) (*AuditLog, error) {
	return OpenAuditLogWith(path, AuditOptions{})
}

// OpenAuditLogWith opens (creating with mode 0600) the audit log at path.
// The file is verified first: a broken chain is an error naming the line,
// so a tampered log is noticed at start rather than extended. The one
// repair it makes is a final line without its newline — a write cut short
// by a crash, never acknowledged, so no share left on it — which is
// truncated with a warning. When rotated files PATH.N exist, the newest
// one is verified too and the active file must continue its chain.
func OpenAuditLogWith(path string, o AuditOptions) (*AuditLog, error) {
	a := &AuditLog{path: path, opts: o, log: o.Logger, now: o.Now, create: createAuditFile, next: 1}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	rotated, err := rotatedAuditFiles(path)
	if err != nil {
		return nil, err
	}
	_, statErr := os.Lstat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	a.needDirSync = errors.Is(statErr, fs.ErrNotExist)
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
	v := chainVerifier{known: ""}
	err = v.file(f, path)
	sum := v.sum
	var ae *AuditError
	if errors.As(err, &ae) && ae.Torn {
		// Only the unterminated tail goes: every Append writes its line
		// and newline in one write and acknowledges nothing before the
		// fsync, so a line without its newline was never acted on. A
		// damaged line followed by others is not torn: it fails above.
		if err := truncateSync(f, sum.Size); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: cutting off a torn last line: %w", path, err)
		}
		a.log.Warn("audit log: dropped a torn last line (a write cut short by a crash or a full disk; it was never acknowledged)",
			"file", path, "line", ae.Line, "bytes", fi.Size()-sum.Size)
		err = nil
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	a.f = f
	a.seq, a.head, a.size, a.fileLines = sum.LastSeq, sum.Head, sum.Size, sum.Lines
	a.continued = sum.Lines > 0 && sum.Start != AuditGenesis
	if len(rotated) == 0 {
		if a.continued {
			a.log.Info("audit log continues a chain whose earlier files are not here", "file", path, "first_seq", sum.FirstSeq)
		}
		return a, nil
	}
	last := rotated[len(rotated)-1]
	a.next = last + 1
	prevPath := rotatedName(path, last)
	a.prevName = filepath.Base(prevPath)
	pv := chainVerifier{}
	if err := pv.path(prevPath); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", prevPath, err)
	}
	prev := pv.sum
	if sum.Lines == 0 {
		// A crash between the rename and the new file's first record,
		// or the active file was emptied: continue the rotated chain.
		a.seq, a.head, a.needHeader = prev.LastSeq, prev.Head, true
		a.log.Warn("audit log is empty; its first record will continue the chain of the newest rotated file",
			"file", path, "previous", prevPath, "previous_head", prev.Head)
		return a, nil
	}
	if sum.Start != prev.Head || sum.FirstSeq != prev.LastSeq+1 {
		f.Close()
		return nil, fmt.Errorf("%s: does not continue %s (its first line follows hash %.12s… seq %d; %s ends with hash %.12s… seq %d): a rotated file is missing or was replaced, or this file was",
			path, prevPath, sum.Start, sum.FirstSeq-1, filepath.Base(prevPath), prev.Head, prev.LastSeq)
	}
	return a, nil
}

// createAuditFile creates a new active file; O_EXCL because a file that
// appeared at the active path meanwhile is not ours to extend.
func createAuditFile(path string) (auditFile, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
}

// Head returns the hash of the last line (AuditGenesis when empty): log it
// or copy it elsewhere to anchor the chain.
func (a *AuditLog) Head() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.head
}

// Append writes one release or refuse record (Seq, Prev and, when empty,
// Time are filled in), fsyncs it and returns the new head. On any error
// the record is not in the log: a write or fsync that fails (a full disk)
// is cut back to the last complete line and the head stays where it was,
// so the caller must treat the decision as unrecorded — a release must
// then be refused. If even the cut fails, no record is written until a
// later Append manages it.
func (a *AuditLog) Append(r AuditRecord) (string, error) {
	if r.Decision != DecisionRelease && r.Decision != DecisionRefuse {
		return "", fmt.Errorf("audit log: Append takes release or refuse records, not %q", clipField(r.Decision, 16))
	}
	r.Since, r.Counts = "", nil
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.append(r)
}

// AppendSummary records refusals that were counted but not logged one by
// one (a refusal budget) in the window from since to now: counts maps a
// public reason (Reason*) to its number. Zero counts are left out; with
// nothing left it writes nothing and returns the head. Reasons are clipped
// to 64 bytes and, beyond 32 of them, merged into "other". Errors are those
// of Append.
func (a *AuditLog) AppendSummary(since time.Time, counts map[string]uint64) (string, error) {
	c, total := summaryCounts(counts)
	a.mu.Lock()
	defer a.mu.Unlock()
	if total == 0 {
		if a.closed {
			return "", errors.New("audit log closed")
		}
		return a.head, nil
	}
	r := AuditRecord{Decision: DecisionRefusalSummary, Reason: "not_logged", Counts: c,
		Detail: fmt.Sprintf("%d refusals not logged individually", total)}
	if !since.IsZero() {
		r.Since = since.UTC().Format(time.RFC3339Nano)
		r.Detail += " since " + r.Since
	}
	return a.append(r)
}

// summaryCounts drops zero counts, clips reasons and merges the excess.
func summaryCounts(in map[string]uint64) (map[string]uint64, uint64) {
	out := map[string]uint64{}
	for k, n := range in {
		if n == 0 {
			continue
		}
		k = clipField(k, 64)
		if k == "" {
			k = summaryOther
		}
		out[k] = addSat(out[k], n)
	}
	if len(out) > maxSummaryReasons {
		keys := make([]string, 0, len(out))
		for k := range out {
			if k != summaryOther {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys[maxSummaryReasons-1:] {
			out[summaryOther] = addSat(out[summaryOther], out[k])
			delete(out, k)
		}
	}
	var total uint64
	for _, n := range out {
		total = addSat(total, n)
	}
	return out, total
}

func addSat(a, b uint64) uint64 {
	if a+b < a {
		return ^uint64(0)
	}
	return a + b
}

// append is Append with a.mu held and the decision checked.
func (a *AuditLog) append(r AuditRecord) (string, error) {
	if a.closed {
		return "", errors.New("audit log closed")
	}
	if r.Time == "" {
		r.Time = a.now().UTC().Format(time.RFC3339Nano)
	}
	r.Remote, r.Subject, r.ImageDigest = clipField(r.Remote, 128), clipField(r.Subject, 512), clipField(r.ImageDigest, 128)
	r.Decision, r.Reason, r.Detail = clipField(r.Decision, 16), clipField(r.Reason, 64), clipField(r.Detail, 1024)
	if err := a.ready(); err != nil {
		return "", err
	}
	if a.opts.RotateBytes > 0 && a.fileLines > a.headerLines() {
		r.Seq, r.Prev = a.seq+1, a.head
		line, _, err := encodeAuditLine(r)
		if err != nil {
			return "", err
		}
		if a.size+int64(len(line))+1 > a.opts.RotateBytes {
			if err := a.rotate(); err != nil {
				return "", err
			}
		}
	}
	return a.write(r)
}

func (a *AuditLog) headerLines() int {
	if a.continued {
		return 1
	}
	return 0
}

// ready brings the active file to where a record can follow: it exists,
// its directory entry is durable, a failed write is cut off, and a new
// file has its rotate record.
func (a *AuditLog) ready() error {
	if a.f == nil {
		f, err := a.create(a.path)
		if err != nil {
			return fmt.Errorf("audit log %s: creating after rotation: %w", a.path, err)
		}
		a.f, a.size, a.fileLines, a.continued, a.dirty = f, 0, 0, false, false
		a.needDirSync = true
	}
	if a.needDirSync {
		if err := syncDir(filepath.Dir(a.path)); err != nil {
			return fmt.Errorf("audit log %s: syncing its directory: %w", a.path, err)
		}
		a.needDirSync = false
	}
	if a.dirty {
		if err := truncateSync(a.f, a.size); err != nil {
			return fmt.Errorf("audit log %s: still cannot cut a failed write off at byte %d: %w", a.path, a.size, err)
		}
		a.dirty = false
		a.log.Info("audit log: the failed write is cut off; recording again", "file", a.path)
	}
	if a.needHeader {
		r := AuditRecord{Time: a.now().UTC().Format(time.RFC3339Nano), Decision: DecisionRotate, Reason: "rotated",
			Detail: clipField("continues "+a.prevName, 1024)}
		if _, err := a.write(r); err != nil {
			return err
		}
		a.needHeader, a.continued = false, true
	}
	return nil
}

// rotate renames the active file PATH.N and starts PATH anew.
func (a *AuditLog) rotate() error {
	dst := rotatedName(a.path, a.next)
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("audit log %s: cannot rotate to %s: it exists", a.path, dst)
	}
	if err := os.Rename(a.path, dst); err != nil {
		return fmt.Errorf("audit log %s: rotating: %w", a.path, err)
	}
	a.f.Close()
	a.f, a.size, a.fileLines, a.continued = nil, 0, 0, false
	a.next++
	a.prevName, a.needHeader, a.needDirSync = filepath.Base(dst), true, true
	a.log.Info("audit log rotated", "file", dst, "head", a.head, "seq", a.seq)
	return a.ready()
}

// write appends one line and fsyncs it; on failure it cuts the file back
// to the last complete line so that the next line does not land after a
// fragment, and leaves seq and head unchanged.
func (a *AuditLog) write(r AuditRecord) (string, error) {
	r.Seq, r.Prev = a.seq+1, a.head
	line, hash, err := encodeAuditLine(r)
	if err != nil {
		return "", err
	}
	if len(line) > maxAuditLine {
		return "", fmt.Errorf("audit log: record %d is %d bytes, over the %d-byte line limit", r.Seq, len(line), maxAuditLine)
	}
	line = append(line, '\n')
	_, err = a.f.Write(line)
	if err == nil {
		err = a.f.Sync()
	}
	if err != nil {
		if cerr := truncateSync(a.f, a.size); cerr != nil {
			// The next Append retries the cut before writing; until it
			// works nothing is recorded (and releases are refused).
			a.dirty = true
			a.log.Error("audit log: cannot cut a failed write back; no record is written until it can",
				"file", a.path, "at", a.size, "err", cerr)
		}
		return "", fmt.Errorf("audit log %s: record %d not written: %w", a.path, r.Seq, err)
	}
	a.size += int64(len(line))
	a.seq, a.head = r.Seq, hash
	a.fileLines++
	return hash, nil
}

func truncateSync(f auditFile, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// syncDir makes renames and creations in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close closes the file.
func (a *AuditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// rotatedName is the name of the n-th rotated file of the log at path.
func rotatedName(path string, n int) string { return path + "." + strconv.Itoa(n) }

// rotatedAuditFiles returns the N of the rotated files PATH.N beside path,
// ascending. The numbers must be consecutive: old files may be pruned from
// the start, but a gap means a file was deleted from the middle.
func rotatedAuditFiles(path string) ([]int, error) {
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	prefix := filepath.Base(path) + "."
	var ns []int
	for _, e := range ents {
		suf, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || suf == "" || len(suf) > 9 || suf[0] == '0' || strings.Trim(suf, "0123456789") != "" {
			continue
		}
		n, _ := strconv.Atoi(suf)
		ns = append(ns, n)
	}
	sort.Ints(ns)
	for i := 1; i < len(ns); i++ {
		if ns[i] != ns[i-1]+1 {
			return nil, fmt.Errorf("%s is missing between %s and %s: a rotated audit file was deleted",
				rotatedName(path, ns[i-1]+1), filepath.Base(rotatedName(path, ns[i-1])), filepath.Base(rotatedName(path, ns[i])))
		}
	}
	return ns, nil
}

// AuditSeries lists the files of the audit log at path, oldest first: the
// rotated files PATH.1, PATH.2, ... that are present, then PATH itself when
// it exists. Old files may have been pruned from the start; a gap in the
// numbers is an error.
func AuditSeries(path string) ([]string, error) {
	ns, err := rotatedAuditFiles(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, n := range ns {
		files = append(files, rotatedName(path, n))
	}
	if _, err := os.Stat(path); err == nil {
		files = append(files, path)
	} else if !errors.Is(err, fs.ErrNotExist) || len(files) == 0 {
		return nil, err
	}
	return files, nil
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
// rest of the line, the record decodes strictly and its members fit its
// decision. It returns the record and the line's hash; chaining is checked
// by VerifyAudit.
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
	case DecisionRelease, DecisionRefuse, DecisionRotate:
		if r.Counts != nil || r.Since != "" {
			return nil, "", fmt.Errorf("a %s record with counts or since", r.Decision)
		}
	case DecisionRefusalSummary:
		if len(r.Counts) == 0 || len(r.Counts) > maxSummaryReasons {
			return nil, "", fmt.Errorf("a refusal summary needs 1 to %d counts", maxSummaryReasons)
		}
		for k, n := range r.Counts {
			if k == "" || len(k) > 64 || n == 0 {
				return nil, "", errors.New("a refusal summary count needs a reason of 1 to 64 bytes and a number above 0")
			}
		}
	default:
		return nil, "", fmt.Errorf("unknown decision %q", clipField(r.Decision, 16))
	}
	return &r, hash, nil
}

// AuditSummary describes a verified log (one file or a series of files).
type AuditSummary struct {
	Lines      int    // records read
	Releases   int    // release records
	Refusals   int    // refuse records
	Summarized uint64 // refusals counted in refusal_summary records
	Head       string // hash of the last line, AuditGenesis for an empty log
	// FirstSeq and Start say where the chain read begins: seq 1 after
	// AuditGenesis for a log from its beginning, or a rotate record
	// continuing Start, the last hash of an earlier file not read here.
	// Start is AuditGenesis for an empty log.
	FirstSeq uint64
	Start    string
	LastSeq  uint64 // seq of the last record (0 for an empty log from genesis)
	// SeenAt is the seq of the record whose hash is the head
	// VerifyAuditFrom was asked to find (0 for AuditGenesis; FirstSeq-1
	// when it is Start), or -1 when no record has it. In a log from
	// genesis the seq is the line number.
	SeenAt int
	// Size is the length of the complete, verified lines of the last file
	// read: where a torn last line begins.
	Size int64
	// Files has one entry per file read.
	Files []AuditFileSummary
}

// AuditFileSummary is one file of a verified series.
type AuditFileSummary struct {
	Name              string
	Lines             int
	FirstSeq, LastSeq uint64 // 0, 0 when empty
}

// AuditError names the first bad line of a log (1-based) and, when known,
// its file.
type AuditError struct {
	File string
	Line int
	Msg  string
	// Torn is set when the line is the last and lacks its newline: a write
	// cut short, which the daemon truncates at start.
	Torn bool
}

func (e *AuditError) Error() string {
	if e.File != "" {
		return fmt.Sprintf("audit log %s line %d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("audit log line %d: %s", e.Line, e.Msg)
}

// VerifyAudit reads a whole log and checks every line and the chain: each
// line's prev is the previous line's hash (the first: AuditGenesis) and seq
// counts 1, 2, 3, ... An edited line fails its own hash; a deleted, inserted
// or reordered line breaks the chain where it happened. Deleting lines at
// the end is only visible against a copy of the head (see Head). A file
// that begins with a rotate record continues another and fails here: see
// VerifyAuditFile and VerifyAuditFiles.
func VerifyAudit(r io.Reader) (AuditSummary, error) { return VerifyAuditFrom(r, "") }

// VerifyAuditFrom is VerifyAudit that also looks for a head recorded
// earlier (the audit_head the daemon logs, or one a verify printed): if no
// line has that hash, lines were cut from the end (or the log replaced)
// since, which the chain alone cannot show. SeenAt tells where it was found.
func VerifyAuditFrom(r io.Reader, knownHead string) (AuditSummary, error) {
	v := chainVerifier{strict: true, known: knownHead}
	err := v.file(r, "")
	return v.sum, err
}

// VerifyAuditFile is VerifyAuditFrom for one file of a rotated series on
// its own: it may also begin with a rotate record, continuing a chain
// whose earlier part is not read; FirstSeq and Start say where it starts.
func VerifyAuditFile(r io.Reader, knownHead string) (AuditSummary, error) {
	v := chainVerifier{known: knownHead}
	err := v.file(r, "")
	return v.sum, err
}

// VerifyAuditFiles checks files (see AuditSeries) as one chain in the
// given order: each file after the first begins with a rotate record
// continuing the last hash and seq of the one before. A missing, replaced
// or reordered file breaks the chain at its neighbour's first line; only
// the last file may be empty. Errors are *AuditError naming the file.
func VerifyAuditFiles(files []string, knownHead string) (AuditSummary, error) {
	if len(files) == 0 {
		return AuditSummary{}, errors.New("no audit log files to verify")
	}
	v := chainVerifier{known: knownHead}
	for i, name := range files {
		if err := v.path(name); err != nil {
			return v.sum, err
		}
		if i < len(files)-1 && v.sum.Files[i].Lines == 0 {
			return v.sum, &AuditError{File: name, Line: 1, Msg: "empty, but files follow it"}
		}
	}
	return v.sum, nil
}

// chainVerifier checks records in order across one or more files.
type chainVerifier struct {
	strict bool   // the chain must begin at AuditGenesis
	known  string // a head to look for
	sum    AuditSummary
	began  bool // a record was read
}

func (v *chainVerifier) path(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return v.file(f, name)
}

func (v *chainVerifier) file(r io.Reader, name string) error {
	if v.sum.Head == "" {
		v.known = strings.ToLower(strings.TrimSpace(v.known)) // as pasted
		v.sum = AuditSummary{Head: AuditGenesis, Start: AuditGenesis, SeenAt: -1}
		if v.known == AuditGenesis {
			v.sum.SeenAt = 0
		}
	}
	fs := AuditFileSummary{Name: name}
	v.sum.Size = 0
	defer func() { v.sum.Files = append(v.sum.Files, fs) }()
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := readAuditLine(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &AuditError{File: name, Line: n, Msg: err.Error(), Torn: errors.Is(err, errTornLine)}
		}
		rec, hash, err := ParseAuditLine(line)
		if err != nil {
			msg := err.Error()
			if at := splicedRecord(line); at > 0 {
				msg = fmt.Sprintf("a cut-off record (its first %d bytes) runs into a complete one: a write failed and was not cut back (a full disk under an older mcbn); deleting those %d bytes restores the line", at, at)
			}
			return &AuditError{File: name, Line: n, Msg: msg}
		}
		if msg := v.link(rec, n == 1); msg != "" {
			return &AuditError{File: name, Line: n, Msg: msg}
		}
		v.began = true
		v.sum.Lines++
		v.sum.Head, v.sum.LastSeq = hash, rec.Seq
		v.sum.Size += int64(len(line)) + 1
		if fs.Lines == 0 {
			fs.FirstSeq = rec.Seq
		}
		fs.Lines, fs.LastSeq = fs.Lines+1, rec.Seq
		if v.known != "" && v.sum.SeenAt < 0 && hash == v.known {
			v.sum.SeenAt = int(rec.Seq)
		}
		switch rec.Decision {
		case DecisionRelease:
			v.sum.Releases++
		case DecisionRefuse:
			v.sum.Refusals++
		case DecisionRefusalSummary:
			for _, c := range rec.Counts {
				v.sum.Summarized = addSat(v.sum.Summarized, c)
			}
		}
	}
}

// link checks that rec follows the records read so far; "" when it does.
func (v *chainVerifier) link(rec *AuditRecord, firstOfFile bool) string {
	if !v.began {
		switch {
		case rec.Prev == AuditGenesis && rec.Decision == DecisionRotate:
			return "a rotate record cannot begin a chain"
		case rec.Prev == AuditGenesis && rec.Seq != 1:
			return fmt.Sprintf("seq %d, want 1 (lines deleted or reordered)", rec.Seq)
		case rec.Prev == AuditGenesis:
		case rec.Decision != DecisionRotate:
			return "does not follow the previous line (a line was deleted, inserted or reordered here)"
		case v.strict:
			return fmt.Sprintf("this file continues an earlier one (after seq %d, hash %.12s…): verify the whole series", rec.Seq-1, rec.Prev)
		case rec.Seq < 2:
			return fmt.Sprintf("rotate record with seq %d, want at least 2", rec.Seq)
		default:
			v.sum.Start, v.sum.FirstSeq = rec.Prev, rec.Seq
			if v.known == rec.Prev {
				v.sum.SeenAt = int(rec.Seq - 1)
			}
			return ""
		}
		v.sum.FirstSeq = 1
		return ""
	}
	switch {
	case firstOfFile && rec.Decision != DecisionRotate:
		return "does not begin with a rotate record continuing the previous file"
	case firstOfFile && rec.Prev != v.sum.Head:
		return "does not follow the last line of the previous file (a rotated file was deleted, replaced or reordered)"
	case !firstOfFile && rec.Decision == DecisionRotate:
		return "a rotate record inside a file (lines were spliced in)"
	case rec.Prev != v.sum.Head:
		return "does not follow the previous line (a line was deleted, inserted or reordered here)"
	case rec.Seq != v.sum.LastSeq+1:
		return fmt.Sprintf("seq %d, want %d (lines deleted or reordered)", rec.Seq, v.sum.LastSeq+1)
	}
	return ""
}

// splicedRecord returns where a complete record starts inside line after
// a cut-off one, or 0. `{"seq":` cannot occur inside a JSON string (its
// quotes would be escaped), so past byte 0 it starts a second record.
func splicedRecord(line []byte) int {
	i := bytes.Index(line[min(1, len(line)):], []byte(`{"seq":`))
	if i < 0 {
		return 0
	}
	if _, _, err := ParseAuditLine(line[i+1:]); err != nil {
		return 0
	}
	return i + 1
}

// errTornLine marks a final line without its newline.
var errTornLine = errors.New("last line has no newline (torn write or truncated file)")

// readAuditLine returns the next line without its newline; a final line
// without a newline is errTornLine.
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
			return nil, errTornLine
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
