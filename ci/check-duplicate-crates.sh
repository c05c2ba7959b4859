#!/usr/bin/env bash
# Fails if the workspace builds any rust-vmm crate in two versions: every device must
# share one vm-memory and one virtio-queue (DESIGN.md, "Crate versions").
set -euo pipefail
cd "$(dirname "$0")/.."
dups=$(cargo tree --workspace -d -e normal --depth 0 --prefix none --format '{p}' 2>/dev/null |
  grep -E '^(vm-memory|virtio-queue|virtio-bindings|vmm-sys-util|kvm-bindings|kvm-ioctls|vhost|vhost-user-backend|virtio-vsock|linux-loader|event-manager|vm-superio|fuse-backend-rs) ' |
  sort -u || true)
if [ -n "$dups" ]; then
  echo "rust-vmm crates built in more than one version:" >&2
  echo "$dups" >&2
  exit 1
fi
echo "rust-vmm crates: one version each"
