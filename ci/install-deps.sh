#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, only those that are missing,
# with one `apt-get update` first. The kernel's own build dependencies are installed by
# kernel-config/build.sh.
set -euo pipefail

packages=(
  qemu-system-x86   # the qemu engine (and the peer in benchmarks)
  busybox-static    # test initramfs tools (a shell for the guest-side tests)
  gcc               # the test guest and the benchmark's minimal C /init
  libc6-dev         # static libc for the guest agent (+crt-static) and the C /init
  binutils          # objdump: the test guest's instruction scan
  make
)

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages ${missing[*]}; run as root (or install them)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found: install Rust (rustup, stable >= 1.87) first" >&2
  exit 1
fi
