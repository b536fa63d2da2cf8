#!/usr/bin/env bash
# Debian packages the end-to-end tests use: a real Prometheus (server + promtool).
# Installed only when missing; needs root (or sudo) and Debian's package archive.
set -euo pipefail
missing=()
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  missing+=(prometheus)
fi
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "[system-deps] prometheus and promtool present"
  exit 0
fi
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
echo "[system-deps] installing: ${missing[*]}"
# Debian starts a package's service on install; the tests run their own instances on free
# ports, so keep the system one from starting at all (policy-rc.d exit 101 = "not allowed"),
# rather than killing it afterwards by name, which could hit a test's Prometheus.
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
# systemd machines: also keep it from starting at the next boot.
"${sudo_cmd[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
echo "[system-deps] done"
