package proxy

import (
	"context"
	"io"
	"sync"
	"time"
)

// tracker holds the open tunnels so a drain can wait for them and a close
// can end them.
type tracker struct {
	mu     sync.Mutex
	conns  map[io.Closer]struct{}
	wg     sync.WaitGroup
	closed bool
}

// add registers c; false means the route is closing and c was closed.
func (t *tracker) add(c io.Closer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	if t.conns == nil {
		t.conns = map[io.Closer]struct{}{}
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *tracker) done(c io.Closer) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.wg.Done()
}

// closeAll ends every open tunnel and refuses new ones (the route is closing).
func (t *tracker) closeAll() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.closeOpen()
}

// closeOpen ends the tunnels open now; new ones are still accepted.
func (t *tracker) closeOpen() int {
	t.mu.Lock()
	conns := make([]io.Closer, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

// wait returns when every tracked tunnel is done or ctx ends.
func (t *tracker) wait(ctx context.Context) bool {
	ch := make(chan struct{})
	go func() { t.wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// acceptBackoff sleeps after a temporary Accept error (e.g. EMFILE).
func acceptBackoff(d time.Duration) time.Duration {
	if d == 0 {
		d = 5 * time.Millisecond
	} else if d *= 2; d > time.Second {
		d = time.Second
	}
	time.Sleep(d)
	return d
}
