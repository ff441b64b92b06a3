package shareholder

import (
	"sync"
	"time"
)

// rateLimiter is a token bucket per key (a remote IP, or a verified token
// subject: see handleRelease) with a bounded number of
// buckets. When the table is full, buckets that have refilled completely
// (idle clients) are dropped; if none has, the request is refused, so an
// attacker spraying addresses cannot grow memory without bound.
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	max     int
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(perSecond float64, burst, maxClients int) *rateLimiter {
	return &rateLimiter{
		rate: perSecond, burst: float64(burst), max: maxClients, now: time.Now,
		buckets: make(map[string]*bucket),
	}
}

// allow takes one token from key's bucket.
func (l *rateLimiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.evict(now)
			if len(l.buckets) >= l.max {
				return false
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * l.rate
	if b.tokens > l.burst {
		b.tokens = l.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evict drops buckets that would be full by now.
func (l *rateLimiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
