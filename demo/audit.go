package demo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/mcbn/mcbn/shareholder"
)

// auditCount is what one daemon's audit log says it did.
type auditCount struct {
	shares   int            // "released share of participant ..."
	partials map[uint64]int // "released partial evaluation ... epoch N", by epoch
	refused  int
	kinds    map[string]bool // evidence kinds released to: the subject's prefix (mock, ...)
	example  string          // one partial evaluation line for epoch 2 (--tprf)
}

var auditEpochRE = regexp.MustCompile(`epoch (\d+)`)

// Evidence kinds an audit line's subject shows.
const (
	kindMock  = "mock-tsm evidence"
	kindToken = "attestation tokens"
)

// evidenceKind tells from a release's subject what the proxy presented:
// raw evidence has subjects "mock:…", "tdx…", "sev-snp:…"
// (attest/evidence_verify.go), a token its sub claim.
func evidenceKind(subject string) string {
	switch {
	case strings.HasPrefix(subject, "mock:"):
		return kindMock
	case strings.HasPrefix(subject, "tdx"):
		return "tdx evidence"
	case strings.HasPrefix(subject, "sev-snp:"):
		return "sev-snp evidence"
	}
	return kindToken
}

// readAudit reads name's audit log, checking each line's own hash.
func readAudit(dir, name string) (*auditCount, error) {
	path := filepath.Join(dir, name+".audit.jsonl")
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c := &auditCount{partials: map[uint64]int{}, kinds: map[string]bool{}}
	br := bufio.NewReader(f)
	for {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			// A last line without its newline is still being written (the
			// daemons run while the demo reads): it is not counted.
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r, _, err := shareholder.ParseAuditLine(bytes.TrimSuffix(line, []byte("\n")))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		switch r.Decision {
		case shareholder.DecisionRefuse:
			c.refused++
		case shareholder.DecisionRefusalSummary:
			for _, n := range r.Counts {
				c.refused += int(n)
			}
		case shareholder.DecisionRelease:
			c.kinds[evidenceKind(r.Subject)] = true
			switch {
			case strings.HasPrefix(r.Detail, "released share"):
				c.shares++
			case strings.HasPrefix(r.Detail, "released partial evaluation"):
				m := auditEpochRE.FindStringSubmatch(r.Detail)
				if m == nil {
					return nil, fmt.Errorf("%s: a partial evaluation line names no epoch: %q", path, r.Detail)
				}
				ep, _ := strconv.ParseUint(m[1], 10, 64)
				c.partials[ep]++
				if ep == tprfNext && c.example == "" {
					c.example = r.Detail
				}
			}
		}
	}
	return c, nil
}

// auditStep reads every daemon's audit log and checks it tells the
// story: shares released (or, with --tprf, only partial evaluations,
// epoch 2 among them), and with --tee mock-tsm every release made to mock
// evidence. The audit lines hold no secret: the decision, its reason, the
// caller's subject.
func auditStep(n *narrator, net *network) error {
	names := make([]string, 0, len(net.holders))
	for name := range net.holders {
		names = append(names, name)
	}
	sort.Strings(names)
	n.say("== What the participants' audit logs say (each line hash-chained, written before anything leaves)")
	var shares, epoch2 int
	example := ""
	for _, name := range names {
		c, err := readAudit(net.dir, name)
		if err != nil {
			return fmt.Errorf("%s's audit log: %w", name, err)
		}
		shares += c.shares
		epoch2 += c.partials[tprfNext]
		if example == "" {
			example = c.example
		}
		var eps []string
		keys := make([]uint64, 0, len(c.partials))
		for ep := range c.partials {
			keys = append(keys, ep)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		for _, ep := range keys {
			eps = append(eps, fmt.Sprintf("epoch %d: %d", ep, c.partials[ep]))
		}
		var kinds []string
		for k := range c.kinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		line := fmt.Sprintf("   %s: %d shares released", name, c.shares)
		if net.o.TPRF {
			line += fmt.Sprintf(", partial evaluations released (%s)", strings.Join(eps, ", "))
		}
		line += fmt.Sprintf(", %d refused; released to: %s", c.refused, strings.Join(kinds, ", "))
		n.say("%s", line)
		if net.o.TEE == TEEMockTSM && (len(c.kinds) != 1 || !c.kinds[kindMock]) {
			return fmt.Errorf("%s released to %s, not only to mock-tsm evidence", name, strings.Join(kinds, ", "))
		}
	}
	switch {
	case net.o.TPRF && shares > 0:
		return fmt.Errorf("an evaluate-only participant released its share (%d audit lines)", shares)
	case net.o.TPRF && epoch2 == 0:
		return errors.New("no participant released a partial evaluation for epoch 2")
	case !net.o.TPRF && shares == 0:
		return errors.New("no audit log records a share release")
	}
	if net.o.TPRF {
		n.say("   e.g. %q; no \"released share\" line anywhere: no share ever left a participant", example)
	}
	if net.o.TEE == TEEMockTSM {
		n.say("   every release went to a proxy presenting mock-tsm evidence (subject mock:…), checked by the daemon itself")
	}
	return nil
}
