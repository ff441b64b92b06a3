package tlspsk

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"time"
)

// KeySharePool holds ephemeral key pairs generated ahead of time, so that
// the key generation of a TLS 1.3 handshake (an X25519 and an ML-KEM-768
// key pair for a client's default X25519MLKEM768 + X25519 shares, which
// share the X25519 key pair; one X25519 key pair for a server) is off the
// critical path. One
// background goroutine refills it while handshakes take from it.
//
// Forward secrecy is kept: every entry is handed out at most once (it is
// removed from the pool under the lock before anyone sees it) and is never
// written to disk, so a pooled key pair is as ephemeral as one generated
// during the handshake; it only exists in memory up to MaxAge earlier. An
// entry older than MaxAge is discarded, never used, and the pool stops
// refilling when no handshake took from it for a while, so an idle process
// holds no private keys past MaxAge.
//
// What cannot be pooled: the server's ML-KEM encapsulation. crypto/mlkem's
// Encapsulate draws its own randomness and offers no way to supply it, and
// its cost (expanding the client's key) depends on the client's key, which
// arrives with the ClientHello. A server pools only its X25519 key pairs.
// P-256 shares are not pooled (rare; generated on demand).
//
// Go's crypto/ecdh and crypto/mlkem keep private keys in unexported fields
// with no way to zero them: once used, an entry's last reference is dropped
// (the handshake's own copies of the shared secrets are wiped as before).
type KeySharePool struct {
	size   int
	maxAge time.Duration
	now    func() time.Time

	mu          sync.Mutex
	x25519      []pooledX25519 // oldest first
	kem         []pooledKEM
	demandUntil time.Time // refill only while handshakes take from the pool
	closed      bool

	start sync.Once
	wake  chan struct{}
	done  chan struct{}

	hits, misses, expired atomic.Int64
	// handed, when set (tests), sees the public key of every entry handed
	// out.
	handed func(pub []byte)
}

type pooledX25519 struct {
	k    *ecdh.PrivateKey
	born time.Time
}

type pooledKEM struct {
	dk   *mlkem.DecapsulationKey768
	ek   []byte
	born time.Time
}

// Defaults for NewKeySharePool.
const (
	DefaultKeySharePoolSize = 8
	DefaultKeyShareMaxAge   = 10 * time.Second
	// keyShareDemand is how long the pool keeps refilling after the last
	// take: an idle process stops generating (and holding) keys.
	keyShareDemand = 30 * time.Second
)

// NewKeySharePool returns a pool of up to size ML-KEM-768 key pairs and
// size X25519 key pairs (a client's default hello uses one of each), each
// discarded after maxAge. Zero values mean the defaults. The refill
// goroutine starts at the first handshake that uses the pool; Close stops it.
func NewKeySharePool(size int, maxAge time.Duration) *KeySharePool {
	if size <= 0 {
		size = DefaultKeySharePoolSize
	}
	if maxAge <= 0 {
		maxAge = DefaultKeyShareMaxAge
	}
	return &KeySharePool{size: size, maxAge: maxAge, now: time.Now,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// KeySharePoolStats counts what the pool handed out.
type KeySharePoolStats struct {
	Hits    int64 // key pairs taken from the pool
	Misses  int64 // key pairs a handshake had to generate (pool empty)
	Expired int64 // key pairs discarded unused after MaxAge
}

// Stats returns the counters.
func (p *KeySharePool) Stats() KeySharePoolStats {
	return KeySharePoolStats{Hits: p.hits.Load(), Misses: p.misses.Load(), Expired: p.expired.Load()}
}

// Close stops the refill goroutine and drops every pooled key.
func (p *KeySharePool) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	p.dropLocked()
	p.mu.Unlock()
}

func (p *KeySharePool) dropLocked() {
	clear(p.x25519)
	clear(p.kem)
	p.x25519, p.kem = p.x25519[:0], p.kem[:0]
}

// sweepLocked discards the entries older than maxAge (the lists are
// oldest first).
func (p *KeySharePool) sweepLocked(now time.Time) {
	i := 0
	for i < len(p.x25519) && now.Sub(p.x25519[i].born) >= p.maxAge {
		i++
	}
	if i > 0 {
		clear(p.x25519[:i])
		p.x25519 = p.x25519[i:]
		p.expired.Add(int64(i))
	}
	j := 0
	for j < len(p.kem) && now.Sub(p.kem[j].born) >= p.maxAge {
		j++
	}
	if j > 0 {
		clear(p.kem[:j])
		p.kem = p.kem[j:]
		p.expired.Add(int64(j))
	}
}

// noteDemand records a take, starts the refill goroutine on first use and
// wakes it. The caller holds p.mu.
func (p *KeySharePool) noteDemandLocked(now time.Time) {
	p.demandUntil = now.Add(keyShareDemand)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *KeySharePool) kick() {
	p.start.Do(func() { go p.run() })
}

// takeX25519 removes and returns a fresh X25519 key pair, or nil when the
// pool has none (the caller generates one).
func (p *KeySharePool) takeX25519() *ecdh.PrivateKey {
	p.kick()
	p.mu.Lock()
	now := p.now()
	p.sweepLocked(now)
	p.noteDemandLocked(now)
	var k *ecdh.PrivateKey
	if !p.closed && len(p.x25519) > 0 {
		k = p.x25519[0].k
		p.x25519[0] = pooledX25519{}
		p.x25519 = p.x25519[1:]
	}
	p.mu.Unlock()
	if k == nil {
		p.misses.Add(1)
		return nil
	}
	p.hits.Add(1)
	if p.handed != nil {
		p.handed(k.PublicKey().Bytes())
	}
	return k
}

// takeKEM removes and returns a fresh ML-KEM-768 key pair and its
// encoded encapsulation key, or nil.
func (p *KeySharePool) takeKEM() (*mlkem.DecapsulationKey768, []byte) {
	p.kick()
	p.mu.Lock()
	now := p.now()
	p.sweepLocked(now)
	p.noteDemandLocked(now)
	var e pooledKEM
	if !p.closed && len(p.kem) > 0 {
		e = p.kem[0]
		p.kem[0] = pooledKEM{}
		p.kem = p.kem[1:]
	}
	p.mu.Unlock()
	if e.dk == nil {
		p.misses.Add(1)
		return nil, nil
	}
	p.hits.Add(1)
	if p.handed != nil {
		p.handed(e.ek)
	}
	return e.dk, e.ek
}

// fillOne generates one missing entry; it reports false when the pool is
// full, closed or has seen no demand lately. It generates outside the lock.
func (p *KeySharePool) fillOne() bool {
	p.mu.Lock()
	now := p.now()
	p.sweepLocked(now)
	if p.closed || !now.Before(p.demandUntil) {
		p.mu.Unlock()
		return false
	}
	needKEM := len(p.kem) < p.size
	needX := len(p.x25519) < p.size
	p.mu.Unlock()
	switch {
	case needKEM:
		dk, err := mlkem.GenerateKey768()
		if err != nil {
			return false
		}
		e := pooledKEM{dk: dk, ek: dk.EncapsulationKey().Bytes(), born: p.now()}
		p.mu.Lock()
		if !p.closed {
			p.kem = append(p.kem, e)
		}
		p.mu.Unlock()
	case needX:
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return false
		}
		p.mu.Lock()
		if !p.closed {
			p.x25519 = append(p.x25519, pooledX25519{k: k, born: p.now()})
		}
		p.mu.Unlock()
	default:
		return false
	}
	return true
}

// run is the refill goroutine: it tops the pool up while there is demand,
// and otherwise sleeps until a take wakes it or the oldest entry expires.
func (p *KeySharePool) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		for p.fillOne() {
			select {
			case <-p.done:
				return
			default:
			}
		}
		p.mu.Lock()
		wait := time.Hour
		if len(p.x25519) > 0 {
			wait = min(wait, p.maxAge-p.now().Sub(p.x25519[0].born))
		}
		if len(p.kem) > 0 {
			wait = min(wait, p.maxAge-p.now().Sub(p.kem[0].born))
		}
		p.mu.Unlock()
		t.Reset(max(wait, time.Millisecond))
		select {
		case <-p.done:
			return
		case <-p.wake:
		case <-t.C:
		}
	}
}

// usable reports whether a handshake under cfg may take from its pool: not
// when the Config has its own Rand (tests that want reproducible shares).
func (c *Config) keyPool() *KeySharePool {
	if c.KeyShares == nil || c.Rand != nil {
		return nil
	}
	return c.KeyShares
}

// clientKeyShare makes the client's share for g, from the pool when it can.
func (c *Config) clientKeyShare(g CurveID) (*clientKeyShare, error) {
	p := c.keyPool()
	if p == nil || (g != X25519 && g != X25519MLKEM768) {
		return newClientKeyShare(g, c.rand())
	}
	priv := p.takeX25519()
	if priv == nil {
		var err error
		if priv, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
	}
	ks := &clientKeyShare{group: g, ec: priv}
	if g != X25519MLKEM768 {
		ks.pub = priv.PublicKey().Bytes()
		return ks, nil
	}
	dk, ek := p.takeKEM()
	if dk == nil {
		var err error
		if dk, err = mlkem.GenerateKey768(); err != nil {
			return nil, err
		}
		ek = dk.EncapsulationKey().Bytes()
	}
	ks.kem = dk
	ks.pub = append(ek, priv.PublicKey().Bytes()...)
	return ks, nil
}

// serverX25519 returns a pooled X25519 key pair for a server share of g,
// or nil (serverKeyShare then generates one).
func (c *Config) serverX25519(g CurveID) *ecdh.PrivateKey {
	p := c.keyPool()
	if p == nil || (g != X25519 && g != X25519MLKEM768) {
		return nil
	}
	return p.takeX25519()
}
