package tlspsk

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// recorder is the instrumentation: every public key the pool hands out.
type recorder struct {
	mu   sync.Mutex
	seen map[string]int
}

func (r *recorder) hook(pub []byte) {
	r.mu.Lock()
	r.seen[string(pub)]++
	r.mu.Unlock()
}

func (r *recorder) dups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.seen {
		if c > 1 {
			n += c - 1
		}
	}
	return n
}

// waitFilled waits (bounded) until the pool holds at least n X25519 and
// kem ML-KEM entries.
func waitFilled(t *testing.T, p *KeySharePool, x, kem int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		ok := len(p.x25519) >= x && len(p.kem) >= kem
		p.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool did not fill in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKeySharePoolNeverTwice: concurrent takers while the refill goroutine
// runs; no key pair is handed out twice.
func TestKeySharePoolNeverTwice(t *testing.T) {
	p := NewKeySharePool(4, time.Minute)
	defer p.Close()
	r := &recorder{seen: map[string]int{}}
	p.handed = r.hook
	p.takeX25519() // starts the refill
	waitFilled(t, p, 4, 4)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				p.takeX25519()
				p.takeKEM()
			}
		}()
	}
	wg.Wait()
	st := p.Stats()
	if st.Hits < 8 {
		t.Fatalf("only %d takes came from the pool: the test proves nothing", st.Hits)
	}
	if d := r.dups(); d != 0 {
		t.Fatalf("%d key pairs were handed out more than once (stats %+v)", d, st)
	}
}

// TestKeySharePoolHandshakes: concurrent TLS 1.3 handshakes (client and
// server sharing one pool) use pooled shares, each once, and complete with
// the hybrid group.
func TestKeySharePoolHandshakes(t *testing.T) {
	p := NewKeySharePool(4, time.Minute)
	defer p.Close()
	r := &recorder{seen: map[string]int{}}
	p.handed = r.hook
	p.takeKEM()
	waitFilled(t, p, 4, 4)
	type conns struct{ c, s *Conn }
	var ps []conns
	for i := 0; i < 12; i++ {
		c, s := pair(t, &Config{Key: testKey, KeyShares: p}, &Config{Key: testKey, KeyShares: p})
		ps = append(ps, conns{c, s})
	}
	var wg sync.WaitGroup
	for _, cs := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cerr, serr := handshakeBoth(cs.c, cs.s); cerr != nil || serr != nil {
				t.Errorf("handshake: client %v, server %v", cerr, serr)
				return
			}
			if g := cs.c.ConnectionState().Group; g != X25519MLKEM768 {
				t.Errorf("group %v, want X25519MLKEM768", g)
			}
		}()
	}
	wg.Wait()
	if st := p.Stats(); st.Hits == 0 {
		t.Fatal("no handshake took a pooled key share")
	}
	if d := r.dups(); d != 0 {
		t.Fatalf("%d pooled key pairs were used twice", d)
	}
}

// TestKeySharePoolMaxAge: an entry at or past MaxAge is discarded, never
// handed out; a younger one is.
func TestKeySharePoolMaxAge(t *testing.T) {
	p := NewKeySharePool(2, 5*time.Second)
	defer p.Close()
	p.start.Do(func() {}) // no refill goroutine: the test fills by hand
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	p.demandUntil = now.Add(time.Hour)
	for p.fillOne() {
	}
	if len(p.x25519) != 2 || len(p.kem) != 2 {
		t.Fatalf("filled %d X25519 and %d ML-KEM, want 2 and 2", len(p.x25519), len(p.kem))
	}
	now = now.Add(4 * time.Second)
	if p.takeX25519() == nil {
		t.Fatal("an entry younger than MaxAge was not used")
	}
	now = now.Add(time.Second) // exactly MaxAge
	if k := p.takeX25519(); k != nil {
		t.Fatal("an X25519 key pair at MaxAge was handed out")
	}
	if dk, _ := p.takeKEM(); dk != nil {
		t.Fatal("an ML-KEM key pair at MaxAge was handed out")
	}
	if st := p.Stats(); st.Expired != 3 || st.Hits != 1 {
		t.Fatalf("stats %+v, want 3 expired and 1 hit", st)
	}
}

// TestKeySharePoolIdleStops: without demand the pool does not refill.
func TestKeySharePoolIdleStops(t *testing.T) {
	p := NewKeySharePool(2, time.Second)
	defer p.Close()
	p.start.Do(func() {})
	if p.fillOne() {
		t.Fatal("a pool nobody took from generated a key")
	}
}

// TestKeySharePoolBypassedWithRand: a Config with its own Rand does not
// take from the pool, and a Config without a pool behaves as before.
func TestKeySharePoolBypassedWithRand(t *testing.T) {
	p := NewKeySharePool(2, time.Minute)
	defer p.Close()
	for _, tc := range []struct {
		name string
		cfg  func() *Config
	}{
		{"own Rand", func() *Config {
			return &Config{Key: testKey, KeyShares: p, Rand: bytes.NewReader(bytes.Repeat([]byte{7}, 1<<16))}
		}},
		{"no pool", func() *Config { return &Config{Key: testKey} }},
	} {
		c, s := pair(t, tc.cfg(), &Config{Key: testKey})
		if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
			t.Fatalf("%s: handshake: client %v, server %v", tc.name, cerr, serr)
		}
		if g := c.ConnectionState().Group; g != X25519MLKEM768 {
			t.Fatalf("%s: group %v", tc.name, g)
		}
		exchange(t, c, s, 100)
	}
	if st := p.Stats(); st.Hits+st.Misses != 0 {
		t.Fatalf("the pool was used: %+v", st)
	}
}

// TestKeySharePoolClosed: a closed pool hands out nothing; handshakes
// still work (on-demand keys).
func TestKeySharePoolClosed(t *testing.T) {
	p := NewKeySharePool(2, time.Minute)
	p.takeX25519()
	waitFilled(t, p, 1, 1)
	p.Close()
	if p.takeX25519() != nil {
		t.Fatal("a closed pool handed out a key")
	}
	c, s := pair(t, &Config{Key: testKey, KeyShares: p}, &Config{Key: testKey, KeyShares: p})
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
}
