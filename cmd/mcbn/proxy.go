package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcbn/mcbn/proxy"
)

// The proxy command group: the client and server sidecars. Logic lives in
// package proxy; this file parses flags, wires signals and waits.

const proxyUsage = `mcbn proxy runs the sidecars. A client proxy sits next to the client app and
takes plain TCP or UDP on localhost; a server proxy sits next to the server
app. Between them traffic crosses the network over TLS-PSK (TCP) or DTLS-PSK
(UDP) with a pre-shared key from a file, the environment, a stunnel PSKsecrets
file, or gathered from shareholders who consent (source: shares).

Example, a TCP tunnel with a key from a file (the same file on both sides):

  $ mcbn proxy server --listen tls://:8443 --connect tcp://127.0.0.1:8080 --psk-file psk.txt
  $ mcbn proxy client --listen tcp://127.0.0.1:8080 --connect tls://server:8443 --psk-file psk.txt

See docs/proxy.md for every setting, the environment variables, the admin
endpoints and the metrics.`

const proxyLeafUsage = `Usage: mcbn proxy %[1]s [--config FILE] [flags]

Runs a %[1]s proxy: one or more routes from --config, or one route from flags.
Every flag can also be given as an environment variable: MCBN_PROXY_ followed
by the flag name in upper case with '-' as '_' (--psk-file: MCBN_PROXY_PSK_FILE).
Precedence: flags, then environment, then the config file, then defaults. With
a config file, a route's addresses, key and TLS/DTLS settings come from the
file only (the release policy pins it): --listen, --connect, --psk-*, --tls-*
and the like are then an error, as are their variables; timeouts, limits,
logging and --admin may still be given.

--check runs 'mcbn proxy check' on the config: the same loading and
validation, the PSK sources read, the consent dry run for shares sources.

Signals: SIGHUP re-reads PSK files without dropping tunnels; SIGTERM or SIGINT
stop accepting and let open tunnels finish for up to --drain-timeout (a second
signal closes them at once).

Example:

  $ %[2]s`

var proxyExamples = map[proxy.Mode]string{
	proxy.ModeServer: "mcbn proxy server --listen tls://:8443 --connect tcp://127.0.0.1:8080 --psk-file psk.txt --admin 127.0.0.1:9090",
	proxy.ModeClient: "mcbn proxy client --listen tcp://127.0.0.1:8080 --connect tls://server.example:8443 --psk-file psk.txt",
}

func init() {
	register("", &command{name: "proxy", summary: "run the client or server sidecar (TCP over TLS-PSK, UDP over DTLS-PSK)", usage: proxyUsage})
	for _, m := range []proxy.Mode{proxy.ModeClient, proxy.ModeServer} {
		c := &command{
			name:    string(m),
			summary: fmt.Sprintf("run the %s-side proxy", m),
			usage:   fmt.Sprintf(proxyLeafUsage, m, proxyExamples[m]),
		}
		c.run = func(args []string, stdout, stderr io.Writer) error {
			sig := make(chan os.Signal, 4)
			signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sig)
			return runProxy(c, m, args, stdout, stderr, sig, nil)
		}
		register("proxy", c)
	}
}

// runProxy parses flags, starts the proxy and serves until a stop signal.
// started, when not nil, receives the running proxy (tests).
func runProxy(c *command, mode proxy.Mode, args []string, stdout, stderr io.Writer, sig <-chan os.Signal, started chan<- *proxy.Proxy) error {
	fs := newFlags(c, "mcbn proxy "+string(mode), stdout)
	vals := proxy.RegisterFlags(fs)
	check := fs.Bool("check", false, "check the config, its PSK sources and (shares) the consent dry run, then exit: the same as mcbn proxy check")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *check {
		// The same check as 'mcbn proxy check', with the mode known.
		return checkProxyConfig(mode, proxy.LoadOptions{Flags: vals}, 30*time.Second, stdout)
	}
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
