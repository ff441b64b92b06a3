//go:build !unix

package tlspsk

import "sync/atomic"

// testHookIdleWait is never called here: there is no buffer-free wait.
var testHookIdleWait atomic.Pointer[func(*Conn)]

// readIdle: without unix read(2) the wait for the next record reads into a
// buffer, as any Read does.
func (c *Conn) readIdle() (ok bool, err error) { return false, nil }
