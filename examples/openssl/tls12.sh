#!/bin/sh
# TLS 1.2 PSK (RFC 4279/5487) against an mcbn server proxy (TCP route).
#   MCBN_PSK=... ./tls12.sh 127.0.0.1:8443
set -eu
. "$(dirname "$0")/common.sh"
{ printf '%s\n' "$MCBN_MESSAGE"; sleep 2; } |
  openssl s_client -brief -tls1_2 -cipher PSK-AES128-GCM-SHA256 \
    -psk "$MCBN_PSK" -psk_identity "$MCBN_IDENTITY" -connect "$1"
