package gather

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// The daemon kind is registered like any other, so the seam every kind
// uses is the one the default kind is built through.
// stsAudience is the audience of the tokens Google's STS exchanges.
const stsAudience = "https://sts.googleapis.com"

func init() { RegisterKind(KindDaemon, newDaemonParticipant) }

// Bounds on what a proxy reads from one shareholder per request. A
// participant may be hostile: http.ReadResponse has no header limit of its
// own, so without these an endless header (or status line) drives the proxy
// out of memory every round. The byte budget below caps everything read from
// the connection after the TLS handshake; the request's deadline (the
// source's timeout) caps the time.
const (
	// maxReplyHeader bounds the status line and headers together.
	maxReplyHeader = 16 << 10
	// maxReleaseReply bounds the decoded reply body. The largest legitimate
	// reply, a release response holding one share file, is under 1 KiB.
	maxReleaseReply = 16 << 10
	// maxReplyFraming is what chunked transfer framing may add on the wire.
	maxReplyFraming = 16 << 10
	// maxReplyBytes is the most a proxy reads from one shareholder in one
	// request, headers and framing included.
	maxReplyBytes = maxReplyHeader + maxReleaseReply + maxReplyFraming
)

// errReplyTooLarge is returned by replyBudget once the budget is spent.
var errReplyTooLarge = errors.New("reply too large")

// replyBudget reads at most left bytes from r, then fails with
// errReplyTooLarge (not io.EOF, so a cut-off reply never parses as a
// complete one).
type replyBudget struct {
	r    io.Reader
	left int64
}

func (b *replyBudget) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errReplyTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// daemonParticipant asks one shareholder daemon for its share with the
// release protocol (docs/share-release.md; the wire types are package
// shareholder's).
type daemonParticipant struct {
	name     string
	addr     string // host:port
	host     string // for SNI and CA verification
	path     string // base path + ReleasePath
	audience string
	tls      *tls.Config
	groupID  string
	// dial opens the TCP connection (nil: a net.Dialer); tests wrap it to
	// count the bytes a hostile shareholder gets the proxy to read.
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

func (c *daemonParticipant) Name() string { return c.name }
func (c *daemonParticipant) Kind() string { return KindDaemon }

// newDaemonParticipant checks a daemon entry and prepares its TLS config:
// pinned (VerifyConnection on the SPKI hash) or verified against a CA file.
func newDaemonParticipant(e Entry) (Participant, error) {
	sh, field := e.Config, e.Field
	if !sh.Options.IsZero() {
		return nil, fieldErr(field+".options", "kind daemon takes url, pin, ca_file and audience, not options")
	}
	u, err := url.Parse(sh.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fieldErr(field+".url", "%q is not an https://host:port URL", sh.URL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	c := &daemonParticipant{
		name: e.Name, addr: addr, host: u.Hostname(),
		path:     strings.TrimSuffix(u.EscapedPath(), "/") + shareholder.ReleasePath,
		audience: sh.Audience, groupID: e.Group.ID,
	}
	if c.audience == "" {
		c.audience = sh.URL
	}
	if c.audience == stsAudience {
		// A token for STS's audience is what a Cloud KMS participant's
		// federation accepts. Handing one to a daemon would let a
		// malicious daemon replay it at STS within its lifetime and
		// decrypt every KMS participant's share.
		return nil, fieldErr(field+".audience", "%s is the audience of Google's STS; a daemon must have an audience of its own (its URL by default), or it could replay the token to KMS participants' federation", stsAudience)
	}
	if len(c.audience) > attest.MaxAudienceLen {
		return nil, fieldErr(field+".audience", "longer than %d bytes", attest.MaxAudienceLen)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}, ServerName: c.host}
	switch {
	case sh.Pin != "" && sh.CAFile != "":
		return nil, fieldErr(field+".pin", "set pin or ca_file, not both")
	case sh.Pin != "":
		pin, err := shareholder.ParsePin(sh.Pin)
		if err != nil {
			return nil, fieldErr(field+".pin", "%v", err)
		}
		// The pin replaces name and chain checks; VerifyConnection runs on
		// every handshake, resumed ones included.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = pinVerifier(pin)
	case sh.CAFile != "":
		pem, err := readSmallFile(sh.CAFile, 1<<20)
		if err != nil {
			return nil, fieldErr(field+".ca_file", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fieldErr(field+".ca_file", "no PEM certificate in %s", sh.CAFile)
		}
		tc.RootCAs = pool
	default:
		return nil, fieldErr(field+".pin", "missing: set pin (sha256:... printed by the shareholder at start) or ca_file")
	}
	c.tls = tc
	return c, nil
}

// pinVerifier returns a VerifyConnection callback accepting exactly the
// leaf whose SPKI hashes to pin. Names and chains are not checked: the pin
// is the trust anchor. The comparison is constant-time (the pin is public,
// but nothing is lost by it).
func pinVerifier(pin []byte) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("shareholder sent no certificate")
		}
		sum := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
		if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
			return fmt.Errorf("certificate pin mismatch: got %s", shareholder.SPKIPin(cs.PeerCertificates[0]))
		}
		return nil
	}
}

// Fetch runs the release protocol on one fresh TLS connection and returns
// the parsed share (not yet verified against the group). The caller wipes it.
// Everything read from the shareholder is bounded: maxReplyBytes in all, of
// which at most maxReplyHeader for the status line and headers, and
// maxReleaseReply for the body; a context without a deadline gets
// DefaultTimeout.
func (c *daemonParticipant) Fetch(ctx context.Context, fr FetchRequest) (*psk.Share, error) {
	var sh *psk.Share
	err := c.exchange(ctx, fr, shareholder.ReleaseRequest{}, func(conn io.Reader, req *http.Request) (err error) {
		sh, err = c.readReply(conn, req)
		return err
	})
	return sh, err
}

// exchange runs one request of the release protocol on a fresh TLS
// connection: handshake, a token bound to the channel, the request rr
// (version, token and group id filled in here), then read judges the reply.
func (c *daemonParticipant) exchange(ctx context.Context, fr FetchRequest, rr shareholder.ReleaseRequest, read func(io.Reader, *http.Request) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	if fr.Attestation == nil {
		return Local(errors.New("no attestation token provider"))
	}
	dial := c.dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	raw, err := dial(ctx, c.addr)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	// Closing the TCP connection, not the TLS one: a close_notify could
	// block on a peer that stopped reading.
	defer raw.Close()
	dl, _ := ctx.Deadline()
	raw.SetDeadline(dl)
	// Closing on cancel unblocks any read or write at once.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	conn := tls.Client(raw, c.tls)
	if err := conn.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	cs := conn.ConnectionState()
	nonce, err := shareholder.ChannelNonce(&cs)
	if err != nil {
		return err
	}
	token, err := fr.Attestation.Token(ctx, c.audience, []string{nonce})
	if err != nil {
		return fmt.Errorf("attestation token: %w", err)
	}
	rr.Version, rr.Token, rr.GroupID = shareholder.ProtocolVersion, token, c.groupID
	body, err := json.Marshal(rr)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+c.addr+c.path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Host = c.addr
	req.Header.Set("Content-Type", "application/json")
	req.Close = true
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("sending request: %w", err)
	}
	return read(conn, req)
}

// readReply reads and judges the reply to a share request from conn (see
// readBody), and parses the share.
func (c *daemonParticipant) readReply(conn io.Reader, req *http.Request) (*psk.Share, error) {
	reply, err := c.readBody(conn, req)
	defer psk.Wipe(reply)
	if err != nil {
		return nil, err
	}
	var rr shareholder.ReleaseResponse
	if err := json.Unmarshal(reply, &rr); err != nil {
		return nil, errors.New("reply is not a release response")
	}
	defer psk.Wipe(rr.Share)
	if rr.Version != shareholder.ProtocolVersion {
		return nil, fmt.Errorf("reply version %d, want %d", rr.Version, shareholder.ProtocolVersion)
	}
	sh, err := parseShare(rr.Share)
	if err != nil {
		return nil, errors.New("reply does not hold a valid share file")
	}
	return sh, nil
}

// parseShare parses a share file received from a daemon. A variable so a
// test can show that mode evaluate never parses one.
var parseShare = psk.ParseShare

// readBody reads the reply to req from conn, reading at most maxReplyBytes
// from it: a refusal becomes a *RefusedError; a 200 reply's body is
// returned (the caller wipes it).
func (c *daemonParticipant) readBody(conn io.Reader, req *http.Request) ([]byte, error) {
	budget := &replyBudget{r: conn, left: maxReplyBytes}
	br := bufio.NewReaderSize(budget, 4<<10)
	resp, err := http.ReadResponse(br, req)
	if errors.Is(err, errReplyTooLarge) {
		return nil, fmt.Errorf("reply header larger than %d bytes", maxReplyHeader)
	}
	if err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	defer resp.Body.Close()
	// What the header took: read from the connection, less what bufio holds
	// of the body already.
	if used := maxReplyBytes - budget.left - int64(br.Buffered()); used > maxReplyHeader {
		return nil, fmt.Errorf("reply header larger than %d bytes", maxReplyHeader)
	}
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReleaseReply+1))
	if errors.Is(err, errReplyTooLarge) {
		psk.Wipe(reply)
		return nil, fmt.Errorf("reply larger than %d bytes on the wire", maxReplyBytes)
	}
	if err != nil {
		psk.Wipe(reply)
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	if len(reply) > maxReleaseReply {
		psk.Wipe(reply)
		return nil, fmt.Errorf("reply body larger than %d bytes", maxReleaseReply)
	}
	if resp.StatusCode != http.StatusOK {
		var ref shareholder.Refusal
		if json.Unmarshal(reply, &ref) != nil || ref.Reason == "" {
			return nil, fmt.Errorf("HTTP %d without a reason", resp.StatusCode)
		}
		return nil, &RefusedError{Participant: c.name, Reason: knownReason(ref.Reason), Status: resp.StatusCode}
	}
	return reply, nil
}

// knownReason keeps a shareholder's reason code only when it is one of the
// protocol's, so a hostile shareholder cannot write into logs or metric
// labels.
func knownReason(r string) string {
	switch r {
	case shareholder.ReasonBadRequest, shareholder.ReasonTooLarge, shareholder.ReasonTokenInvalid,
		shareholder.ReasonPolicyDenied, shareholder.ReasonConsentRevoked, shareholder.ReasonRateLimited,
		shareholder.ReasonUnavailable, shareholder.ReasonConfigInvalid:
		return r
	}
	return "unknown_reason"
}
