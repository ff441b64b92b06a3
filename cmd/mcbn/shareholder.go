package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mcbn/mcbn/shareholder"
)

// The shareholder command group: the participant's share-release daemon and
// its tools. Logic lives in package shareholder; this file parses flags,
// wires signals and prints.

func init() {
	register("", &command{
		name:    "shareholder",
		summary: "hold one share and release it only to attested proxies (the consent daemon)",
		usage: `mcbn shareholder runs a participant's share-release daemon and its tools: the
consent switch, the audit log verifier and a ready-made release policy.

Example:

  $ mcbn shareholder serve --config alice.yaml
  $ mcbn shareholder consent revoke --config alice.yaml

See docs/share-release.md for the protocol, the configuration and the audit log.`,
	})
	shLeaf("", "serve", "run the share-release daemon", shServeUsage, runShareholderServe)
	register("shareholder", &command{name: "consent", summary: "grant or revoke consent (edits the config; the daemon follows)",
		usage: "mcbn shareholder consent grant|revoke --config FILE sets the config's consent value.\n\nExample:\n\n  $ mcbn shareholder consent revoke --config alice.yaml"})
	for _, v := range []string{"grant", "revoke"} {
		shLeaf("consent", v, v+" consent", fmt.Sprintf(shConsentUsage, v, map[string]string{"grant": "granted", "revoke": "revoked"}[v]), runShareholderConsent(v))
	}
	register("shareholder", &command{name: "audit", summary: "inspect the hash-chained audit log",
		usage: "mcbn shareholder audit verifies the daemon's hash-chained audit log.\n\nExample:\n\n  $ mcbn shareholder audit verify alice-audit.jsonl"})
	shLeaf("audit", "verify", "check an audit log's hash chain", shAuditUsage, runShareholderAuditVerify)
	register("shareholder", &command{name: "policy", summary: "print ready-made CEL release policies",
		usage: "mcbn shareholder policy prints release policies to start from.\n\nExample:\n\n  $ mcbn shareholder policy confidential-space --image-digest sha256:... --project my-project"})
	shLeaf("policy", "confidential-space", "print a policy accepting only production Confidential Space images", shPolicyUsage, runShareholderPolicy)
	shLeaf("", "pin", "print the SPKI pin of a PEM certificate", shPinUsage, runShareholderPin)
}

// shLeaf registers a leaf under "shareholder" (+ sub group).
func shLeaf(group, name, summary, usage string, run func(c *command, path string, args []string, stdout, stderr io.Writer) error) {
	path := strings.TrimSpace("shareholder " + group)
	c := &command{name: name, summary: summary, usage: usage}
	c.run = func(args []string, stdout, stderr io.Writer) error {
		return run(c, "mcbn "+path+" "+name, args, stdout, stderr)
	}
	register(path, c)
}

const shServeUsage = `Usage: mcbn shareholder serve --config shareholder.yaml [--log-level info]

Runs the share-release daemon: HTTPS (TLS 1.3 only) with POST /v1/release,
GET /healthz and GET /metrics. A share is released only to a proxy whose
attestation token verifies, is bound to the very TLS connection it arrives on,
satisfies the CEL release policy, and only while consent is granted. Every
decision is appended to the hash-chained audit log.

Without tls.cert/tls.key a self-signed ECDSA P-256 certificate is generated at
start; its pin (sha256:<hex of the SPKI SHA-256>) is printed so proxies can pin it.

Signals: SIGHUP reloads the config (policy, consent, verifier) and logs what
changed; the config file is also polled every reload_interval. SIGTERM or
SIGINT stop the daemon.

Example:

  $ mcbn shareholder serve --config alice.yaml
  pin: sha256:3b0c...e41f
  listening: https://127.0.0.1:8441`

const shConsentUsage = `Usage: mcbn shareholder consent %[1]s --config shareholder.yaml

Sets consent to %[2]s in the config file, editing only its consent line
(comments and layout are kept; the file is replaced atomically). A running
daemon notices within its reload_interval (default 2s), or at once on SIGHUP.

Example:

  $ mcbn shareholder consent %[1]s --config alice.yaml`

const shAuditUsage = `Usage: mcbn shareholder audit verify [--head HASH] FILE

Checks every line of an audit log and the hash chain between them. An edited,
deleted, inserted or reordered line is reported with its line number (exit 1).
On success it prints the line count and the head hash.

Lines cut from the end leave a valid chain; only a head recorded earlier shows
them. --head takes such a head (the audit_head the daemon logs at start, or
one an earlier verify printed, kept somewhere the log's writer cannot reach)
and fails unless some line of the log has it.

Example:

  $ mcbn shareholder audit verify alice-audit.jsonl
  ok: 42 lines (40 releases, 2 refusals), head 9f86d081...
  $ mcbn shareholder audit verify --head 9f86d081... alice-audit.jsonl`

const shPolicyUsage = `Usage: mcbn shareholder policy confidential-space --image-digest sha256:... [--image-digest ...] [--project P ...] [--service-account SA ...] [--dev]

Prints a CEL release policy accepting only production Confidential Space
tokens: swname CONFIDENTIAL_SPACE, dbgstat disabled-since-boot, STABLE in
support_attributes, and one of the given image digests (and, when given, one of
the projects and one of the service accounts). Values match exactly.

--dev prints the local-demo variant that accepts the dev attester's tokens
instead (swname MCBN_DEV_ATTESTER); never use it in production.

Example:

  $ mcbn shareholder policy confidential-space --image-digest sha256:a76f...cfd1f --project prod-project > policy.cel`

const shPinUsage = `Usage: mcbn shareholder pin CERT.pem

Prints the SPKI pin (sha256:<hex>) of a PEM certificate, for a proxy's
shareholders[].pin when the daemon uses a certificate of its own.

Example:

  $ mcbn shareholder pin /etc/mcbn/alice-cert.pem
  sha256:…`

// shSignals is replaced by tests.
var shSignals = func() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	return ch, func() { signal.Stop(ch) }
}

// shStarted, when set by a test, receives the running daemon.
var shStarted func(*shareholder.Server)

func runShareholderServe(c *command, path string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(c, path, stdout)
	cfgPath := fs.String("config", "", "shareholder config `file` (YAML)")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *cfgPath == "" {
		return usagef("--config is required")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", *level)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	cfg, err := shareholder.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	srv, err := shareholder.NewServer(context.Background(), cfg, shareholder.ServerOptions{ConfigPath: *cfgPath, Logger: log})
	if err != nil {
		return fmt.Errorf("config %s: %w", *cfgPath, err)
	}
	sig, stop := shSignals()
	defer stop()
	if err := srv.Start(); err != nil {
		srv.Close()
		return fmt.Errorf("config %s: %w", *cfgPath, err)
	}
	defer srv.Close()
	fmt.Fprintf(stdout, "pin: %s\nlistening: https://%s\n", srv.Pin(), srv.Addr())
	if shStarted != nil {
		shStarted(srv)
	}
	for s := range sig {
		if s == syscall.SIGHUP {
			log.Info("SIGHUP: reloading the configuration")
			srv.Reload()
			continue
		}
		log.Info("stopping", "signal", s.String())
		return nil
	}
	return nil
}

func runShareholderConsent(value string) func(c *command, path string, args []string, stdout, stderr io.Writer) error {
	want := shareholder.ConsentGranted
	if value == "revoke" {
		want = shareholder.ConsentRevoked
	}
	return func(c *command, path string, args []string, stdout, stderr io.Writer) error {
		fs := newFlags(c, path, stdout)
		cfgPath := fs.String("config", "", "shareholder config `file` (YAML)")
		pos, err := parseFlags(fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usagef("unexpected argument %q", pos[0])
		}
		if *cfgPath == "" {
			return usagef("--config is required")
		}
		changed, err := shareholder.SetConsent(*cfgPath, want)
		if err != nil {
			return err
		}
		if changed {
			fmt.Fprintf(stdout, "consent %s in %s; a running daemon follows within its reload_interval (or send it SIGHUP)\n", want, *cfgPath)
		} else {
			fmt.Fprintf(stdout, "consent already %s in %s\n", want, *cfgPath)
		}
		return nil
	}
}

func runShareholderAuditVerify(c *command, path string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(c, path, stdout)
	head := fs.String("head", "", "a head `HASH` recorded earlier that the log must still contain")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one audit log FILE")
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	sum, err := shareholder.VerifyAuditFrom(f, *head)
	if err != nil {
		var ae *shareholder.AuditError
		if errors.As(err, &ae) {
			return fmt.Errorf("%s: line %d: %s (lines 1-%d are intact)", pos[0], ae.Line, ae.Msg, ae.Line-1)
		}
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if *head != "" && sum.SeenAt < 0 {
		return fmt.Errorf("%s: no line has head %s: lines were cut from the end or the log was replaced (the chain of its %d lines is intact)", pos[0], *head, sum.Lines)
	}
	fmt.Fprintf(stdout, "ok: %d lines (%d releases, %d refusals), head %s\n", sum.Lines, sum.Releases, sum.Refusals, sum.Head)
	if *head != "" {
		fmt.Fprintf(stdout, "the given head is line %d; %d lines were added since\n", sum.SeenAt, sum.Lines-sum.SeenAt)
	}
	return nil
}

// shList is a repeatable string flag.
type shList []string

func (l *shList) String() string     { return strings.Join(*l, ",") }
func (l *shList) Set(v string) error { *l = append(*l, v); return nil }

func runShareholderPolicy(c *command, path string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(c, path, stdout)
	var digests, projects, sas shList
	fs.Var(&digests, "image-digest", "allowed image `digest` sha256:<64 hex> (repeatable)")
	fs.Var(&projects, "project", "allowed GCP `project` id (repeatable)")
	fs.Var(&sas, "service-account", "allowed service `account` email (repeatable)")
	dev := fs.Bool("dev", false, "accept the local dev attester's tokens instead (demo only)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if len(digests) == 0 {
		return usagef("--image-digest is required")
	}
	text, err := shareholder.ConfidentialSpacePolicy(shareholder.CSPolicyOptions{
		ImageDigests: digests, Projects: projects, ServiceAccounts: sas, Dev: *dev,
	})
	if err != nil {
		return usagef("%v", err)
	}
	fmt.Fprint(stdout, text)
	return nil
}

func runShareholderPin(c *command, path string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(c, path, stdout)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one certificate FILE")
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("%s: no PEM CERTIFICATE block", pos[0])
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %v", pos[0], err)
	}
	fmt.Fprintln(stdout, shareholder.SPKIPin(cert))
	return nil
}
