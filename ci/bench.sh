#!/usr/bin/env bash
# `make bench`: every benchmark, each printing ratios against a peer measured in the same
# run. Artifacts come from the environment set by the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
for bench in bench-boot; do
  echo "== $bench =="
  cargo run --quiet --release -p stage1-kvm-e2e --bin "$bench"
done
