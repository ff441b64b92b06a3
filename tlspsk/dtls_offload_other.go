//go:build !linux

package tlspsk

const gsoSupported = false

// EnableGRO reports false: no UDP_GRO here.
func (b *UDPBatch) EnableGRO() bool { return false }
