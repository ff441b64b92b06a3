package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// tprfHolderYAML is the part of a daemon's config that makes it answer
// with partial evaluations only, for epochs 1..max.
func tprfHolderYAML(max uint64) string {
	// release: evaluate-only: the participant never releases its share,
	// whatever a proxy asks; evaluate: the epochs it consents to.
	return fmt.Sprintf("release: evaluate-only\nevaluate:\n  min_epoch: %d\n  max_epoch: %d\n", tprfFirst, max)
}

// tprfSteps is `mcbn demo --tprf`: traffic flows on epoch 1; the server
// proxy's epoch 2 stays pending because no participant admits it; the
// participants raise their window to 2, the server gathers epoch 2, then
// the client (a reload) — with a request every 10 ms, none failing. The
// revocation steps that follow (consentSteps) show consent still closes
// the network; the audit step shows no share was ever released.
func tprfSteps(ctx context.Context, n *narrator, net *network) error {
	n.say("== Epochs as the unit of consent: the HTTP route's key is the threshold PRF at epoch %d", tprfFirst)
	if err := waitUntil(ctx, "the server proxy's epoch 2 to be refused by the participants", func() bool {
		st := epochStatus(net.server, tprfNext)
		return st.Phase == "pending" && strings.Contains(st.State, "refused")
	}); err != nil {
		return fmt.Errorf("%w (server epochs: %s)", err, epochSummary(net.server))
	}
	if c, _ := currentEpoch(net.server); c != tprfFirst {
		return fmt.Errorf("the server proxy is on epoch %d before the participants admit epoch %d", c, tprfNext)
	}
	n.say("   server /status: epoch %d current, epoch %d pending: %s", tprfFirst, tprfNext, epochStatus(net.server, tprfNext).State)
	n.say("   (each participant's policy admits epochs %d..%d only: nobody can evaluate a future epoch)", tprfFirst, tprfFirst)

	addr := net.client.Addr("web").String()
	loop := startLoop(ctx, addr)
	defer loop.halt()
	n.say("   a client app sends one request every 10 ms, each on a new tunnel")
	if err := loop.more(ctx, loopSpan); err != nil {
		return err
	}

	n.say("== alice, bob and carol raise evaluate.max_epoch to %d (a line of their config; each daemon re-reads it)", tprfNext)
	names := make([]string, 0, len(net.holders))
	for name := range net.holders {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := setMaxEpoch(net, name, tprfNext); err != nil {
			return err
		}
	}
	if err := waitUntil(ctx, "the server proxy's epochs.current to be 2", isCurrent(net.server, tprfNext)); err != nil {
		return fmt.Errorf("%w (server epochs: %s)", err, epochSummary(net.server))
	}
	n.say("   the server proxy combined epoch %d's partials: epochs.current = %d; epochs %s", tprfNext, tprfNext, epochSummary(net.server))
	if c, _ := currentEpoch(net.client); c != tprfFirst {
		return fmt.Errorf("the client proxy is on epoch %d before its config lists epoch %d", c, tprfNext)
	}
	if err := loop.more(ctx, loopSpan); err != nil {
		return err
	}

	n.say("== Then the client: its config lists epochs %d and %d; reload", tprfFirst, tprfNext)
	if err := net.setEpochs(net.client, tprfFirst, tprfNext); err != nil {
		return err
	}
	if err := waitUntil(ctx, "the client proxy's epochs.current to be 2", isCurrent(net.client, tprfNext)); err != nil {
		return err
	}
	if err := waitUntil(ctx, "new tunnels on epoch 2 at the server", func() bool {
		return epochStatus(net.server, tprfNext).Opened > 0
	}); err != nil {
		return err
	}
	n.say("   client /status: epochs.current = %d; new tunnels use epoch %d", tprfNext, tprfNext)
	if err := loop.more(ctx, loopSpan); err != nil {
		return err
	}
	sent, failed, lastErr := loop.halt()
	n.say("   requests sent during the epoch change: %d, failed: %d", sent, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d requests failed during the epoch change (last: %s)", failed, sent, lastErr)
	}
	if sent == 0 {
		return errors.New("the request loop sent nothing during the epoch change")
	}
	return expectFlow(ctx, n, net)
}

// setMaxEpoch raises name's evaluate.max_epoch in its config file and has
// its daemon re-read it now (its watcher would within reload_interval).
func setMaxEpoch(net *network, name string, max uint64) error {
	path := net.config[name]
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	old := tprfHolderYAML(tprfFirst)
	if !strings.Contains(string(b), old) {
		return fmt.Errorf("%s: no evaluate window %d..%d to raise", path, tprfFirst, tprfFirst)
	}
	if err := writeFileAtomic(path, []byte(strings.Replace(string(b), old, tprfHolderYAML(max), 1))); err != nil {
		return err
	}
	if err := net.holders[name].Reload(); err != nil {
		return fmt.Errorf("%s's daemon did not take evaluate.max_epoch %d: %w", name, max, err)
	}
	return nil
}
