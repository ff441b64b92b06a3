package shareholder

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"
)

// fileStamp is what the watcher compares to notice an edit: the content
// hashes of the config and policy files (an edit may keep size and
// modification time, e.g. granted/revoked).
type fileStamp string

// stampConfig is the stamp of exactly the texts cfg was loaded from, so an
// edit made while it was loading still shows as a change.
func stampConfig(cfg *Config) fileStamp {
	p := ""
	if cfg.PolicyFile != "" {
		p = sha256Hex([]byte(cfg.policyText))
	}
	return fileStamp(cfg.fileSum + "|" + p)
}

// currentStamp is the stamp of the files as they are now.
func currentStamp(configPath, policyFile string) fileStamp {
	c, p := "unreadable", ""
	if data, err := readSmallFile(configPath, maxConfigSize); err == nil {
		c = sha256Hex(data)
	}
	if policyFile != "" {
		p = "unreadable"
		if data, err := readSmallFile(policyFile, 64<<10); err == nil {
			p = sha256Hex(data)
		}
	}
	return fileStamp(c + "|" + p)
}

// Reload re-reads the config file and installs it: policy, consent,
// verifier and body limit change at once; settings that need a restart are
// reported and kept.
//
// A config that does not load fails closed: the daemon refuses every
// release (config_invalid, or unavailable when the file cannot be read at
// all) until it loads again, whatever consent it said before, because the
// participant may have edited it to revoke. Its consent line is still read
// on its own (ParseConsentLine) for Consent and the status. The failure is
// not marked as seen: the watcher retries at every reload_interval, so a
// transient failure (a file mid-replacement, no free descriptor) ends by
// itself.
//
// When Reload returns, no release decided under the previous state is still
// under way (see install).
func (s *Server) Reload() error {
	if s.opts.ConfigPath == "" {
		return errors.New("no config file to reload")
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.state.Load()
	path := s.opts.ConfigPath
	data, err := readSmallFile(path, maxConfigSize)
	if err != nil {
		return s.refuseAll(old, checkConfigUnreadable, "", "", &ConfigFileError{Path: path, Err: err})
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return s.refuseAll(old, checkConfigUnreadable, "", "", &ConfigFileError{Path: path, Err: err})
	}
	cfg, err := ParseConfig(data, dir)
	var st *serverState
	if err == nil {
		st, err = s.buildState(cfg)
	}
	if err != nil {
		check := checkConfigInvalid
		var pe *fs.PathError
		if errors.As(err, &pe) {
			check = checkConfigUnreadable // e.g. the policy file: a local failure
		}
		consent, _ := ParseConsentLine(data)
		return s.refuseAll(old, check, consent, sha256Hex(data), fmt.Errorf("config %s: %w", path, err))
	}
	st.consent, st.fileSum = cfg.Consent, cfg.fileSum
	s.stamp = stampConfig(cfg)
	s.apply(old, st)
	return nil
}

// refuseAll installs the refusing state for a config that does not load.
// It keeps the last policy and verifier (they only pick the refusal a
// request gets, never a release).
func (s *Server) refuseAll(old *serverState, check, consent, sum string, err error) error {
	why := strings.ReplaceAll(err.Error(), "\n", "; ")
	st := &serverState{cfg: old.cfg, policy: old.policy, verifier: old.verifier, evidence: old.evidence,
		consent: consent, refusing: check, why: why, fileSum: sum}
	s.stamp = "" // not seen: retried at the next tick
	s.install(old, st)
	s.metrics.reloads.WithLabelValues("error").Inc()
	line := consent
	if line == "" {
		line = "unknown"
	}
	if why == s.lastErr {
		s.log.Debug("the config still does not load; refusing every release", "check", check, "err", why)
		return err
	}
	s.lastErr = why
	msg := "the config does not load: refusing every release until it does (retried every reload_interval)"
	if check == checkConfigUnreadable {
		msg = "the config cannot be read (a local failure): refusing every release until it can (retried every reload_interval)"
	}
	s.log.Error(msg, "check", check, "err", why, "consent_line", line, "was_releasing", old.releasing())
	return err
}

// install stores st and waits until no release decided under an earlier
// state is still under way: releases hold the gate for reading from their
// last look at the state until their share is written (see release), so
// once the write lock is ours each of them has either finished or will see
// st and follow it. The wait is bounded by shareWriteTimeout.
func (s *Server) install(old, st *serverState) {
	st.gen = old.gen + 1
	s.state.Store(st)
	s.gate.Lock()
	s.metrics.setState(st)
	s.gate.Unlock()
}

// apply installs st, logging what changed.
func (s *Server) apply(old, st *serverState) {
	o, n := old.cfg, st.cfg
	var changed []string
	if old.refusing != "" {
		changed = append(changed, "the config loads again")
	}
	if old.consent != st.consent {
		changed = append(changed, "consent "+orUnknown(old.consent)+" -> "+st.consent)
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
		{"listen", o.Listen == n.Listen && o.ListenAllInterfaces == n.ListenAllInterfaces},
		{"tls", o.TLS == n.TLS},
		{"share_store", o.ShareStore == n.ShareStore},
		{"group", o.Group == n.Group},
		{"audit_log", o.AuditLog == n.AuditLog && o.AuditRotateBytes == n.AuditRotateBytes},
		{"rate_limit", o.RateLimit == n.RateLimit},
		{"reload_interval", o.ReloadInterval == n.ReloadInterval},
		{"max_connections", o.MaxConnections == n.MaxConnections},
		{"audit_refusals_per_second", o.AuditRefusalsPerSecond == n.AuditRefusalsPerSecond},
		{"metrics", o.MetricsListen() == n.MetricsListen() && o.Metrics.ListenAllInterfaces == n.Metrics.ListenAllInterfaces},
		{"control_socket", o.ControlSocket == n.ControlSocket},
	} {
		if !f.same {
			restart = append(restart, f.name)
		}
	}
	// Keep the live values of restart-only settings so the state tells the truth.
	n.Listen, n.ListenAllInterfaces, n.TLS, n.ShareStore, n.Group, n.AuditLog, n.AuditRotateBytes = o.Listen, o.ListenAllInterfaces, o.TLS, o.ShareStore, o.Group, o.AuditLog, o.AuditRotateBytes
	n.RateLimit, n.ReloadInterval, n.dir = o.RateLimit, o.ReloadInterval, o.dir
	n.MaxConnections, n.AuditRefusalsPerSecond, n.Metrics, n.ControlSocket = o.MaxConnections, o.AuditRefusalsPerSecond, o.Metrics, o.ControlSocket
	if o.Verifier == n.Verifier {
		st.verifier = old.verifier // keep the warm key cache
	}
	s.install(old, st)
	s.lastErr = ""
	s.metrics.reloads.WithLabelValues("ok").Inc()
	if len(changed) == 0 {
		changed = []string{"nothing"}
	}
	s.log.Info("configuration reloaded", "changed", strings.Join(changed, ", "), "releasing", st.releasing())
	if len(restart) > 0 {
		s.log.Warn("these settings changed but take effect only after a restart", "settings", strings.Join(restart, ", "))
	}
}

func orUnknown(c string) string {
	if c == "" {
		return "unknown"
	}
	return c
}

// watch polls the config (and policy) file and reloads on change, or at
// every tick while the last load failed, so a `mcbn shareholder consent
// revoke` takes effect without a signal and a transient failure ends.
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
		changed := s.stamp == "" || currentStamp(s.opts.ConfigPath, s.state.Load().cfg.PolicyFile) != s.stamp
		s.reloadMu.Unlock()
		if changed {
			s.Reload()
		}
	}
}
