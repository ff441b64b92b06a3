// Command image builds mcbn's container images reproducibly, without a Docker
// daemon, and prints the digests participants pin in their release policy
// (submods.container.image_digest).
//
// Why it exists: a participant releases its share only to a proxy whose
// attested image digest it approved. That approval is worth something only if
// anyone can rebuild the image from the same commit and get the same digest.
// So every input that could vary between machines is fixed here:
//
//   - the binary: CGO_ENABLED=0, -trimpath, -buildvcs=false,
//     -ldflags '-s -w -buildid=', GOOS/GOARCH/GOAMD64 set explicitly;
//   - the CA bundle: embedded in this directory (ca-certificates.crt) and
//     checked against a pinned SHA-256, never read from the build machine;
//   - the layer: files in a fixed order, owner root (0:0), fixed modes, every
//     mtime set to the creation time;
//   - the image config: created time from --epoch, SOURCE_DATE_EPOCH, or 0.
//
// Two images share one layer and differ only in their entrypoint:
// mcbn-proxy (/mcbn proxy) and mcbn-shareholder (/mcbn shareholder serve).
// They run as uid/gid 65532 and contain no shell.
//
// Usage:
//
//	go run ./build/image --out DIR            # OCI layout in DIR, digests on stdout
//	go run ./build/image --out DIR --push REPO # also push REPO/mcbn-proxy:TAG, ...
package main
