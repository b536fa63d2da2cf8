#!/usr/bin/env bash
# Build the real cosign CLI (github.com/sigstore/cosign/v3) from the Go module proxy, for the
# image-signature and vulnerability-attestation tests: they sign and attest with cosign and
# verify with modelward, and the reverse. Cached outside the repository per version, reused
# when present; never committed.
#
#   hack/build-cosign.sh                   build if missing, print the binary's path
#
# Environment: COSIGN_VERSION, MODELWARD_CACHE (default ~/.cache/modelward).
set -euo pipefail

COSIGN_VERSION="${COSIGN_VERSION:-3.1.3}"
CACHE="${MODELWARD_CACHE:-$HOME/.cache/modelward}"
out="$CACHE/bin/cosign-v$COSIGN_VERSION"

log() { printf '[build-cosign] %s\n' "$*" >&2; }
die() { printf '[build-cosign] error: %s\n' "$*" >&2; exit 1; }

if [[ -x "$out/cosign" ]]; then log "cosign v$COSIGN_VERSION: cached at $out"; echo "$out/cosign"; exit 0; fi
command -v go >/dev/null 2>&1 || die "Go is not installed. Install Go >= 1.25 to build cosign, or put a cosign v$COSIGN_VERSION binary at $out/cosign."

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
log "cosign v$COSIGN_VERSION: building (10-20 min on 2 cores when cold)"
mkdir -p "$out"
# The version is stamped the way cosign's own Makefile does, so `cosign version` names it.
ldflags="-X sigs.k8s.io/release-utils/version.gitVersion=v$COSIGN_VERSION"
GOBIN="$out.tmp" go install -trimpath -ldflags "$ldflags" "github.com/sigstore/cosign/v3/cmd/cosign@v$COSIGN_VERSION" \
  || die "cannot build cosign v$COSIGN_VERSION. Check that the Go module proxy is reachable (go env GOPROXY) and that the version exists."
mv "$out.tmp/cosign" "$out/cosign"
rmdir "$out.tmp"
log "cosign v$COSIGN_VERSION: built"
echo "$out/cosign"
