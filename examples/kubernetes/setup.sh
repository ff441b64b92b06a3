#!/bin/sh
# Prepares a TEST-cluster deployment of this directory in WORK, a new
# directory outside the repository (nothing here is modified):
#
#   WORK/keys/            the 2-of-3 group, the shares, each shareholder's TLS
#                         certificate and key, the dev attester's signing key
#   WORK/base/            a copy of the manifests with the shareholders' pins
#                         and the proxy image digest filled in
#   WORK/kustomization.yaml  the overlay: image digests, the Secrets and the
#                         mcbn-group ConfigMap made from WORK/keys
#
# Then: kubectl apply -k WORK
#
# Usage: MCBN_PROXY_IMAGE=REG/mcbn-proxy@sha256:... \
#        MCBN_SHAREHOLDER_IMAGE=REG/mcbn-shareholder@sha256:... sh setup.sh WORK
# (the digests go run ./build/image printed). Needs mcbn and openssl on PATH.
set -eu

die() { echo "setup.sh: $*" >&2; exit 2; }
[ $# -eq 1 ] || die "usage: MCBN_PROXY_IMAGE=... MCBN_SHAREHOLDER_IMAGE=... sh setup.sh WORK"
work=$1
here=$(cd "$(dirname "$0")" && pwd)

# An image is pinned by digest: REPOSITORY@sha256:<64 lowercase hex>.
pinned() {
	printf '%s\n' "$2" | grep -Eq '^[a-z0-9][a-z0-9./_:-]*@sha256:[0-9a-f]{64}$' ||
		die "$1 must be REPOSITORY@sha256:<64 hex>, got '$2'"
}
proxy_image=${MCBN_PROXY_IMAGE:-}
shareholder_image=${MCBN_SHAREHOLDER_IMAGE:-}
pinned MCBN_PROXY_IMAGE "$proxy_image"
pinned MCBN_SHAREHOLDER_IMAGE "$shareholder_image"
proxy_digest=${proxy_image##*@}

[ ! -e "$work" ] || die "$work exists; give a new directory"
umask 077
mkdir -p "$work/keys" "$work/base"
keys=$work/keys

# 1. The key ceremony (a dealer; in real life each share goes to its owner).
mcbn psk split --group k8s-test --threshold 2 --participants alice,bob,carol --out "$keys" >/dev/null

# 2. Each shareholder's stable TLS identity, and the pin the proxies hold.
fill=""
for p in alice bob carol; do
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
		-subj "/CN=$p-shareholder" -addext "subjectAltName=DNS:$p-shareholder" \
		-keyout "$keys/$p.tls.key" -out "$keys/$p.tls.crt" 2>/dev/null
	pin=$(mcbn shareholder pin "$keys/$p.tls.crt")
	P=$(printf '%s' "$p" | tr a-z A-Z)
	fill="$fill -e s/sha256:${P}_PIN/$pin/g"
done

# 3. The dev attester's signing key, shared by every test pod (whoever holds
# it can mint tokens: this is why the dev attester proves nothing).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/dev-attester.pem" 2>/dev/null

# 4. The base with pins and digest filled in, and the overlay.
for f in kustomization.yaml shareholder-alice.yaml shareholder-bob.yaml shareholder-carol.yaml server.yaml client.yaml; do
	# shellcheck disable=SC2086 # $fill is a list of sed arguments
	sed $fill -e "s/sha256:PROXY_IMAGE_DIGEST/$proxy_digest/g" "$here/$f" > "$work/base/$f"
done
chmod 644 "$work/base"/*.yaml "$keys/group.json"
cat > "$work/kustomization.yaml" <<YAML
# Made by examples/kubernetes/setup.sh. TEST CLUSTER ONLY (dev attestation).
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - base
images:
  - name: REGISTRY/mcbn-proxy
    newName: ${proxy_image%@*}
    digest: $proxy_digest
  - name: REGISTRY/mcbn-shareholder
    newName: ${shareholder_image%@*}
    digest: ${shareholder_image##*@}
generatorOptions:
  disableNameSuffixHash: true
configMapGenerator:
  - name: mcbn-group
    files: [group.json=keys/group.json]
secretGenerator:
  - name: mcbn-dev-attester-key
    files: [key.pem=keys/dev-attester.pem]
YAML
for p in alice bob carol; do
	cat >> "$work/kustomization.yaml" <<YAML
  - name: $p-share
    files: [share.json=keys/$p.share.json]
  - name: $p-tls
    type: kubernetes.io/tls
    files: [tls.crt=keys/$p.tls.crt, tls.key=keys/$p.tls.key]
YAML
done
echo "ready: kubectl apply -k $work"
