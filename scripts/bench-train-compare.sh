#!/usr/bin/env bash
# Training throughput side by side, one run on one machine (issue 15's "Speed"): `nanochat bench
# train` for a recipe, then PyTorch running nanochat's own code for that recipe (eager, then
# torch.compile; scripts/bench_torch.py) at nanochat's CPU demo shape (depth 4, T 1024, B 1),
# vocab 8192 and 65536. Prints one JSON line per measurement. Nothing else should run meanwhile.
#
#   scripts/bench-train-compare.sh NANOCHAT_CHECKOUT [RECIPE=head] [PYTHON=python3] [STEPS=10]
#
# NANOCHAT_CHECKOUT: github.com/karpathy/nanochat at 92d63d4 for head, 16788ee for v1 (e.g.
# `git -C nanochat archive 92d63d4 | tar -x -C /tmp/nanochat-head`). PYTHON needs torch
# (pip's CPU wheel, or the default one) and filelock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src="$1"; recipe="${2:-head}"; py="${3:-python3}"; steps="${4:-10}"
bin="$PWD/target/release/nanochat"
[ -x "$bin" ] || cargo build --release -p nanochat-bin
echo "{\"machine\": \"$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\", \"date\": \"$(date -u +%FT%TZ)\"}"
for vocab in 8192 65536; do
  shape=(--depth 4 --seq-len 1024 --batch-size 1 --vocab "$vocab" --steps "$steps")
  "$bin" bench train --recipe "$recipe" "${shape[@]}" --json 2>/dev/null | tr -d '\n' | tr -s ' '; echo
  "$py" scripts/bench_torch.py --nanochat "$src" "${shape[@]}" 2>/dev/null | tail -1
  "$py" scripts/bench_torch.py --nanochat "$src" "${shape[@]}" --compile 2>/dev/null | tail -1
done
