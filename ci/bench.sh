#!/usr/bin/env bash
# `make bench`: every benchmark, each printing ratios against a peer measured in the same
# run. Artifacts come from the environment set by the Makefile. Arguments pick benchmarks
# by name (e.g. `ci/bench.sh bench-kvm-boot`); none runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(bench-boot bench-kvm-boot vsock-throughput bench-exec bench-fs bench-pod)
for bench in "${benches[@]}"; do
  echo "== $bench =="
  "$CARGO" run --quiet --release -p stage1-kvm-e2e --bin "$bench"
done
