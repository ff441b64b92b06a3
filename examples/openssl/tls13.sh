#!/bin/sh
# TLS 1.3 with an external PSK against an mcbn server proxy (TCP route).
# Sends one line and prints what comes back (the backend's answer).
#   MCBN_PSK=$(mcbn psk combine --group group.json a.share.json b.share.json) ./tls13.sh 127.0.0.1:8443
set -eu
. "$(dirname "$0")/common.sh"
{ printf '%s\n' "$MCBN_MESSAGE"; sleep 2; } |
  openssl s_client -brief -tls1_3 -psk "$MCBN_PSK" -psk_identity "$MCBN_IDENTITY" -connect "$1"
