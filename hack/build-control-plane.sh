#!/usr/bin/env bash
# Build the real control-plane binaries that modelward's end-to-end tests and demo run:
# kube-apiserver, kubectl (from k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3) and helm
# (helm.sh/helm/v4), all from the Go module proxy. Binaries are cached outside the repository,
# one folder per component and version, and reused when present.
#
#   hack/build-control-plane.sh            build what is missing, print the bin folders
#   KUBEBUILDER_ASSETS=/path hack/...      use kube-apiserver, etcd, kubectl from that folder
#
# Environment: K8S_VERSION, ETCD_VERSION, HELM_VERSION, MODELWARD_CACHE (default ~/.cache/modelward).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"
HELM_VERSION="${HELM_VERSION:-4.3.1}"
CACHE="${MODELWARD_CACHE:-$HOME/.cache/modelward}"

log() { printf '[build-control-plane] %s\n' "$*" >&2; }
die() { printf '[build-control-plane] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not installed. Install Go >= 1.25 (https://go.dev/doc/install) or set KUBEBUILDER_ASSETS to a folder holding kube-apiserver, etcd and kubectl."

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

k8s_out="$CACHE/bin/kubernetes-v$K8S_VERSION"
etcd_out="$CACHE/bin/etcd-v$ETCD_VERSION"
helm_out="$CACHE/bin/helm-v$HELM_VERSION"

proxy_hint="Check that the Go module proxy is reachable (go env GOPROXY) and that the version exists."

build_etcd() {
  if [[ -x "$etcd_out/etcd" ]]; then log "etcd v$ETCD_VERSION: cached at $etcd_out"; return; fi
  log "etcd v$ETCD_VERSION: building (a few minutes on a cold cache)"
  local work="$CACHE/build/etcd-v$ETCD_VERSION"
  mkdir -p "$work" "$etcd_out"
  (
    cd "$work"
    [[ -f go.mod ]] || go mod init modelward.local/build/etcd >/dev/null 2>&1
    go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" || die "cannot fetch etcd v$ETCD_VERSION. $proxy_hint"
    go build -trimpath -o "$etcd_out/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$etcd_out/etcd.tmp" "$etcd_out/etcd"
  )
  log "etcd v$ETCD_VERSION: built"
}

build_helm() {
  if [[ -x "$helm_out/helm" ]]; then log "helm v$HELM_VERSION: cached at $helm_out"; return; fi
  log "helm v$HELM_VERSION: building"
  mkdir -p "$helm_out"
  GOBIN="$helm_out" go install -trimpath "helm.sh/helm/v4/cmd/helm@v$HELM_VERSION" \
    || die "cannot build helm v$HELM_VERSION. $proxy_hint"
  log "helm v$HELM_VERSION: built"
}

build_kubernetes() {
  if [[ -x "$k8s_out/kube-apiserver" && -x "$k8s_out/kubectl" ]]; then
    log "kubernetes v$K8S_VERSION: cached at $k8s_out"; return
  fi
  log "kubernetes v$K8S_VERSION: building kube-apiserver and kubectl (20-30 min on 2 cores when cold)"
  local work="$CACHE/build/kubernetes-v$K8S_VERSION"
  local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  local staging_version="v0.${K8S_VERSION#*.}"
  mkdir -p "$work" "$k8s_out"
  (
    cd "$work"
    [[ -f go.mod ]] || go mod init modelward.local/build/kubernetes >/dev/null 2>&1
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" \
      || die "cannot download k8s.io/kubernetes v$K8S_VERSION. $proxy_hint"
    # k8s.io/kubernetes points every staging module at ./staging with replace directives that
    # do not apply to a consumer; map each one to its published tag instead.
    local modules
    modules="$(grep -E '=>[[:space:]]+\./staging/' "$gomod" | sed -E 's/^[[:space:]]*(replace[[:space:]]+)?//' | awk '{print $1}')"
    [[ -n "$modules" ]] || die "found no staging modules in $gomod"
    for m in $modules; do go mod edit -replace="$m=$m@$staging_version"; done
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@v$K8S_VERSION" \
      || die "cannot resolve kube-apiserver v$K8S_VERSION. $proxy_hint"
    local ldflags=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    done
    for cmd in kube-apiserver kubectl; do
      log "kubernetes v$K8S_VERSION: compiling $cmd"
      go build -trimpath -ldflags "$ldflags" -o "$k8s_out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$k8s_out/$cmd.tmp" "$k8s_out/$cmd"
    done
  )
  log "kubernetes v$K8S_VERSION: built"
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  for b in kube-apiserver etcd kubectl; do
    [[ -x "$KUBEBUILDER_ASSETS/$b" ]] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b"
  done
  log "using kube-apiserver, etcd, kubectl from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
else
  build_etcd
  build_kubernetes
fi
build_helm
log "done"
