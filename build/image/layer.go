package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"time"
)

// caBundle is the Mozilla root set as shipped by Debian's ca-certificates
// 20230311+deb12u1 (/etc/ssl/certs/ca-certificates.crt, 144 roots). It is
// embedded rather than read from the build machine because that file differs
// between machines and versions, and the image digest must not. Refreshing it
// is a reviewed change: replace the file and caBundleSHA256 together.
//
//go:embed ca-certificates.crt
var caBundle []byte

const caBundleSHA256 = "66848390d4bd02ebe8532d6515089559691374e83f877ad7017d992849916ba3"

// Fixed identities inside the image. 65532 is the conventional "nonroot"
// uid/gid of distroless images, so tooling recognises it.
const (
	nonrootUID = 65532
	caPath     = "etc/ssl/certs/ca-certificates.crt"
	binPath    = "mcbn"
)

// entry is one file or directory of the layer.
type entry struct {
	name     string
	mode     int64
	uid, gid int
	dir      bool
	data     []byte
}

// layerEntries lists the layer's content in the order it is written. The
// order is part of the digest, so it is spelled out rather than derived from
// a map or a directory walk.
func layerEntries(binary []byte) []entry {
	return []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: caPath, mode: 0o644, data: caBundle},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: nonrootUID, gid: nonrootUID},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: binPath, mode: 0o755, data: binary},
	}
}

// layerTar renders the entries as an uncompressed tar with every header
// field fixed: owners by number only, no user/group names, one mtime.
func layerTar(binaryPath string, mtime time.Time) ([]byte, error) {
	if got := sha256.Sum256(caBundle); hex.EncodeToString(got[:]) != caBundleSHA256 {
		return nil, fmt.Errorf("embedded CA bundle does not match its pinned SHA-256")
	}
	bin, err := os.ReadFile(binaryPath)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range layerEntries(bin) {
		if err := writeEntry(tw, e, mtime); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeEntry writes one entry with every header field fixed: owners by
// number only, no user or group names, one mtime, USTAR.
func writeEntry(tw *tar.Writer, e entry, mtime time.Time) error {
	h := &tar.Header{
		Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid,
		ModTime: mtime, Format: tar.FormatUSTAR,
		Typeflag: tar.TypeReg, Size: int64(len(e.data)),
	}
	if e.dir {
		h.Typeflag, h.Size = tar.TypeDir, 0
	}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", e.name, err)
	}
	_, err := tw.Write(e.data)
	return err
}
