package shareholder

import (
	"bufio"
	"bytes"
	"context"
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
)

// maxReleaseReply bounds a shareholder's reply.
const maxReleaseReply = 64 << 10

// RefusedError is a shareholder's refusal with its public reason code.
type RefusedError struct {
	Shareholder string
	Reason      string
	Status      int
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("shareholder %s refused: %s", e.Shareholder, e.Reason)
}

// releaseClient asks one shareholder for its share.
type releaseClient struct {
	name     string
	addr     string // host:port
	host     string // for SNI and CA verification
	path     string // base path + ReleasePath
	audience string
	tls      *tls.Config
	groupID  string
}

// newReleaseClient checks a shareholder entry and prepares its TLS config:
// pinned (VerifyConnection on the SPKI hash) or verified against a CA file.
func newReleaseClient(sh ShareholderConfig, groupID string, field string) (*releaseClient, error) {
	u, err := url.Parse(sh.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fieldErr(field+".url", "%q is not an https://host:port URL", sh.URL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	c := &releaseClient{
		name: sh.Name, addr: addr, host: u.Hostname(),
		path:     strings.TrimSuffix(u.EscapedPath(), "/") + ReleasePath,
		audience: sh.Audience, groupID: groupID,
	}
	if c.audience == "" {
		c.audience = sh.URL
	}
	if len(c.audience) > attest.MaxAudienceLen {
		return nil, fieldErr(field+".audience", "longer than %d bytes", attest.MaxAudienceLen)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}, ServerName: c.host}
	switch {
	case sh.Pin != "" && sh.CAFile != "":
		return nil, fieldErr(field+".pin", "set pin or ca_file, not both")
	case sh.Pin != "":
		pin, err := ParsePin(sh.Pin)
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

// fetch runs the release protocol on one fresh TLS connection and returns
// the parsed share (not yet verified against the group). The caller wipes it.
func (c *releaseClient) fetch(ctx context.Context, provider attest.TokenProvider) (*psk.Share, error) {
	d := tls.Dialer{Config: c.tls}
	raw, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	conn := raw.(*tls.Conn)
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	cs := conn.ConnectionState()
	nonce, err := ChannelNonce(&cs)
	if err != nil {
		return nil, err
	}
	token, err := provider.Token(ctx, c.audience, []string{nonce})
	if err != nil {
		return nil, fmt.Errorf("attestation token: %w", err)
	}
	body, err := json.Marshal(ReleaseRequest{Version: ProtocolVersion, Token: token, GroupID: c.groupID})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+c.addr+c.path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Host = c.addr
	req.Header.Set("Content-Type", "application/json")
	req.Close = true
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("sending request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReleaseReply+1))
	if err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	defer psk.Wipe(reply)
	if len(reply) > maxReleaseReply {
		return nil, errors.New("reply too large")
	}
	if resp.StatusCode != http.StatusOK {
		var ref Refusal
		if json.Unmarshal(reply, &ref) != nil || ref.Reason == "" {
			return nil, fmt.Errorf("HTTP %d without a reason", resp.StatusCode)
		}
		return nil, &RefusedError{Shareholder: c.name, Reason: knownReason(ref.Reason), Status: resp.StatusCode}
	}
	var rr ReleaseResponse
	if err := json.Unmarshal(reply, &rr); err != nil {
		return nil, errors.New("reply is not a release response")
	}
	defer psk.Wipe(rr.Share)
	if rr.Version != ProtocolVersion {
		return nil, fmt.Errorf("reply version %d, want %d", rr.Version, ProtocolVersion)
	}
	sh, err := psk.ParseShare(rr.Share)
	if err != nil {
		return nil, errors.New("reply does not hold a valid share file")
	}
	return sh, nil
}

// knownReason keeps a shareholder's reason code only when it is one of the
// protocol's, so a hostile shareholder cannot write into logs or metric
// labels.
func knownReason(r string) string {
	switch r {
	case ReasonBadRequest, ReasonTooLarge, ReasonTokenInvalid, ReasonPolicyDenied,
		ReasonConsentRevoked, ReasonRateLimited, ReasonUnavailable:
		return r
	}
	return "unknown_reason"
}
