#!/bin/sh
# psk-secrets.sh IDENTITY HEXKEY FILE
# Writes a PSKsecrets file (mode 0600) that stunnel (5.51 and later) and the
# mcbn proxies (psk.secrets) read alike: a key of hex digits is decoded to
# binary by both, so the same bytes are used on both sides.
set -eu
[ $# -eq 3 ] || { echo "usage: $0 IDENTITY HEXKEY FILE" >&2; exit 2; }
case "$2" in *[!0-9a-fA-F]*|"") echo "HEXKEY must be hex digits" >&2; exit 2 ;; esac
umask 077
printf '%s:%s\n' "$1" "$2" > "$3"
