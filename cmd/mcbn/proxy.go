package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mcbn/mcbn/proxy"
)

// The proxy command group: the client and server sidecars. Logic lives in
// package proxy; this file parses flags, wires signals and waits.

const proxyLong = `mcbn proxy runs the sidecars. A client proxy sits next to the client app and
takes plain TCP or UDP on localhost; a server proxy sits next to the server
app. Between them traffic crosses the network over TLS-PSK (TCP) or DTLS-PSK
(UDP) with a pre-shared key from a file, the environment, a stunnel PSKsecrets
file, or gathered from shareholders who consent (source: shares).

See docs/proxy.md for every setting, the environment variables, the admin
endpoints and the metrics.`

const proxyExample = `  # a TCP tunnel with a key from a file (the same file on both sides)
  $ mcbn proxy server --listen tls://:8443 --connect tcp://127.0.0.1:8080 --psk-file psk.txt
  $ mcbn proxy client --listen tcp://127.0.0.1:8080 --connect tls://server:8443 --psk-file psk.txt`

const proxyLeafLong = `Runs a %[1]s proxy: one or more routes from --config, or one route from flags.
Every flag can also be given as an environment variable: MCBN_PROXY_ followed
by the flag name in upper case with '-' as '_' (--psk-file: MCBN_PROXY_PSK_FILE).
Precedence: flags, then environment, then the config file, then defaults. With
a config file, a route's addresses, key and TLS/DTLS settings come from the
file only (the release policy pins it): --listen, --connect, --psk-*, --tls-*
and the like are then an error, as are their variables; timeouts, limits,
logging and --admin may still be given. An MCBN_PROXY_ variable that names
no setting is an error too: a misspelt one would otherwise be ignored.

--check runs 'mcbn proxy check' on the config: the same loading and
validation, the PSK sources read, the consent dry run for shares sources.

Signals: SIGHUP re-reads PSK files without dropping tunnels; SIGTERM or SIGINT
stop accepting and let open tunnels finish for up to --drain-timeout (a second
signal closes them at once).`

var proxyExamples = map[proxy.Mode]string{
	proxy.ModeServer: "  $ mcbn proxy server --listen tls://:8443 --connect tcp://127.0.0.1:8080 --psk-file psk.txt --admin 127.0.0.1:9090\n  $ mcbn proxy server --config server.yaml",
	proxy.ModeClient: "  $ mcbn proxy client --listen tcp://127.0.0.1:8080 --connect tls://server.example:8443 --psk-file psk.txt\n  $ mcbn proxy client --config client.yaml",
}

// proxySignals gives the signals a proxy command follows, and a stop
// function; runProxy replaces it (tests).
type proxySignals func() (<-chan os.Signal, func())

func osProxySignals() (<-chan os.Signal, func()) {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	return sig, func() { signal.Stop(sig) }
}

func newProxyCmd() *cobra.Command {
	return group("proxy", "run the client or server sidecar (TCP over TLS-PSK, UDP over DTLS-PSK)", proxyLong, proxyExample,
		newProxyModeCmd(proxy.ModeClient, osProxySignals, nil),
		newProxyModeCmd(proxy.ModeServer, osProxySignals, nil),
		newProxyCheckCmd(),
	)
}

// newProxyModeCmd is 'mcbn proxy client' or 'mcbn proxy server'. started,
// when not nil, receives the running proxy (tests).
func newProxyModeCmd(mode proxy.Mode, signals proxySignals, started chan<- *proxy.Proxy) *cobra.Command {
	c := leaf(string(mode)+" [--config FILE] [flags]", fmt.Sprintf("run the %s-side proxy", mode),
		fmt.Sprintf(proxyLeafLong, mode), proxyExamples[mode], noArgs)
	vals := addProxyFlags(c.Flags())
	check := c.Flags().Bool("check", false, "check the config, its PSK sources and (shares) the consent dry run, then exit: the same as mcbn proxy check")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if *check {
			// The same check as 'mcbn proxy check', with the mode known.
			return checkProxyConfig(mode, proxy.LoadOptions{Flags: vals}, 30*time.Second, c.OutOrStdout())
		}
		sig, stop := signals()
		defer stop()
		return serveProxy(mode, vals, c.ErrOrStderr(), sig, started)
	}
	return c
}

// runProxy runs 'mcbn proxy MODE args' with the signals sig instead of the
// process's, sending the running proxy to started (tests).
func runProxy(mode proxy.Mode, args []string, stdout, stderr io.Writer, sig <-chan os.Signal, started chan<- *proxy.Proxy) error {
	c := newProxyModeCmd(mode, func() (<-chan os.Signal, func()) { return sig, func() {} }, started)
	c.SilenceErrors, c.SilenceUsage = true, true
	c.SetArgs(append([]string{}, args...))
	c.SetOut(stdout)
	c.SetErr(stderr)
	return c.Execute()
}

// serveProxy loads the config, starts the proxy and serves until a stop
// signal.
func serveProxy(mode proxy.Mode, vals map[string]string, stderr io.Writer, sig <-chan os.Signal, started chan<- *proxy.Proxy) error {
	cfg, err := proxy.LoadConfig(mode, proxy.LoadOptions{Flags: vals})
	if err != nil {
		return err
	}
	log := proxy.NewLogger(cfg, stderr)
	p, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		p.Close()
		return err
	}
	// GOMAXPROCS is Go's default (the CPUs of the host, or of the cgroup's
	// CPU limit) unless set in the environment; docs/proxy.md, "CPU".
	log.Info("proxy running", "gomaxprocs", runtime.GOMAXPROCS(0), "cpus", runtime.NumCPU())
	if started != nil {
		started <- p
	}
	for s := range sig {
		if s == syscall.SIGHUP {
			log.Info("SIGHUP: reloading PSK sources")
			p.Reload()
			continue
		}
		log.Info("stopping: draining open tunnels", "signal", s.String(), "drain_timeout", cfg.DrainTimeout.D().String())
		ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout.D())
		done := make(chan struct{})
		go func() {
			p.Shutdown(ctx)
			close(done)
		}()
	wait:
		for {
			select {
			case <-done:
				break wait
			case s2 := <-sig:
				if s2 == syscall.SIGHUP {
					continue
				}
				log.Warn("second signal: closing now", "signal", s2.String())
				cancel()
				<-done
				break wait
			}
		}
		cancel()
		log.Info("stopped")
		return nil
	}
	p.Close()
	return nil
}

// addProxyFlags puts the proxy's settings on fs. Package proxy registers
// them on a standard library flag.FlagSet (it keeps the standard library's
// flag and knows no CLI library); each is moved here onto pflag with a
// typed placeholder for the help. The returned map holds the flags given,
// by name, once fs is parsed.
func addProxyFlags(fs *pflag.FlagSet) map[string]string {
	gofs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	vals := proxy.RegisterFlags(gofs)
	gofs.VisitAll(func(f *flag.Flag) {
		v := &goFlagValue{inner: f.Value, typ: proxyPlaceholder(f.Name)}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			v.typ = "bool"
		}
		pf := &pflag.Flag{Name: f.Name, Usage: f.Usage, Value: v, DefValue: f.Value.String()}
		if v.typ == "bool" {
			pf.NoOptDefVal = "true" // --x is --x=true; --x=false turns it off
		}
		fs.AddFlag(pf)
	})
	return vals
}

// goFlagValue is a standard library flag.Value seen by pflag; typ is what
// the help shows after the flag (pflag prints a Value's Type there).
type goFlagValue struct {
	inner flag.Value
	typ   string
}

func (v *goFlagValue) String() string     { return v.inner.String() }
func (v *goFlagValue) Set(s string) error { return v.inner.Set(s) }
func (v *goFlagValue) Type() string       { return v.typ }
func (v *goFlagValue) IsBoolFlag() bool   { return v.typ == "bool" }

// proxyPlaceholders are the help's placeholders of the proxy's settings
// that take a value (TestProxyFlagPlaceholders wants one for each).
var proxyPlaceholders = map[string]string{
	"config":                 "FILE",
	"admin":                  "HOST:PORT",
	"log-format":             "text|json",
	"log-level":              "LEVEL",
	"drain-timeout":          "DURATION",
	"probe-interval":         "DURATION",
	"name":                   "NAME",
	"transport":              "tcp|udp",
	"listen":                 "URL",
	"connect":                "URL",
	"identity":               "ID",
	"psk":                    "HEX",
	"psk-env":                "VAR",
	"psk-file":               "FILE",
	"psk-secrets":            "FILE",
	"psk-source":             "KIND",
	"tls-min-version":        "1.2|1.3",
	"tls-max-version":        "1.2|1.3",
	"tls-cipher-suites":      "SUITES",
	"tls-groups":             "GROUPS",
	"tls-identity-hint":      "HINT",
	"tls-psk-hash":           "sha256|sha384",
	"dtls-cipher-suites":     "SUITES",
	"dtls-identity-hint":     "HINT",
	"dtls-flight-interval":   "DURATION",
	"dtls-mtu":               "BYTES",
	"handshake-timeout":      "DURATION",
	"dial-timeout":           "DURATION",
	"first-byte-timeout":     "DURATION",
	"idle-timeout":           "DURATION",
	"max-connections":        "N",
	"max-sessions":           "N",
	"max-pending-handshakes": "N",
	"session-queue":          "N",
}

func proxyPlaceholder(name string) string {
	if p, ok := proxyPlaceholders[name]; ok {
		return p
	}
	return "VALUE"
}
