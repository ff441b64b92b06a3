# Sourced by the scripts here. MCBN_PSK is the hex key (e.g. from
# 'mcbn psk combine'), MCBN_IDENTITY the PSK identity (openssl's default).
: "${MCBN_PSK:?set MCBN_PSK to the hex PSK}"
MCBN_IDENTITY="${MCBN_IDENTITY:-Client_identity}"
MCBN_MESSAGE="${MCBN_MESSAGE:-hello through mcbn}"
[ $# -eq 1 ] || { echo "usage: $0 HOST:PORT" >&2; exit 2; }
