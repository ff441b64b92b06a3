package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// idleWatch calls stop once nothing touched last for idle; it returns a
// function that cancels the watch.
func idleWatch(idle time.Duration, last *atomic.Int64, stop func()) func() {
	if idle <= 0 {
		return func() {}
	}
	var mu sync.Mutex
	var t *time.Timer
	mu.Lock()
	t = time.AfterFunc(idle, func() {
		quiet := time.Duration(time.Now().UnixNano() - last.Load())
		if quiet >= idle {
			stop()
			return
		}
		mu.Lock()
		t.Reset(idle - quiet)
		mu.Unlock()
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		t.Stop()
		mu.Unlock()
	}
}
