package shareholder

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// auditBudget bounds the refusals of unverified requests that get an audit
// line (and a daemon log line) of their own: at most perSecond in each
// one-second window, across all clients, so junk spread over many source
// addresses (which no per-address limit catches) cannot make the daemon
// write and fsync a line per request. Refusals over the budget are counted
// by reason, and summarize turns the counts into one summary line, written
// once a second while there is something to say. Every refusal is thus
// either a line of its own or part of a summary's count.
//
// Refusals of verified callers and releases are never budgeted: they are
// what the audit log is for, and attested callers are few and rate-limited
// per subject.
type auditBudget struct {
	mu        sync.Mutex
	perSecond int
	now       func() time.Time
	window    time.Time // start of the current one-second window
	used      int       // lines written in the current window
	since     time.Time // start of the current summary period
	counts    map[string]uint64
	total     uint64
}

func newAuditBudget(perSecond int, now func() time.Time) *auditBudget {
	t := now()
	return &auditBudget{perSecond: perSecond, now: now, window: t, since: t, counts: map[string]uint64{}}
}

// take reports whether a refusal with this reason may have its own line;
// when not, it is counted for the next summary.
func (b *auditBudget) take(reason string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if now.Sub(b.window) >= time.Second || now.Before(b.window) {
		b.window, b.used = now, 0
	}
	if b.used < b.perSecond {
		b.used++
		return true
	}
	b.counts[reason]++
	b.total++
	return false
}

// summarizeOnly counts a refusal that never gets a line of its own.
func (b *auditBudget) summarizeOnly(reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counts[reason]++
	b.total++
}

// summarize returns the refusals counted since the last call (by reason)
// with a one-line description, and starts a new period; ok is false when
// there were none.
func (b *auditBudget) summarize() (since time.Time, counts map[string]uint64, text string, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	since, b.since = b.since, now
	if b.total == 0 {
		return since, nil, "", false
	}
	reasons := make([]string, 0, len(b.counts))
	for r := range b.counts {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if b.counts[reasons[i]] != b.counts[reasons[j]] {
			return b.counts[reasons[i]] > b.counts[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %d", r, b.counts[r])
	}
	text = fmt.Sprintf("%d refusals not logged individually in the last %s, by reason: %s",
		b.total, now.Sub(since).Round(100*time.Millisecond), strings.Join(parts, ", "))
	counts = b.counts
	b.counts, b.total = map[string]uint64{}, 0
	return since, counts, text, true
}

// flushSummary writes the pending summary line, if any, to the audit log
// and the daemon's log.
func (s *Server) flushSummary() {
	since, counts, text, ok := s.budget.summarize()
	if !ok {
		return
	}
	if _, err := s.audit.AppendSummary(since, counts); err != nil {
		s.log.Error("audit log write failed (a local failure)", "err", err)
	}
	s.log.Warn("refusals summarized", "detail", text)
}

// summarize flushes the audit summary once a second until Close.
func (s *Server) summarize() {
	defer s.done.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.flushSummary()
		}
	}
}
