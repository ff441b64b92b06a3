#!/bin/sh
# DTLS 1.2 PSK against an mcbn server proxy (UDP route). Each line is one
# datagram; the backend's reply datagrams are printed.
#   MCBN_PSK=... ./dtls.sh 127.0.0.1:8853
set -eu
. "$(dirname "$0")/common.sh"
{ printf '%s\n' "$MCBN_MESSAGE"; sleep 2; } |
  openssl s_client -brief -dtls1_2 -cipher PSK-AES128-CCM8 \
    -psk "$MCBN_PSK" -psk_identity "$MCBN_IDENTITY" -connect "$1"
