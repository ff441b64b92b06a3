package demo

import (
	"context"
	"errors"
	"fmt"

	"github.com/mcbn/mcbn/psk"
)

// loopSpan is how many requests the loop sends between two steps, so that
// each switch has traffic on both sides of it.
const loopSpan = 20

// rotateSteps is `mcbn demo --rotate`: the HTTP route's key moves from
// epoch 7 to epoch 8 (docs/key-rotation.md §2) while a client sends a
// request every 10 ms and one long-lived connection stays open. Server
// first, then client, then epoch 7 is dropped; no request may fail, the
// long-lived connection must still answer, and epoch 7's identity must be
// refused afterwards even with its right key.
func rotateSteps(ctx context.Context, n *narrator, net *network) error {
	id := psk.DefaultIdentity
	addr := net.client.Addr("web").String()
	n.say("== Key rotation: the HTTP route moves from epoch %d (identity %s/%d) to epoch %d (%s/%d) while traffic flows",
		rotateFrom, id, rotateFrom, rotateTo, id, rotateTo)
	long, err := openLong(addr)
	if err != nil {
		return err
	}
	defer long.close()
	line, err := long.roundTrip()
	if err != nil {
		return err
	}
	if err := waitUntil(ctx, "the long-lived connection to show on epoch 7 at the server", func() bool {
		return epochStatus(net.server, rotateFrom).Open >= 1
	}); err != nil {
		return err
	}
	n.say("   a long-lived connection is open (keep-alive HTTP: one tunnel, on epoch %d): %q", rotateFrom, line)
	loop := startLoop(ctx, addr)
	defer loop.halt()
	n.say("   a client app sends one request every 10 ms, each on a new tunnel")
	if err := loop.more(ctx, loopSpan); err != nil {
		return err
	}

	n.say("== Server first: its config lists epochs %d and %d; reload (what SIGHUP does)", rotateFrom, rotateTo)
	if err := net.setEpochs(net.server, rotateFrom, rotateTo); err != nil {
		return err
	}
	if err := waitUntil(ctx, "the server proxy's epochs.current to be 8", isCurrent(net.server, rotateTo)); err != nil {
		return err
	}
	n.say("   server /status: epochs.current = %d; epochs %s", rotateTo, epochSummary(net.server))
	// The client's config still lists epoch 7 only, so it cannot have
	// moved: the point of the order is that it moves after the server.
	if c, _ := currentEpoch(net.client); c != rotateFrom {
		return fmt.Errorf("the client proxy is on epoch %d before its config lists epoch %d", c, rotateTo)
	}
	n.say("   it accepts both identities; the client still uses epoch %d (a client ahead of the server would be refused)", rotateFrom)
	if err := loop.more(ctx, loopSpan); err != nil {
		return err
	}

	n.say("== Then the client: its config lists epochs %d and %d; reload", rotateFrom, rotateTo)
	if err := net.setEpochs(net.client, rotateFrom, rotateTo); err != nil {
		return err
	}
	if err := waitUntil(ctx, "the client proxy's epochs.current to be 8", isCurrent(net.client, rotateTo)); err != nil {
		return err
	}
	// New tunnels use the new epoch: the server counts them on 8.
	if err := waitUntil(ctx, "new tunnels on epoch 8 at the server", func() bool {
		return epochStatus(net.server, rotateTo).Opened > 0
	}); err != nil {
		return err
	}
	n.say("   client /status: epochs.current = %d: new tunnels use %s/%d as soon as its key for %d is gathered", rotateTo, id, rotateTo, rotateTo)
	if line, err = long.roundTrip(); err != nil {
		return err
	}
	if err := loop.more(ctx, loopSpan); err != nil {
		return err
	}

	n.say("== Drop epoch %d: the client's config, then the server's, list epoch %d only; reload", rotateFrom, rotateTo)
	if err := net.setEpochs(net.client, rotateTo); err != nil {
		return err
	}
	if err := net.setEpochs(net.server, rotateTo); err != nil {
		return err
	}
	if err := waitUntil(ctx, "epoch 7 retired at the server", func() bool {
		return epochStatus(net.server, rotateFrom).Phase == "retired"
	}); err != nil {
		return err
	}
	n.say("   server /status: epochs %s", epochSummary(net.server))
	if err := loop.more(ctx, loopSpan); err != nil {
		return err
	}
	sent, failed, lastErr := loop.halt()
	n.say("   requests sent during the rotation: %d, failed: %d", sent, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d requests failed during the rotation (last: %s)", failed, sent, lastErr)
	}
	if sent == 0 {
		return errors.New("the request loop sent nothing during the rotation")
	}
	if line, err = long.roundTrip(); err != nil {
		return fmt.Errorf("after the rotation: %w", err)
	}
	n.say("   the long-lived connection opened on epoch %d still answers (%d requests on it): %q", rotateFrom, long.n, line)

	err = byHand(ctx, net.dir, net.server.Addr("web").String(), rotateFrom)
	if err == nil {
		return fmt.Errorf("the server proxy accepted a new connection as %s/%d after epoch %d was dropped", id, rotateFrom, rotateFrom)
	}
	n.say("   a new connection as %s/%d, with epoch %d's right key, is refused: %v", id, rotateFrom, rotateFrom, err)
	if err := byHand(ctx, net.dir, net.server.Addr("web").String(), rotateTo); err != nil {
		return fmt.Errorf("a connection as %s/%d with epoch %d's key: %w", id, rotateTo, rotateTo, err)
	}
	n.say("   the same as %s/%d with epoch %d's key passes", id, rotateTo, rotateTo)
	return nil
}
