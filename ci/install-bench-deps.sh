#!/usr/bin/env bash
# Installs the Debian packages only `make bench` needs (the peers the benchmarks measure
# ours against), only those that are missing, with one `apt-get update` first:
#   runc                the peer of bench-exec (`runc exec`) and bench-pod (`runc run`)
#   qemu-system-common  /usr/lib/qemu/virtiofsd (QEMU 7.2's C virtiofsd), the peer of
#                       bench-fs; normally already there with qemu-system-x86
set -euo pipefail

packages=(runc qemu-system-common)

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-bench-deps: missing packages ${missing[*]}; run as root (or install them)" >&2
    exit 1
  fi
  echo "install-bench-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
