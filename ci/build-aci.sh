#!/usr/bin/env bash
# Builds target/stage1-kvm.aci: the manifest (stage1-manifest.json) and a rootfs with one
# static multi-call binary whose entrypoints are links to it, the guest kernel and
# initramfs, and the directories stage0 expects (contract §1.2). Reproducible: sorted,
# root-owned, mtime 0.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$1 kernel=$2 initramfs=$3 out=$4

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/kvm" "$root/rkt/status" "$root/rkt/env" "$root/opt/stage2" "$root/etc"
install -m 0755 "$binary" "$root/stage1-kvm"
for entrypoint in init enter stop gc; do
  ln -s stage1-kvm "$root/$entrypoint"
done
install -m 0644 "$kernel" "$root/kvm/vmlinux"
install -m 0644 "$initramfs" "$root/kvm/initramfs.cpio"
install -m 0644 stage1-manifest.json "$work/manifest"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu \
    -C "$work" -cf "$out.tmp" manifest rootfs
# An ACI holds relative paths only.
if tar -tf "$out.tmp" | grep -qE '^/|(^|/)\.\.(/|$)'; then
  echo "build-aci: absolute or .. path in the image" >&2
  exit 1
fi
mv "$out.tmp" "$out"
echo "aci: $out ($(stat -c %s "$out") bytes)"
