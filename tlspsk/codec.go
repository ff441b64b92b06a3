package tlspsk

// A minimal reader and writer for TLS presentation-language vectors.

type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	v := r.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *reader) u16() uint16 {
	v := r.take(2)
	if v == nil {
		return 0
	}
	return uint16(v[0])<<8 | uint16(v[1])
}

func (r *reader) u24() int {
	v := r.take(3)
	if v == nil {
		return 0
	}
	return int(v[0])<<16 | int(v[1])<<8 | int(v[2])
}

func (r *reader) vec8() []byte  { return r.take(int(r.u8())) }
func (r *reader) vec16() []byte { return r.take(int(r.u16())) }
func (r *reader) vec24() []byte { return r.take(r.u24()) }

// done reports whether everything was read without error.
func (r *reader) done() bool { return !r.bad && len(r.b) == 0 }

type writer struct{ b []byte }

func (w *writer) u8(v uint8)   { w.b = append(w.b, v) }
func (w *writer) u16(v uint16) { w.b = append(w.b, byte(v>>8), byte(v)) }
func (w *writer) u24(v int)    { w.b = append(w.b, byte(v>>16), byte(v>>8), byte(v)) }
func (w *writer) raw(v []byte) { w.b = append(w.b, v...) }

// open16 starts a vector with a 2-byte length; close16 fills it in.
func (w *writer) open16() int { w.u16(0); return len(w.b) }
func (w *writer) close16(at int) {
	n := len(w.b) - at
	w.b[at-2], w.b[at-1] = byte(n>>8), byte(n)
}
func (w *writer) open8() int { w.u8(0); return len(w.b) }
func (w *writer) close8(at int) {
	w.b[at-1] = byte(len(w.b) - at)
}
func (w *writer) open24() int { w.u24(0); return len(w.b) }
func (w *writer) close24(at int) {
	n := len(w.b) - at
	w.b[at-3], w.b[at-2], w.b[at-1] = byte(n>>16), byte(n>>8), byte(n)
}
