// Command bench measures the mcbn sidecars against the tools users would
// pick instead, side by side, in one run on one machine.
//
//	go run ./bench                 # every section, 3 runs each
//	go run ./bench --quick         # 1 short run of each: a smoke check
//	go run ./bench --only rtt      # one section
//	go run ./bench --json out.json # also write the figures as JSON
//
// # Method
//
// The bench builds the mcbn binary from this module and starts every peer
// as its own process on loopback (127.0.0.1), in process groups it kills
// when it ends, fails or is interrupted. Every topology has the same shape:
//
//	load generator -> client-side relay -> server-side relay -> backend
//
// where the relay pair is one of
//
//   - direct: no relay, the load generator talks to the backend;
//   - socat: two socat TCP relays, no cryptography (socat's defaults);
//   - stunnel: a stunnel client and a stunnel server, TLS 1.3 external PSK,
//     TLS_AES_128_GCM_SHA256, one PSKsecrets file;
//   - mcbn: `mcbn proxy client` and `mcbn proxy server`, TLS 1.3 external
//     PSK, TLS_AES_128_GCM_SHA256, the same PSKsecrets file (DTLS 1.2 for
//     UDP).
//
// Nothing is tuned for mcbn: both TLS pairs use the same suite, the same
// key and the same topology; each side keeps its own defaults otherwise
// (mcbn offers its default key-exchange groups, X25519MLKEM768 first;
// stunnel uses OpenSSL's, X25519 first). Neither side logs per connection
// (stunnel at "debug = warning", mcbn at its default "info").
//
// Each figure is measured --runs times (default 3). Runs are interleaved:
// run 1 of every topology, then run 2 of every topology, and so on, so a
// change in machine load spreads over all of them. A figure is the median
// of its runs with the min–max; a ratio is the ratio of the medians, with
// the range of the per-run ratios (run i against run i).
//
// # Sections
//
//   - bulk: iperf3 TCP throughput, 1 and 4 streams (iperf3 -P 4), received
//     bit rate from iperf3's JSON report.
//   - conn: new tunnelled connections per second from one sequential
//     client, and the time to first byte: connect, write 1 byte, read the
//     echoed byte (the TLS handshake and the backend dial are inside it).
//   - rtt: 64-byte request/response round trips on one open connection;
//     p50 and p99, and the latency each relay adds to direct's p50.
//   - udp: datagrams through the DTLS pair to a UDP echo backend, 64 and
//     1,200 bytes, paced (a fixed offered rate) and unpaced (as fast as one
//     sender can write). Every datagram carries a sequence number; a
//     datagram counts as delivered when its echo comes back, once. Loss is
//     1 - delivered/sent, after a drain time; nothing is retransmitted.
//   - gather: in process, a dev attester and N shareholder daemons on
//     loopback; the time from creating a shares source (T=3) to its first
//     key, for N = 3, 5, 9, 17.
//   - memory: open many idle tunnels (each carries one echoed byte, then
//     stays open) and read VmRSS of each relay process from /proc before
//     and after; the difference divided by the tunnel count.
//
// --profile DIR runs the mcbn proxies inside the bench process instead and
// writes CPU and allocation profiles of a bulk transfer and a heap profile
// with idle tunnels open; see docs/perf-profile-notes.md.
package main
