package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcbn/mcbn/shareholder"
)

// The shareholder command group: the participant's share-release daemon and
// its tools. Logic lives in package shareholder; this file parses flags,
// wires signals and prints.

func newShareholderCmd() *cobra.Command {
	consent := group("consent", "grant or revoke consent (edits the config; the daemon follows)",
		"mcbn shareholder consent grant|revoke --config FILE sets the config's consent value.",
		"  $ mcbn shareholder consent revoke --config alice.yaml",
		newShareholderConsentCmd("grant"), newShareholderConsentCmd("revoke"))
	audit := group("audit", "inspect the hash-chained audit log",
		"mcbn shareholder audit verifies the daemon's hash-chained audit log.",
		"  $ mcbn shareholder audit verify alice-audit.jsonl",
		newShareholderAuditVerifyCmd())
	policy := group("policy", "print ready-made CEL release policies",
		"mcbn shareholder policy prints release policies to start from.",
		"  $ mcbn shareholder policy confidential-space --image-digest sha256:... --project my-project",
		newShareholderPolicyCmd(), newShareholderPolicyTDXCmd(), newShareholderPolicySNPCmd(), newShareholderPolicyMockCmd())
	return group("shareholder", "hold one share and release it only to attested proxies (the consent daemon)",
		`mcbn shareholder runs a participant's share-release daemon and its tools: the
consent switch, the audit log verifier and a ready-made release policy.

See docs/share-release.md for the protocol, the configuration and the audit log.`,
		`  $ mcbn shareholder serve --config alice.yaml
  $ mcbn shareholder consent revoke --config alice.yaml`,
		newShareholderServeCmd(), consent, audit, policy, newShareholderPinCmd(), newShareholderCollateralCmd())
}

const shServeLong = `Runs the share-release daemon: HTTPS (TLS 1.3 only) with POST /v1/release and
GET /healthz; Prometheus metrics on a separate listener (metrics.listen,
default 127.0.0.1:9464). A share is released only to a proxy whose
attestation token verifies, is bound to the very TLS connection it arrives on,
satisfies the CEL release policy, and only while consent is granted and the
config file loads: a config that stops loading makes the daemon refuse every
release until it loads again. Every decision is appended to the hash-chained
audit log.

Without tls.cert/tls.key a self-signed ECDSA P-256 certificate is generated at
start; its pin (sha256:<hex of the SPKI SHA-256>) is printed so proxies can pin it.

Signals: SIGHUP reloads the config (policy, consent, verifier) and logs what
changed; the config file is also polled every reload_interval, and the
control socket (.FILE.ctl beside the config, or control_socket) lets
'mcbn shareholder consent' reload it and confirm. SIGTERM or SIGINT stop the
daemon.`

const shServeExample = `  $ mcbn shareholder serve --config alice.yaml
  pin: sha256:3b0c...e41f
  listening: https://127.0.0.1:8441`

const shConsentLong = `Sets consent to %[2]s in the config file, editing only its consent line
(comments and layout are kept; the file is replaced atomically; a revoke
works even when the rest of the file does not load). Then it asks the daemon
serving that file, over its control socket, to reload and confirm, and waits
up to --wait for the answer. A confirmed revoke means no share is released
after the command returns. Without a confirmation (no daemon answered, or it
still releases) the command says so and exits 1; a daemon that did not answer
still follows the file within its reload_interval.`

// shAuditLong and newShareholderAuditVerifyCmd: shareholder_audit.go.

const shPolicyLong = `Prints a CEL release policy accepting only production Confidential Space
tokens of the approved image, with nothing the operator chose at launch:
swname CONFIDENTIAL_SPACE, dbgstat disabled-since-boot, STABLE in
support_attributes, a TEE hwmodel (GCP_AMD_SEV, GCP_AMD_SEV_ES, GCP_INTEL_TDX;
never GCP_SHIELDED_VM), secboot true, one of the image digests, one of the
projects, no command override (submods.container.cmd_override) and no
environment override. Values match exactly.

The image must carry its configuration (go run ./build/image --bake DIR): then
the digest pins where traffic goes, and refusing overrides stops an operator
from running the approved image with its own --listen or --connect.

--project is required: the image is public and reproducible, so without it any
GCP project running it would be released shares. --any-project drops the
clause on purpose and prints a warning.

--args '["/mcbn","proxy","server","--config","/etc/mcbn/proxy.yaml"]' pins the
exact argv (submods.container.args) as well. --allow-cmd-override JSON allows
exactly one tee-cmd instead of none.

--dev prints the local-demo variant that accepts the dev attester's tokens
instead (swname MCBN_DEV_ATTESTER); never use it in production.`

const shPinLong = `Prints the SPKI pin (sha256:<hex>) of a PEM certificate, for a proxy's
shareholders[].pin when the daemon uses a certificate of its own.`

// shSignals is replaced by tests.
var shSignals = func() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	return ch, func() { signal.Stop(ch) }
}

// shStarted, when set by a test, receives the running daemon.
var shStarted func(*shareholder.Server)

func newShareholderServeCmd() *cobra.Command {
	c := leaf("serve --config shareholder.yaml [--log-level info]", "run the share-release daemon", shServeLong, shServeExample, noArgs)
	fs := c.Flags()
	cfgPath := fs.String("config", "", "shareholder config `FILE` (YAML)")
	level := fs.String("log-level", "info", "log `LEVEL`: debug, info, warn, error")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runShareholderServe(*cfgPath, *level, c.OutOrStdout(), c.ErrOrStderr())
	}
	return c
}

func runShareholderServe(cfgPath, level string, stdout, stderr io.Writer) error {
	if cfgPath == "" {
		return usagef("--config is required")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", level)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	cfg, err := shareholder.LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	srv, err := shareholder.NewServer(context.Background(), cfg, shareholder.ServerOptions{ConfigPath: cfgPath, Logger: log})
	if err != nil {
		return fmt.Errorf("config %s: %w", cfgPath, err)
	}
	sig, stop := shSignals()
	defer stop()
	if err := srv.Start(); err != nil {
		srv.Close()
		return fmt.Errorf("config %s: %w", cfgPath, err)
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

func newShareholderConsentCmd(value string) *cobra.Command {
	want := shareholder.ConsentGranted
	if value == "revoke" {
		want = shareholder.ConsentRevoked
	}
	c := leaf(value+" --config shareholder.yaml [--wait 10s] [--control-socket PATH]", value+" consent",
		fmt.Sprintf(shConsentLong, value, want), fmt.Sprintf("  $ mcbn shareholder consent %s --config alice.yaml", value), noArgs)
	fs := c.Flags()
	cfgPath := fs.String("config", "", "shareholder config `FILE` (YAML)")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the daemon's confirmation (`DURATION`; 0: do not ask it)")
	socket := fs.String("control-socket", "", "the daemon's control socket `PATH` (default: the config's control_socket, else beside the config file)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		stdout := c.OutOrStdout()
		if *cfgPath == "" {
			return usagef("--config is required")
		}
		if *wait < 0 {
			return usagef("--wait must not be negative")
		}
		changed, err := shareholder.SetConsent(*cfgPath, want)
		if err != nil {
			return err
		}
		if changed {
			fmt.Fprintf(stdout, "consent %s in %s\n", want, *cfgPath)
		} else {
			fmt.Fprintf(stdout, "consent already %s in %s\n", want, *cfgPath)
		}
		if *wait == 0 {
			fmt.Fprintf(stdout, "not asking the daemon (--wait 0): a running daemon follows within its reload_interval\n")
			return nil
		}
		return confirmConsent(*cfgPath, *socket, want, *wait, stdout)
	}
	return c
}

// confirmConsent asks the daemon serving cfgPath to reload and checks that
// the state it confirms matches want: for a revoke, that it releases no
// more (then no share leaves after this returns).
func confirmConsent(cfgPath, sock, want string, wait time.Duration, stdout io.Writer) error {
	if sock == "" {
		// A file that does not load (possible after a revoke) has no
		// readable control_socket: then the default place is tried.
		configured := ""
		if cfg, err := shareholder.LoadConfig(cfgPath); err == nil {
			configured = cfg.ControlSocket
		}
		sock = shareholder.ControlSocketPath(cfgPath, configured)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := shareholder.RequestReload(ctx, sock)
	if err != nil {
		return fmt.Errorf("consent %s is written to %s, but no daemon confirmed it within %s (%v); a daemon serving this file applies it within its reload_interval: check its log, or pass --control-socket", want, cfgPath, wait, err)
	}
	switch {
	case want == shareholder.ConsentRevoked && st.Releasing:
		return fmt.Errorf("the daemon on %s still releases (state %s, consent %s, generation %d): is it serving another config file?", sock, st.State, st.Consent, st.Generation)
	case want == shareholder.ConsentRevoked:
		fmt.Fprintf(stdout, "confirmed by the daemon (generation %d, state %s): no share is released from now on\n", st.Generation, st.State)
	case !st.Releasing:
		msg := fmt.Sprintf("the daemon on %s does not release (state %s, consent %s)", sock, st.State, st.Consent)
		if st.ConfigError != "" {
			msg += ": " + st.ConfigError
		}
		return fmt.Errorf("%s", msg)
	default:
		fmt.Fprintf(stdout, "confirmed by the daemon (generation %d): releasing to attested proxies again\n", st.Generation)
	}
	return nil
}

func newShareholderPolicyCmd() *cobra.Command {
	c := leaf("confidential-space --image-digest sha256:... --project P [flags]",
		"print a policy accepting only production Confidential Space images", shPolicyLong,
		"  $ mcbn shareholder policy confidential-space --image-digest sha256:a76f...cfd1f --project prod-project > policy.cel", noArgs)
	fs := c.Flags()
	// StringArray, not StringSlice: each flag is one value, commas and all.
	digests := fs.StringArray("image-digest", nil, "allowed image `DIGEST` sha256:<64 hex> (repeatable)")
	projects := fs.StringArray("project", nil, "allowed GCP `PROJECT` id (repeatable; required unless --any-project)")
	anyProject := fs.Bool("any-project", false, "release to the image in any GCP project (weaker; prints a warning)")
	sas := fs.StringArray("service-account", nil, "allowed service `ACCOUNT` email (repeatable)")
	argv := fs.String("args", "", "pin the container's exact argv, a JSON `LIST` of strings")
	override := fs.String("allow-cmd-override", "", "allow exactly this tee-cmd, a JSON `LIST` of strings (default: no override)")
	dev := fs.Bool("dev", false, "accept the local dev attester's tokens instead (demo only)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		o := shareholder.CSPolicyOptions{
			ImageDigests: *digests, Projects: *projects, AnyProject: *anyProject, ServiceAccounts: *sas, Dev: *dev,
		}
		return runShareholderPolicy(o, *argv, *override, c.OutOrStdout(), c.ErrOrStderr())
	}
	return c
}

func runShareholderPolicy(o shareholder.CSPolicyOptions, argv, override string, stdout, stderr io.Writer) error {
	if len(o.ImageDigests) == 0 {
		return usagef("--image-digest is required")
	}
	var err error
	if o.Args, err = jsonStringList("--args", argv); err != nil {
		return usagef("%v", err)
	}
	if o.AllowCmdOverride, err = jsonStringList("--allow-cmd-override", override); err != nil {
		return usagef("%v", err)
	}
	text, err := shareholder.ConfidentialSpacePolicy(o)
	if err != nil {
		return usagef("%v", err)
	}
	if o.AnyProject {
		fmt.Fprintln(stderr, "warning: --any-project: any GCP project that runs this image is released shares; pin --project unless you mean it")
	}
	fmt.Fprint(stdout, text)
	return nil
}

// jsonStringList parses a flag holding a JSON list of strings; empty is nil.
func jsonStringList(flag, v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("%s: want a JSON list of strings like [\"server\",\"--config\",\"/etc/mcbn/proxy.yaml\"]: %v", flag, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: an empty list; leave the flag out instead", flag)
	}
	return out, nil
}

func newShareholderPinCmd() *cobra.Command {
	c := leaf("pin CERT.pem", "print the SPKI pin of a PEM certificate", shPinLong,
		"  $ mcbn shareholder pin /etc/mcbn/alice-cert.pem\n  sha256:…", exactArgs(1, "want exactly one certificate FILE"))
	c.RunE = func(c *cobra.Command, pos []string) error { return runShareholderPin(pos, c.OutOrStdout()) }
	return c
}

func runShareholderPin(pos []string, stdout io.Writer) error {
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
