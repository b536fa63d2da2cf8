#!/usr/bin/env bash
# Build the programs of modelward's local test node from the Go module proxy:
#   kubelet, kube-scheduler, kube-controller-manager   (k8s.io/kubernetes, same module folder and
#                                                       staging replaces as kube-apiserver)
#   containerd, containerd-shim-runc-v2, ctr          (github.com/containerd/containerd/v2)
# Binaries are cached outside the repository, one folder per component and version, and reused
# when present; nothing is ever written into the repository.
#
#   hack/build-node.sh              build what is missing
#
# Why containerd 2 from source rather than Debian's 1.6: OCI image volumes (a model delivered as
# an image) need containerd >= 2.1, and kubelet 1.37 drops containerd 1.x support in 1.38.
# runc and the CNI plugins come from Debian (hack/install-system-deps.sh).
#
# Environment: K8S_VERSION, CONTAINERD_VERSION, MODELWARD_CACHE (default ~/.cache/modelward).
# Run hack/build-control-plane.sh first (it creates the Kubernetes module folder); this script
# does so itself when the folder is missing.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-2.4.2}"
CACHE="${MODELWARD_CACHE:-$HOME/.cache/modelward}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[build-node] %s\n' "$*" >&2; }
die() { printf '[build-node] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not installed. Install Go >= 1.25 (https://go.dev/doc/install)."

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
proxy_hint="Check that the Go module proxy is reachable (go env GOPROXY) and that the version exists."

k8s_out="$CACHE/bin/kubernetes-v$K8S_VERSION"
containerd_out="$CACHE/bin/containerd-v$CONTAINERD_VERSION"

build_kubernetes_node() {
  local commands=(kubelet kube-scheduler kube-controller-manager) todo=()
  for cmd in "${commands[@]}"; do [[ -x "$k8s_out/$cmd" ]] || todo+=("$cmd"); done
  if [[ ${#todo[@]} -eq 0 ]]; then log "kubernetes v$K8S_VERSION node programs: cached at $k8s_out"; return; fi
  local work="$CACHE/build/kubernetes-v$K8S_VERSION"
  if [[ ! -f "$work/go.mod" ]] || ! grep -q 'k8s.io/kubernetes' "$work/go.mod"; then
    log "the Kubernetes module folder $work is missing: running build-control-plane.sh first"
    K8S_VERSION="$K8S_VERSION" "$here/build-control-plane.sh"
  fi
  local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  mkdir -p "$k8s_out"
  (
    cd "$work"
    local tools=()
    for cmd in "${todo[@]}"; do tools+=("k8s.io/kubernetes/cmd/$cmd@v$K8S_VERSION"); done
    go get -tool "${tools[@]}" || die "cannot resolve ${todo[*]} v$K8S_VERSION. $proxy_hint"
    # -s -w: no symbol table or DWARF (the kubelet is 132 MB with them, ~60 MB without).
    local ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    done
    for cmd in "${todo[@]}"; do
      log "kubernetes v$K8S_VERSION: compiling $cmd (~2 min warm, ~8 min cold)"
      go build -trimpath -ldflags "$ldflags" -o "$k8s_out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$k8s_out/$cmd.tmp" "$k8s_out/$cmd"
    done
  )
}

build_containerd() {
  local commands=(containerd containerd-shim-runc-v2 ctr) todo=()
  for cmd in "${commands[@]}"; do [[ -x "$containerd_out/$cmd" ]] || todo+=("$cmd"); done
  if [[ ${#todo[@]} -eq 0 ]]; then log "containerd v$CONTAINERD_VERSION: cached at $containerd_out"; return; fi
  log "containerd v$CONTAINERD_VERSION: building ${todo[*]} (~2 min)"
  mkdir -p "$containerd_out"
  local tmp="$containerd_out/.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp"
  local pkgs=()
  for cmd in "${todo[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$cmd@v$CONTAINERD_VERSION"); done
  # Storage drivers needing cgo or kernel headers are left out; the node uses overlayfs.
  GOBIN="$tmp" go install -trimpath -tags "no_btrfs no_devmapper no_zfs no_aufs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD_VERSION" \
    "${pkgs[@]}" || die "cannot build containerd v$CONTAINERD_VERSION. $proxy_hint"
  for cmd in "${todo[@]}"; do mv "$tmp/$cmd" "$containerd_out/$cmd"; done
  rm -rf "$tmp"
}

case "${1:-all}" in
  all) build_containerd; build_kubernetes_node ;;
  containerd) build_containerd ;;
  kubernetes) build_kubernetes_node ;;
  *) die "unknown target ${1}: use all, containerd or kubernetes" ;;
esac
log "done"
