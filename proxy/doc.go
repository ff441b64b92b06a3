// Package proxy implements the mcbn sidecars: a client proxy that takes plain
// TCP or UDP from a local application and carries it to a server proxy over
// TLS-PSK (TCP, through package tlspsk) or DTLS-PSK (UDP, through tlspsk's DTLS 1.2),
// and a server proxy that terminates those tunnels and forwards plain traffic
// to a local backend.
//
// Why it is built this way:
//
//   - The pre-shared key is the whole point of mcbn: it exists only while
//     enough participants consent. So a route never holds a key itself; it
//     asks its Source for the key at each new tunnel (client) or handshake
//     (server). A rotated key applies to new tunnels, open tunnels stay up,
//     and a source with no key makes the route refuse new tunnels and fail
//     /readyz instead of failing in some less visible way.
//   - One process serves many routes from one YAML file, with flags and
//     environment variables for the one-route case, because that is how
//     sidecars are deployed (see Config and docs/proxy.md).
//   - Every failure an operator can act on is named: a handshake failure is
//     logged and counted with a reason (unknown identity, wrong key, no
//     shared suite, timeout), /status tells "PSK not available yet" apart
//     from "backend unreachable", and health probes never write to the log.
//   - No key material ever reaches a log line, an error string or a metric.
package proxy
