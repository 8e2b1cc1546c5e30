#!/usr/bin/env bash
# Training across two processes on the CPU, against one process (docs/benchmarks.md, "Several
# processes"): `nanochat bench train` of nanochat's CPU demo shape (depth 4, T 1024) in one
# process with two threads and B = 2 rows, then under `mpirun -np 2` with one thread per rank and
# B = 1 row each (the same 2048 tokens a step), with the optimizer sharded three ways (`all`:
# every parameter one owner, training's; `matrices`: Muon's only; `none`: every rank updates
# every parameter). Prints one JSON line per run and a summary table.
#
#   scripts/bench-dist.sh [--vocab 8192] [--recipe v1|head] [--steps 5] [--bin PATH]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vocab=8192 recipe=v1 steps=5 bin="$root/target/release/nanochat"
while [ $# -gt 0 ]; do
  case "$1" in
    --vocab) vocab="$2"; shift 2 ;;
    --recipe) recipe="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    *) echo "usage: $0 [--vocab N] [--recipe v1|head] [--steps N] [--bin PATH]" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || (cd "$root" && cargo build --release -p nanochat-bin --features mpi)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(bench train --recipe "$recipe" --depth 4 --seq-len 1024 --vocab "$vocab" --steps "$steps" --json)
out=$(mktemp)
echo "one process, 2 threads, B=2" >&2
"$bin" "${common[@]}" --batch-size 2 | tee -a "$out"
for shard in all matrices none; do
  echo "mpirun -np 2, 1 thread each, B=1, --shard-optimizer $shard" >&2
  mpirun --oversubscribe -np 2 "$bin" "${common[@]}" --batch-size 1 --shard-optimizer "$shard" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
base = runs[0]["tokens_per_s"]
print(f"{'run':<28} {'tokens/s':>9} {'scaling':>8} {'step s':>7} {'optim s':>8} {'comm s':>7}")
for r in runs:
    name = "1 process x 2 threads" if r["world_size"] == 1 else f"2 ranks, shard {r['shard_optimizer']}"
    print(f"{name:<28} {r['tokens_per_s']:>9.0f} {r['tokens_per_s']/base:>7.2f}x {r['step_seconds']:>7.3f} "
          f"{r['optimizer_seconds']:>8.3f} {r['communication_seconds']:>7.3f}")
PY
rm -f "$out"
