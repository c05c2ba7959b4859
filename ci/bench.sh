#!/usr/bin/env bash
# `make bench`: every benchmark, each printing its own figures and ratio against its peer
# measured in the same run. The boot benchmark needs the kernel and initramfs that
# `make bench` builds first (STAGE1_KVM_* in the environment); the vsock one needs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

echo "== boot: qemu engine vs plain QEMU =="
"$CARGO" run --release -q -p stage1-kvm-e2e --bin bench-boot

echo "== vsock backend: device + muxer vs a plain Unix socketpair =="
"$CARGO" run --release -q -p stage1-kvm-e2e --bin vsock-throughput
