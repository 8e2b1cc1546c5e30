#!/usr/bin/env bash
# Fails when `cargo build -p nanochat-bin` and `cargo test --workspace` would resolve a dependency
# with different features: each difference means a second full build of cubecl (minutes). The fix
# is a feature pin in nanochat-kernels/Cargo.toml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
run=$(cargo tree -p nanochat-bin -e normal,build -f "{p} [{f}]" --prefix none | sort -u)
test=$(cargo tree --workspace -e normal,build,dev -f "{p} [{f}]" --prefix none | sort -u)
only_run=$(comm -23 <(echo "$run") <(echo "$test"))
if [ -n "$only_run" ]; then
  echo "features differ between the binary's build and the test build:" >&2
  echo "$only_run" >&2
  exit 1
fi
echo "check-features: the binary and the tests share one dependency build"
