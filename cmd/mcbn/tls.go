package main

import (
	"bufio"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/tlspsk"
)

// tlsStdin is the data source of the tls commands (a variable for tests).
var tlsStdin io.Reader = os.Stdin

// tlsServeHook, if set, receives the server's listener (for tests).
var tlsServeHook func(net.Listener)

func newTLSCmd() *cobra.Command {
	return group("tls", "TLS-PSK client and server for testing by hand (like openssl s_client/s_server)",
		`mcbn tls runs the tlspsk package by hand: a client that connects stdin and
stdout to a TLS-PSK server, and a server that echoes or relays one connection.`,
		`  $ mcbn tls server --psk 1a2b3c4d --listen 127.0.0.1:8443 --echo &
  $ echo hello | mcbn tls client --psk 1a2b3c4d 127.0.0.1:8443`,
		newTLSClientCmd(), newTLSServerCmd())
}

const tlsClientLong = `Connects to HOST:PORT with TLS-PSK (TLS 1.3 external PSK, or TLS 1.2 PSK if
the server only speaks that; --tls1_3 / --tls1_2 restrict the version like
OpenSSL's options). --cipher takes OpenSSL or IANA suite names of either
version; naming a TLS 1.2 plain PSK suite (e.g. PSK-AES128-GCM-SHA256, no
forward secrecy) offers it, which the client otherwise does only with
--allow-psk-only. Copies stdin to
the peer and the peer to stdout, and prints a status line (version, suite,
identity, group) on stderr. At the end of stdin it half-closes (close_notify)
and keeps reading until the peer closes. The key is never printed.`

const tlsClientExample = `  # against OpenSSL
  $ openssl s_server -nocert -psk 1a2b3c4d -tls1_3 -accept 8081 &
  $ echo hello | mcbn tls client --psk 1a2b3c4d 127.0.0.1:8081
  $ openssl s_server -nocert -psk 1a2b3c4d -tls1_2 -accept 8082 &
  $ echo hello | mcbn tls client --psk 1a2b3c4d --tls1_2 --cipher PSK-AES128-GCM-SHA256 127.0.0.1:8082`

const tlsServerLong = `Listens on ADDR (printed on stderr) for TLS-PSK clients: TLS 1.3 external PSK
and TLS 1.2 PSK (ECDHE-PSK preferred; plain PSK suites such as
PSK-AES128-GCM-SHA256 are accepted from clients that offer nothing better,
unless --require-fs). With
--echo every connection is echoed back; otherwise the first connection whose
handshake succeeds is relayed to stdin/stdout, like openssl s_server; when the
peer half-closes, the rest of stdin is still sent.

--psk-file holds lines "identity:hexkey" (the stunnel PSKsecrets and GnuTLS
psk passwd format; '#' starts a comment) or a single hex key for
--psk-identity. Keys are never printed.`

const tlsServerExample = `  $ mcbn tls server --psk 1a2b3c4d --listen 127.0.0.1:8443 --echo &
  $ openssl s_client -tls1_3 -psk 1a2b3c4d -connect 127.0.0.1:8443
  $ openssl s_client -tls1_2 -cipher PSK-AES128-GCM-SHA256 -psk 1a2b3c4d -connect 127.0.0.1:8443`

func newTLSClientCmd() *cobra.Command {
	c := leaf("client --psk HEX [--psk-identity ID] [--tls1_3|--tls1_2] [--cipher NAME] HOST:PORT",
		"connect to a TLS-PSK server; stdin to the peer, the peer to stdout", tlsClientLong, tlsClientExample,
		exactArgs(1, "want exactly one HOST:PORT"))
	var f tlsFlags
	f.register(c.Flags())
	timeout := c.Flags().Duration("timeout", 30*time.Second, "handshake timeout (`DURATION`)")
	c.RunE = func(c *cobra.Command, pos []string) error {
		return runTLSClient(&f, *timeout, pos[0], c.OutOrStdout(), c.ErrOrStderr())
	}
	return c
}

func newTLSServerCmd() *cobra.Command {
	c := leaf(`server (--psk HEX [--psk-identity ID] | --psk-file FILE) --listen ADDR [--echo]
         [--tls1_3|--tls1_2] [--cipher NAMES] [--psk-hint HINT] [--require-fs]`,
		"accept TLS-PSK connections; echo them or relay one to stdin/stdout", tlsServerLong, tlsServerExample, noArgs)
	var f tlsFlags
	f.register(c.Flags())
	listen := c.Flags().String("listen", "", "`ADDR` to listen on, e.g. 127.0.0.1:8443")
	pskFile := c.Flags().String("psk-file", "", "`FILE` of identity:hexkey lines")
	echo := c.Flags().Bool("echo", false, "echo every connection instead of relaying one to stdin/stdout")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runTLSServer(&f, *listen, *pskFile, *echo, c.OutOrStdout(), c.ErrOrStderr())
	}
	return c
}

// tlsFlags are the options both commands share.
type tlsFlags struct {
	psk, identity, cipher, groups, pskHash, keylog, hint string
	tls13, tls12, pskOnly, requireFS                     bool
}

func (f *tlsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.psk, "psk", "", "the pre-shared key in `HEX`")
	fs.StringVar(&f.identity, "psk-identity", tlspsk.DefaultIdentity, "the PSK identity (`ID`)")
	fs.StringVar(&f.cipher, "cipher", "", "cipher suites (`NAMES`), OpenSSL or IANA names separated by ':' or ','")
	fs.StringVar(&f.groups, "groups", "", "key exchange `GROUPS` separated by ':' (X25519MLKEM768, X25519, P-256)")
	fs.StringVar(&f.pskHash, "psk-hash", "", "`HASH` the PSK is tied to: sha256 (default) or sha384 (default when --cipher names only SHA-384 suites)")
	fs.StringVar(&f.keylog, "keylog", "", "append NSS key log lines to this `FILE` (debugging only: it exposes the traffic)")
	fs.BoolVar(&f.tls13, "tls1_3", false, "TLS 1.3 only")
	fs.BoolVar(&f.tls12, "tls1_2", false, "TLS 1.2 only")
	fs.BoolVar(&f.pskOnly, "allow-psk-only", false, "permit psk_ke and offer TLS 1.2 plain PSK suites: no forward secrecy")
	fs.BoolVar(&f.requireFS, "require-fs", false, "refuse TLS 1.2 plain PSK suites (no forward secrecy)")
	fs.StringVar(&f.hint, "psk-hint", "", "TLS 1.2 PSK identity `HINT` (server)")
}

// config builds a tlspsk.Config; it returns usage errors for bad flags.
func (f *tlsFlags) config() (*tlspsk.Config, io.Closer, error) {
	cfg := &tlspsk.Config{Identity: f.identity, AllowPSKOnly: f.pskOnly, RequireForwardSecrecy: f.requireFS, IdentityHint: f.hint}
	if f.pskOnly && f.requireFS {
		return nil, nil, usagef("--allow-psk-only and --require-fs exclude each other")
	}
	if f.tls13 && f.tls12 {
		return nil, nil, usagef("--tls1_3 and --tls1_2 exclude each other")
	}
	if f.tls13 {
		cfg.MinVersion, cfg.MaxVersion = tlspsk.VersionTLS13, tlspsk.VersionTLS13
	}
	if f.tls12 {
		cfg.MinVersion, cfg.MaxVersion = tlspsk.VersionTLS12, tlspsk.VersionTLS12
	}
	// Only TLS 1.3 suites (OpenSSL names "TLS_...") tie the PSK to a hash.
	any13, all384 := false, true
	for _, name := range strings.FieldsFunc(f.cipher, func(r rune) bool { return r == ':' || r == ',' }) {
		id, ok := tlspsk.CipherSuiteByName(strings.TrimSpace(name))
		if !ok {
			return nil, nil, usagef("unknown cipher suite %q", name)
		}
		cfg.CipherSuites = append(cfg.CipherSuites, id)
		if n := tlspsk.CipherSuiteName(id); strings.HasPrefix(n, "TLS_") {
			any13 = true
			all384 = all384 && strings.HasSuffix(n, "SHA384")
		}
	}
	all384 = all384 && any13
	switch strings.ToLower(f.pskHash) {
	case "":
		if all384 {
			cfg.PSKHash = crypto.SHA384
		}
	case "sha256", "sha-256":
		cfg.PSKHash = crypto.SHA256
	case "sha384", "sha-384":
		cfg.PSKHash = crypto.SHA384
	default:
		return nil, nil, usagef("--psk-hash must be sha256 or sha384")
	}
	for _, g := range strings.FieldsFunc(f.groups, func(r rune) bool { return r == ':' || r == ',' }) {
		switch strings.ToLower(strings.TrimSpace(g)) {
		case "x25519mlkem768":
			cfg.CurvePreferences = append(cfg.CurvePreferences, tlspsk.X25519MLKEM768)
		case "x25519":
			cfg.CurvePreferences = append(cfg.CurvePreferences, tlspsk.X25519)
		case "p-256", "p256", "prime256v1", "secp256r1":
			cfg.CurvePreferences = append(cfg.CurvePreferences, tlspsk.CurveP256)
		default:
			return nil, nil, usagef("unknown group %q", g)
		}
	}
	var closer io.Closer
	if f.keylog != "" {
		kf, err := os.OpenFile(f.keylog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, err
		}
		cfg.KeyLogWriter, closer = kf, kf
	}
	return cfg, closer, nil
}

func tlsParseHexKey(s, what string) ([]byte, error) {
	k, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "0x"))
	if err != nil || len(k) == 0 {
		return nil, usagef("%s is not a non-empty hex string", what) // never echo the value
	}
	return k, nil
}

func runTLSClient(f *tlsFlags, timeout time.Duration, addr string, stdout, stderr io.Writer) error {
	if f.psk == "" {
		return usagef("--psk is required")
	}
	cfg, closer, err := f.config()
	if err != nil {
		return err
	}
	if closer != nil {
		defer closer.Close()
	}
	if cfg.Key, err = tlsParseHexKey(f.psk, "--psk"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	conn, err := tlspsk.DialContext(ctx, "tcp", addr, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("handshake with %s failed (%s): %w", addr, tlspsk.FailureReason(err), err)
	}
	defer conn.Close()
	fmt.Fprintf(stderr, "mcbn tls client: connected to %s: %s\n", addr, tlsDescribe(conn.ConnectionState()))
	go func() {
		io.Copy(conn, tlsStdin)
		conn.CloseWrite()
	}()
	if _, err := io.Copy(stdout, conn); err != nil {
		return fmt.Errorf("connection to %s (%s): %w", addr, tlspsk.FailureReason(err), err)
	}
	return nil
}

func tlsDescribe(st tlspsk.ConnectionState) string {
	v := "TLSv1.3"
	if st.Version == tlspsk.VersionTLS12 {
		v = "TLSv1.2"
	}
	group := st.Group.String()
	if st.Group == 0 {
		group = "none (psk_ke, no forward secrecy)"
		if st.Version == tlspsk.VersionTLS12 {
			group = "none (plain PSK, no forward secrecy)"
		}
	}
	s := fmt.Sprintf("%s, %s, identity %q, group %s", v, tlspsk.CipherSuiteName(st.CipherSuite), st.PSKIdentity, group)
	if st.HelloRetryRequest {
		s += " (after HelloRetryRequest)"
	}
	if st.Version == tlspsk.VersionTLS12 && !st.ExtendedMasterSecret {
		s += ", no extended master secret"
	}
	return s
}

// tlsLoadPSKFile reads "identity:hexkey" lines or a single hex key.
func tlsLoadPSKFile(path, identity string) (map[string][]byte, error) {
	if err := proxy.CheckSecretFile(path); err != nil {
		return nil, err
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	keys := map[string][]byte{}
	sc := bufio.NewScanner(fh)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, hexKey := identity, line
		if i := strings.LastIndexByte(line, ':'); i >= 0 {
			id, hexKey = line[:i], line[i+1:]
		}
		k, err := hex.DecodeString(strings.TrimSpace(hexKey))
		if err != nil || len(k) == 0 {
			return nil, fmt.Errorf("%s line %d: the key is not hex", path, n)
		}
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("%s line %d: identity %q appears twice", path, n, id)
		}
		keys[id] = k
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key", path)
	}
	return keys, nil
}

func runTLSServer(f *tlsFlags, listen, pskFile string, echo bool, stdout, stderr io.Writer) error {
	if listen == "" {
		return usagef("--listen is required")
	}
	if (f.psk == "") == (pskFile == "") {
		return usagef("give exactly one of --psk and --psk-file")
	}
	cfg, closer, err := f.config()
	if err != nil {
		return err
	}
	if closer != nil {
		defer closer.Close()
	}
	var keys map[string][]byte
	if f.psk != "" {
		k, err := tlsParseHexKey(f.psk, "--psk")
		if err != nil {
			return err
		}
		keys = map[string][]byte{f.identity: k}
	} else if keys, err = tlsLoadPSKFile(pskFile, f.identity); err != nil {
		return err
	}
	cfg.GetKey = func(id string) ([]byte, error) { return keys[id], nil }
	l, err := tlspsk.Listen("tcp", listen, cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintf(stderr, "mcbn tls server: listening on %s\n", l.Addr())
	if tlsServeHook != nil {
		tlsServeHook(l)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		raw, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		conn := raw.(*tlspsk.Conn)
		hctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = conn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "mcbn tls server: handshake from %s failed (%s): %v\n", conn.RemoteAddr(), tlspsk.FailureReason(err), err)
			conn.Close()
			continue
		}
		fmt.Fprintf(stderr, "mcbn tls server: accepted %s: %s\n", conn.RemoteAddr(), tlsDescribe(conn.ConnectionState()))
		if echo {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				io.Copy(conn, conn)
				conn.CloseWrite()
			}()
			continue
		}
		defer conn.Close()
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			io.Copy(conn, tlsStdin)
			conn.CloseWrite()
		}()
		if _, err := io.Copy(stdout, conn); err != nil {
			return fmt.Errorf("connection from %s (%s): %w", conn.RemoteAddr(), tlspsk.FailureReason(err), err)
		}
		<-sent // the peer half-closed: finish sending stdin
		return nil
	}
}
