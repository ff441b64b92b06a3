package shareholder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// The control socket.
//
// `mcbn shareholder consent revoke` must not return while the daemon may
// still release under the old consent. It edits the config file, then asks
// the daemon, over a Unix socket, to reload and answer with the state it
// ended up in; the daemon answers only after Reload, which returns once no
// release decided under the previous state is under way (Server.install).
// "releasing": false in that answer is the confirmation.
//
// Why a Unix socket: it needs no PID file and no signal (a signal cannot
// carry an answer), it is reachable only from this machine, and its file
// mode (0600) limits it to the daemon's user and root, who could edit the
// config anyway. On Linux the daemon also checks each client's user
// (SO_PEERCRED), which holds in the moment before the chmod too. A loopback
// HTTP endpoint would be open to every local user and a status file would
// need a signal plus polling. The socket offers only `reload` (what the
// watcher and SIGHUP do anyway) and `status`; the answer holds no secret,
// only the consent state and the config's hash.
//
// Protocol: the client sends one line, "reload" or "status"; the daemon
// answers one JSON line (ControlStatus) and closes.

// Control socket bounds.
const (
	controlTimeout   = 30 * time.Second
	controlMaxConns  = 4
	maxControlAnswer = 16 << 10
	// maxSocketPath is below the sun_path limit of Linux (108) and the BSDs (104).
	maxSocketPath = 100
)

// Control states.
const (
	StateReleasing      = "releasing"
	StateConsentRevoked = "consent_revoked"
)

// ControlStatus is the daemon's answer on its control socket.
type ControlStatus struct {
	// Generation counts the states the daemon installed (each reload, good
	// or failed, installs one).
	Generation uint64 `json:"generation"`
	// Consent is granted, revoked or unknown (the config is unreadable or
	// its consent line is broken).
	Consent string `json:"consent"`
	// Releasing is false when no release can start from now on.
	Releasing bool `json:"releasing"`
	// State is releasing, consent_revoked, config_invalid or config_unreadable.
	State string `json:"state"`
	// ConfigSHA256 is the hex SHA-256 of the config text last read.
	ConfigSHA256 string `json:"config_sha256,omitempty"`
	// ConfigError is why the config does not load (state config_*).
	ConfigError string `json:"config_error,omitempty"`
	// Error is set when the request was not understood.
	Error string `json:"error,omitempty"`
}

// Status returns the daemon's state as the control socket reports it.
func (s *Server) Status() ControlStatus {
	st := s.state.Load()
	cs := ControlStatus{Generation: st.gen, Consent: orUnknown(st.consent), Releasing: st.releasing(), ConfigSHA256: st.fileSum}
	switch {
	case st.refusing != "":
		cs.State, cs.ConfigError = st.refusing, clipField(st.why, 1024)
	case st.consent != ConsentGranted:
		cs.State = StateConsentRevoked
	default:
		cs.State = StateReleasing
	}
	return cs
}

// ControlSocketPath returns the control socket of the daemon serving the
// config file at configPath: configured (the config's control_socket) when
// set, else ".<file name>.ctl" beside the config file (symlinks resolved,
// so the daemon and the command find the same path however they name it).
func ControlSocketPath(configPath, configured string) string {
	if configured != "" {
		return configured
	}
	if real, err := filepath.EvalSymlinks(configPath); err == nil {
		configPath = real
	}
	if abs, err := filepath.Abs(configPath); err == nil {
		configPath = abs
	}
	return filepath.Join(filepath.Dir(configPath), "."+filepath.Base(configPath)+".ctl")
}

// startControl opens the control socket. A socket it cannot open is logged
// (consent commands then cannot confirm; the daemon still follows the file)
// unless another daemon answers on it: then serving the same config twice
// is an error.
func (s *Server) startControl(cfg *Config) error {
	path := ControlSocketPath(s.opts.ConfigPath, cfg.ControlSocket)
	unavailable := func(why string, err error) error {
		s.log.Warn("control socket unavailable: `mcbn shareholder consent` cannot confirm changes (the daemon still follows the config file every reload_interval); set control_socket to a writable path",
			"path", path, "why", why, "err", err)
		return nil
	}
	if len(path) > maxSocketPath {
		return unavailable("path too long for a Unix socket", nil)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return unavailable("exists and is not a socket", nil)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return fieldErr("control_socket", "another daemon answers on %s: is this config served twice?", path)
		}
		os.Remove(path) // left by a daemon that did not stop cleanly
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return unavailable("listen", err)
	}
	// Only the daemon's user (and root): the socket reveals the consent
	// state. The socket exists with the umask's mode for the moment before
	// this chmod; on Linux handleControl checks each client's user anyway,
	// and elsewhere what the socket offers is harmless enough for that
	// window.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return unavailable("chmod", err)
	}
	s.ctlLn, s.ctlPath = ln, path
	s.done.Add(1)
	go s.serveControl(ln)
	return nil
}

func (s *Server) serveControl(ln net.Listener) {
	defer s.done.Done()
	sem := make(chan struct{}, controlMaxConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if isTemporaryAccept(err) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			s.log.Error("control socket", "err", err)
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			c.Close() // busy: the client retries or reports it could not confirm
			continue
		}
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			defer func() { <-sem }()
			s.handleControl(c)
		}()
	}
}

// peerUIDFunc reads a control client's user.
type peerUIDFunc func(net.Conn) (uid int, known bool, err error)

// controlPeerUID holds peerUID; tests replace it while daemons run.
var controlPeerUID atomic.Pointer[peerUIDFunc]

func init() {
	f := peerUIDFunc(peerUID)
	controlPeerUID.Store(&f)
}

// controlPeerAllowed: the daemon's own user and root, the users the
// socket's mode (0600) admits. The mode applies only from the chmod that
// follows the socket's creation, and only while nobody loosens it; the
// peer's credentials are checked on every connection.
func controlPeerAllowed(uid, self int) bool { return uid == self || uid == 0 }

func (s *Server) handleControl(c net.Conn) {
	defer c.Close()
	// Checked before anything is read, so that another user neither is
	// read from nor holds one of the few connection slots for the timeout.
	uid, known, err := (*controlPeerUID.Load())(c)
	if err != nil {
		s.log.Warn("control socket: refused a connection whose user could not be read", "err", err)
		return
	}
	if known && !controlPeerAllowed(uid, os.Geteuid()) {
		s.log.Warn("control socket: refused a connection from another user (only the daemon's user and root may use it)", "uid", uid)
		return
	}
	c.SetDeadline(time.Now().Add(controlTimeout))
	line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
	if err != nil {
		return
	}
	var st ControlStatus
	switch req := strings.TrimSpace(line); req {
	case "reload":
		s.log.Info("control socket: reloading the configuration")
		s.Reload() // failures are in the status
		st = s.Status()
	case "status":
		st = s.Status()
	default:
		st = s.Status()
		st.Error = "unknown request " + clipField(req, 16) + `: want "reload" or "status"`
	}
	b, _ := json.Marshal(st)
	c.Write(append(b, '\n'))
}

// RequestReload asks the daemon on the control socket at path to reload its
// config and returns the state it confirms. When it returns without error,
// the state in the answer is in force and no release decided under an
// earlier state is still under way.
func RequestReload(ctx context.Context, path string) (*ControlStatus, error) {
	return controlRequest(ctx, path, "reload")
}

// RequestStatus asks the daemon for its state without reloading.
func RequestStatus(ctx context.Context, path string) (*ControlStatus, error) {
	return controlRequest(ctx, path, "status")
}

func controlRequest(ctx context.Context, path, req string) (*ControlStatus, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(c, req+"\n"); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(c, maxControlAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	st, err := ParseControlStatus(data)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return st, nil
}

// ParseControlStatus decodes and checks a daemon's answer: one JSON object
// on one line, known members only, consistent values.
func ParseControlStatus(data []byte) (*ControlStatus, error) {
	if len(data) > maxControlAnswer {
		return nil, fmt.Errorf("answer larger than %d bytes", maxControlAnswer)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	if len(data) == 0 {
		return nil, errors.New("empty answer (the daemon closed the connection)")
	}
	if bytes.IndexByte(data, '\n') >= 0 {
		return nil, errors.New("answer is more than one line")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var st ControlStatus
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("answer is not a status object: %s", jsonKind(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the status object")
	}
	if st.Error != "" {
		return nil, fmt.Errorf("the daemon did not understand the request: %s", clipField(st.Error, 200))
	}
	switch st.Consent {
	case ConsentGranted, ConsentRevoked, "unknown":
	default:
		return nil, fmt.Errorf("consent %q in the answer", clipField(st.Consent, 32))
	}
	switch st.State {
	case StateReleasing:
		if !st.Releasing || st.Consent != ConsentGranted {
			return nil, errors.New("inconsistent answer: state releasing without releasing and granted consent")
		}
	case StateConsentRevoked, checkConfigInvalid, checkConfigUnreadable:
		if st.Releasing {
			return nil, fmt.Errorf("inconsistent answer: state %s while releasing", st.State)
		}
	default:
		return nil, fmt.Errorf("state %q in the answer", clipField(st.State, 32))
	}
	return &st, nil
}
