package tlspsk

import (
	"errors"
	"net"
)

// Zero-length application data records. RFC 8446 5.1 ("Zero-length
// fragments of Application Data MAY be sent") and RFC 5246 6.2.1 allow
// them; Read skips them (at most maxEmptyRecords in a row). A proxy that
// keeps handshaken tunnels ready uses one to say "this tunnel is now in
// use" before its application has sent anything.

// WriteEmptyRecord sends one zero-length application data record.
func (c *Conn) WriteEmptyRecord() error {
	if err := c.Handshake(); err != nil {
		return err
	}
	c.out.Lock()
	defer c.unlockOut()
	if c.closed.Load() {
		c.wipeOutLocked()
		return errClosed
	}
	if c.out.err != nil {
		return c.out.err
	}
	hc := &c.out.hc
	if hc.seq >= hc.limit {
		if hc.version == VersionTLS12 {
			c.out.err = errTLS12Limit
			return c.out.err
		}
		if err := c.sendKeyUpdateLocked(false); err != nil {
			return err
		}
	}
	defer c.releaseWriteBufLocked()
	return c.writeRecordLocked(recordApplicationData, nil)
}

// WaitRecord blocks until the next application data record arrives, an
// empty one included, and leaves its data (if any) for Read. It returns at
// once when application data is already buffered. Post-handshake messages
// are handled as by Read; deadlines apply (a timeout is not sticky).
func (c *Conn) WaitRecord() error {
	if err := c.Handshake(); err != nil {
		return err
	}
	in := &c.in
	in.Lock()
	defer c.unlockIn()
	if c.closed.Load() {
		c.wipeInLocked()
		return errClosed
	}
	for len(in.input) == 0 {
		if in.err != nil {
			return in.err
		}
		before := in.empty
		err := c.readOneRecord()
		if err == errSkip {
			if in.empty > before {
				c.releaseIfDrained()
				return nil // a zero-length application data record
			}
			continue
		}
		if err != nil {
			var ne net.Error
			if !(errors.As(err, &ne) && ne.Timeout()) {
				in.err = err
			}
			c.alertForReadError(err)
			return err
		}
		if len(in.hs) > 0 {
			if err := c.postHandshake(); err != nil {
				in.err = err
				c.alertForReadError(err)
				return err
			}
		}
	}
	return nil
}
