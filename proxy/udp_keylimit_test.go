package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/mcbn/mcbn/tlspsk"
)

// A tunnel write that fails because the session's key is used up
// (tlspsk.ErrDTLSKeyLimit, also when wrapped) is counted as key_limit and
// logged with the peer; any other failure stays tunnel_write_failed and is
// not logged here. The end-to-end limit is tested in tlspsk
// (TestDTLSKeyLimitEndsSession); this is the proxy's reading of it.
func TestTunnelWriteFailedKeyLimit(t *testing.T) {
	m := newMetrics()
	var logs bytes.Buffer
	r := &route{met: m.route("dns"), log: slog.New(slog.NewTextHandler(&logs, nil))}
	r.tunnelWriteFailed(fmt.Errorf("write: %w", tlspsk.ErrDTLSKeyLimit), 3, "127.0.0.1:5000")
	r.tunnelWriteFailed(errors.New("sendmmsg: connection refused"), 2, "127.0.0.1:5001")
	if n := metricValue(m.dropped.WithLabelValues("dns", "key_limit")); n != 3 {
		t.Errorf("key_limit drops %v, want 3", n)
	}
	if n := metricValue(m.dropped.WithLabelValues("dns", "tunnel_write_failed")); n != 2 {
		t.Errorf("tunnel_write_failed drops %v, want 2", n)
	}
	out := logs.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "AEAD usage limit") || !strings.Contains(out, "peer=127.0.0.1:5000") {
		t.Errorf("log:\n%s", out)
	}
}
