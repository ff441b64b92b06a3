//go:build !race

package tlspsk

const offloadRace = false
