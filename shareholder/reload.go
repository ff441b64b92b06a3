package shareholder

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"time"
)

// fileStamp is what the watcher compares to notice an edit: the content
// hashes (an edit may keep size and modification time, e.g. granted/revoked).
type fileStamp string

func stampFiles(paths ...string) fileStamp {
	var b strings.Builder
	for _, p := range paths {
		if p == "" {
			continue
		}
		if data, err := readSmallFile(p, maxConfigSize); err == nil {
			fmt.Fprintf(&b, "%s|%x;", p, sha256.Sum256(data))
		} else {
			fmt.Fprintf(&b, "%s|unreadable;", p)
		}
	}
	return fileStamp(b.String())
}

// Reload re-reads the config file and swaps policy, consent and verifier.
// Settings that need a restart (listen, tls, share_store, group, audit_log,
// rate_limit, max_body_bytes is live) are reported and kept. A config that
// fails to load keeps everything as it was.
func (s *Server) Reload() error {
	if s.opts.ConfigPath == "" {
		return fmt.Errorf("no config file to reload")
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.state.Load()
	cfg, err := LoadConfig(s.opts.ConfigPath)
	if err == nil {
		var st *serverState
		if st, err = s.buildState(cfg); err == nil {
			s.stamp = stampFiles(s.opts.ConfigPath, cfg.PolicyFile)
			s.apply(old, st)
			return nil
		}
	}
	s.stamp = stampFiles(s.opts.ConfigPath, old.cfg.PolicyFile)
	s.metrics.reloads.WithLabelValues("error").Inc()
	s.log.Error("reload failed; keeping the previous configuration", "err", err)
	return err
}

// apply installs st, logging what changed.
func (s *Server) apply(old, st *serverState) {
	o, n := old.cfg, st.cfg
	var changed []string
	if o.Consent != n.Consent {
		changed = append(changed, "consent "+o.Consent+" -> "+n.Consent)
	}
	if o.policyText != n.policyText {
		changed = append(changed, "policy "+policyDigest(o.policyText)+" -> "+policyDigest(n.policyText))
	}
	if o.Verifier != n.Verifier {
		changed = append(changed, "verifier")
	}
	if o.MaxBodyBytes != n.MaxBodyBytes {
		changed = append(changed, "max_body_bytes")
	}
	var restart []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"listen", o.Listen == n.Listen},
		{"tls", o.TLS == n.TLS},
		{"share_store", o.ShareStore == n.ShareStore},
		{"group", o.Group == n.Group},
		{"audit_log", o.AuditLog == n.AuditLog},
		{"rate_limit", o.RateLimit == n.RateLimit},
		{"reload_interval", o.ReloadInterval == n.ReloadInterval},
	} {
		if !f.same {
			restart = append(restart, f.name)
		}
	}
	// Keep the live values of restart-only settings so the state tells the truth.
	n.Listen, n.TLS, n.ShareStore, n.Group, n.AuditLog = o.Listen, o.TLS, o.ShareStore, o.Group, o.AuditLog
	n.RateLimit, n.ReloadInterval, n.dir = o.RateLimit, o.ReloadInterval, o.dir
	if o.Verifier == n.Verifier {
		st.verifier = old.verifier // keep the warm key cache
	}
	s.state.Store(st)
	s.metrics.setConsent(n.Consent)
	s.metrics.reloads.WithLabelValues("ok").Inc()
	if len(changed) == 0 {
		changed = []string{"nothing"}
	}
	s.log.Info("configuration reloaded", "changed", strings.Join(changed, ", "))
	if len(restart) > 0 {
		s.log.Warn("these settings changed but take effect only after a restart", "settings", strings.Join(restart, ", "))
	}
}

// watch polls the config (and policy) file and reloads on change, so a
// `mcbn shareholder consent revoke` takes effect without a signal.
func (s *Server) watch(every time.Duration) {
	defer s.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.reloadMu.Lock()
		cur := stampFiles(s.opts.ConfigPath, s.state.Load().cfg.PolicyFile)
		changed := cur != s.stamp
		s.reloadMu.Unlock()
		if changed {
			s.Reload()
		}
	}
}
