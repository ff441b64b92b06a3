//go:build race

package tlspsk

// offloadRace: the race detector's sync.Pool drops a quarter of what is
// put back, so allocation counts of pooled paths mean nothing under it.
const offloadRace = true
