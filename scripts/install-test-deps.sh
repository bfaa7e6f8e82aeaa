#!/usr/bin/env bash
# Install the Debian packages listed in scripts/test-packages.txt that are missing.
# Needs root and apt-get; otherwise it only says which tests will be skipped.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mapfile -t pkgs < <(grep -v '^\s*#' "$ROOT/scripts/test-packages.txt" | grep -v '^\s*$')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[test-deps] Debian test packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[test-deps] missing Debian packages: ${missing[*]} (not root or no apt-get): the tests that need them will be skipped with a reason"
  exit 0
fi
echo "[test-deps] installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || echo "[test-deps] could not install ${missing[*]}: the tests that need them will be skipped with a reason"
