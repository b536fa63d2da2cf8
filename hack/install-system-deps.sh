#!/usr/bin/env bash
# Debian packages the end-to-end tests use: a real Prometheus (server + promtool).
# Installed only when missing; needs root (or sudo) and Debian's package archive.
set -euo pipefail
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "[system-deps] prometheus and promtool present"
  exit 0
fi
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
echo "[system-deps] installing: ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the service on install; the tests run their own instance on free ports.
"${sudo_cmd[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
pkill -x prometheus >/dev/null 2>&1 || true
echo "[system-deps] done"
