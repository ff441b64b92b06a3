package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mcbn/mcbn/shareholder"
)

// consentSteps walks through consent given, reduced, withdrawn and given
// again, checking the traffic outcome of each.
func consentSteps(ctx context.Context, n *narrator, net *network) error {
	what := "shares"
	if net.o.TPRF {
		what = "partial evaluations"
	}
	n.say("== Waiting for both proxies to gather 2 of 3 %s (attested, verified, never shown)", what)
	if err := waitUntil(ctx, "both proxies ready", net.ready); err != nil {
		return err
	}
	n.say("   ready after %s: %s", n.elapsed(), net.state())
	if err := expectFlow(ctx, n, net); err != nil {
		return err
	}
	if net.mock != nil {
		if err := otherImageStep(ctx, n, net); err != nil {
			return err
		}
	}
	if net.kms != nil {
		return kmsConsentSteps(ctx, n, net)
	}
	if net.o.Rotate {
		if err := rotateSteps(ctx, n, net); err != nil {
			return err
		}
	}
	if net.o.TPRF {
		if err := tprfSteps(ctx, n, net); err != nil {
			return err
		}
	}

	n.say("== bob revokes consent (one line of bob's config; his daemon re-reads it)")
	if err := setConsent(net, "bob", shareholder.ConsentRevoked); err != nil {
		return err
	}
	if err := waitUntil(ctx, "the proxies to see bob's refusal", func() bool {
		return strings.Contains(net.state(), "bob refused")
	}); err != nil {
		return err
	}
	n.say("   the client proxy now sees: %s", net.state())
	n.say("   alice and carol still make 2 of 3, so traffic must still flow")
	if !net.ready() {
		return fmt.Errorf("a proxy lost its key with 2 of 3 still consenting")
	}
	if err := expectFlow(ctx, n, net); err != nil {
		return err
	}

	n.say("== carol revokes consent too: only alice is left, 1 of 3 is below the threshold")
	if err := setConsent(net, "carol", shareholder.ConsentRevoked); err != nil {
		return err
	}
	if err := waitUntil(ctx, "both proxies to drop the key", net.refused); err != nil {
		return err
	}
	_, why := net.client.Ready()
	n.say("   the proxies dropped the key: %s", firstOr(why, "not ready"))
	if err := expectRefused(ctx, n, net); err != nil {
		return err
	}

	n.say("== bob grants consent again: 2 of 3, the network comes back by itself")
	if err := setConsent(net, "bob", shareholder.ConsentGranted); err != nil {
		return err
	}
	if err := waitUntil(ctx, "both proxies ready again", net.ready); err != nil {
		return err
	}
	n.say("   ready again: %s", net.state())
	return expectFlow(ctx, n, net)
}

// kmsConsentSteps are the steps after the first flow when carol is a
// Cloud KMS participant: a daemon revokes and carol's KMS share makes up
// the threshold; carol disables her key version and the network closes;
// she enables it and the network comes back.
func kmsConsentSteps(ctx context.Context, n *narrator, net *network) error {
	n.say("== bob revokes consent (one line of bob's config; his daemon re-reads it)")
	if err := setConsent(net, "bob", shareholder.ConsentRevoked); err != nil {
		return err
	}
	// Both alice's and carol's shares must be in: with bob refusing, only
	// they make 2 of 3, so this shows the KMS share counting toward T.
	if err := waitUntil(ctx, "the proxies to see bob's refusal and carol's KMS share", func() bool {
		p := net.srcWeb.Progress().String()
		return net.ready() && strings.Contains(p, "bob refused") && strings.Contains(p, "alice ok") && strings.Contains(p, "carol ok")
	}); err != nil {
		return err
	}
	n.say("   the client proxy now sees: %s", net.srcWeb.Progress())
	n.say("   alice (daemon) and carol (Cloud KMS) still make 2 of 3, so traffic must still flow")
	if err := expectFlow(ctx, n, net); err != nil {
		return err
	}

	n.say("== carol disables her key version in Cloud KMS: only alice is left, 1 of 3 is below the threshold")
	if err := net.kms.setEnabled(false); err != nil {
		return fmt.Errorf("disable carol's key version: %w", err)
	}
	if err := waitUntil(ctx, "both proxies to drop the key", net.refused); err != nil {
		return err
	}
	if err := waitUntil(ctx, "the proxies to see carol's disabled key", func() bool {
		return strings.Contains(net.srcWeb.Progress().String(), "carol refused: key_disabled")
	}); err != nil {
		return err
	}
	_, why := net.client.Ready()
	n.say("   the proxies dropped the key: %s", firstOr(why, "not ready"))
	n.say("   the client proxy now sees: %s", net.srcWeb.Progress())
	if err := expectRefused(ctx, n, net); err != nil {
		return err
	}

	n.say("== carol enables her key version again: 2 of 3, the network comes back by itself")
	if err := net.kms.setEnabled(true); err != nil {
		return fmt.Errorf("enable carol's key version: %w", err)
	}
	if err := waitUntil(ctx, "both proxies ready again", net.ready); err != nil {
		return err
	}
	n.say("   ready again: %s", net.srcWeb.Status().State)
	return expectFlow(ctx, n, net)
}

func setConsent(net *network, name, value string) error {
	if _, err := shareholder.SetConsent(net.config[name], value); err != nil {
		return fmt.Errorf("set %s's consent to %s: %w", name, value, err)
	}
	return nil
}

// expectFlow checks an HTTP request over TCP and datagrams over UDP pass,
// each on a new tunnel. A proxy that just regained its key may need a
// moment before the other side has it too, hence the retry.
func expectFlow(ctx context.Context, n *narrator, net *network) error {
	var line string
	if err := waitUntil(ctx, "an HTTP answer through the tunnel", func() bool {
		var err error
		line, err = httpThrough(ctx, net.client.Addr("web").String())
		return err == nil
	}); err != nil {
		return err
	}
	n.say("   TCP: GET /consent through the TLS-PSK tunnel -> %q", line)
	var got int
	if err := waitUntil(ctx, "UDP echoes through the tunnel", func() bool {
		got, _ = udpThrough(net.client.Addr("dgram").String(), 3, time.Second)
		return got == 3
	}); err != nil {
		return fmt.Errorf("%w (last try: %d of 3 datagrams echoed)", err, got)
	}
	n.say("   UDP: 3 datagrams through the DTLS-PSK tunnel -> 3 echoed back")
	return nil
}

// expectRefused checks a new TCP tunnel and a new UDP session both fail.
func expectRefused(ctx context.Context, n *narrator, net *network) error {
	if line, err := httpThrough(ctx, net.client.Addr("web").String()); err == nil {
		return fmt.Errorf("an HTTP request passed without consent: %q", line)
	}
	n.say("   TCP: a new tunnel is refused (the HTTP request fails)")
	if got, _ := udpThrough(net.client.Addr("dgram").String(), 2, 700*time.Millisecond); got != 0 {
		return fmt.Errorf("%d datagrams passed without consent", got)
	}
	n.say("   UDP: a new session gets no echo")
	return nil
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}
