package proxy

import (
	"io"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
)

// pionQuiet keeps pion from writing to stderr: the proxy logs through slog.
var pionQuiet = &logging.DefaultLoggerFactory{
	DefaultLogLevel: logging.LogLevelDisabled,
	ScopeLevels:     map[string]logging.LogLevel{},
	Writer:          io.Discard,
}

// dtlsShared are the options both sides of a UDP route use.
func dtlsShared(r *Route) []dtls.Option {
	suites, _ := dtlsSuites(r.DTLS.CipherSuites) // checked by Validate
	opts := []dtls.Option{
		dtls.WithCipherSuites(suites...),
		dtls.WithFlightInterval(r.DTLS.FlightInterval.D()),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		dtls.WithLoggerFactory(pionQuiet),
	}
	if r.DTLS.MTU > 0 {
		opts = append(opts, dtls.WithMTU(r.DTLS.MTU))
	}
	return opts
}

// cidLength is the length of the connection IDs a server proxy issues
// (RFC 9146); pion routes datagrams by CID, so a client whose NAT binding
// changes keeps its session.
const cidLength = 8
