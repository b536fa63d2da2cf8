#!/usr/bin/env bash
# Debian packages the end-to-end tests use, installed only when missing:
#   prometheus                 a real Prometheus (server + promtool)
#   containerd, runc           the container runtime of the test node (hack/modelward_dev/node.py)
#   containernetworking-plugins  bridge, host-local, loopback CNI plugins for the node's pods
#   docker-registry            the CNCF distribution registry the node pulls images from
#   busybox-static             the base of the test images (no Docker Hub here)
#   gcc, libc6-dev             to compile Kubernetes' pause.c statically (the pod sandbox image)
#   zsh, fish                  to test `modelward completion zsh|fish` in the real shells
#   chromium-headless-shell    renders the HTML evidence pack in a test, as an auditor's browser would
# No service is started or enabled: the harness runs its own instances on free ports, inside
# a private mount and PID namespace. Needs root (or sudo) and Debian's package archive.
set -euo pipefail

# package name -> a file it installs, to tell whether it is present without dpkg (which a
# non-Debian developer machine lacks; there the packages must come from elsewhere).
declare -A wanted=(
  [prometheus]=/usr/bin/prometheus
  [containerd]=/usr/bin/containerd
  [runc]=/usr/sbin/runc
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [docker-registry]=/usr/bin/docker-registry
  [busybox-static]=/bin/busybox
  [gcc]=/usr/bin/gcc
  [libc6-dev]=/usr/lib/x86_64-linux-gnu/libc.a
  [zsh]=/usr/bin/zsh
  [fish]=/usr/bin/fish
  [chromium-headless-shell]=/usr/bin/chromium-headless-shell
)
missing=()
for package in prometheus containerd runc containernetworking-plugins docker-registry busybox-static gcc libc6-dev zsh fish chromium-headless-shell; do
  if [[ ! -e ${wanted[$package]} ]]; then
    missing+=("$package")
  fi
done
# Debian's plain busybox package also installs /bin/busybox, linked against libc: the test
# images need the static one (they carry no libc), which replaces it.
if [[ -e /bin/busybox ]] && ldd /bin/busybox >/dev/null 2>&1; then
  missing+=(busybox-static)
fi
# promtool ships with prometheus; check it too, a half-installed prometheus lacks it.
if ! command -v promtool >/dev/null 2>&1 && [[ ! " ${missing[*]} " == *" prometheus "* ]]; then
  missing+=(prometheus)
fi
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "[system-deps] prometheus, containerd, runc, CNI plugins, docker-registry, busybox, zsh, fish, chromium present"
  exit 0
fi
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
echo "[system-deps] installing: ${missing[*]}"
# Debian starts a package's service on install; the tests run their own instances on free
# ports, so keep the system ones from starting at all (policy-rc.d exit 101 = "not allowed"),
# rather than killing them afterwards by name, which could hit a test's process.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
  "${sudo_cmd[@]}" chmod 755 "$policy"
  added_policy=1
fi
cleanup() { [[ $added_policy -eq 1 ]] && "${sudo_cmd[@]}" rm -f "$policy"; return 0; }
trap cleanup EXIT
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# systemd machines: also keep them from starting at the next boot.
for service in prometheus containerd docker-registry; do
  "${sudo_cmd[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
done
echo "[system-deps] done"
