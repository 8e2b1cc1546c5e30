#!/usr/bin/env bash
# The measurement behind base-train's default --recipe (issue 15): the CPU speedrun's base stage
# (depth 4, 256-token rows, the bundled corpus, one 8192-token tokenizer) under each recipe for
# the same number of training tokens (800 x 1024 = 819,200), two seeds each; then base-eval's
# CORE on the committed samples. Prints one JSON line per run: recipe, flags, seed, wall seconds
# of base-train, final validation bpb (the same contiguous validation stream for every run) and
# CORE. Usage: scripts/recipe-compare.sh [WORK_DIR] [ONLY]  (default: target/recipe-compare; ONLY:
# run just the runs whose tag matches this regex, e.g. `head-b16k-s43`)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="${1:-target/recipe-compare}"; only="${2:-.}"
bin="$PWD/target/release/nanochat"
[ -x "$bin" ] || cargo build --release -p nanochat-bin
rm -rf "$work" && mkdir -p "$work"
export NANOCHAT_BASE_DIR="$PWD/$work" NANOCHAT_DATA_DIR="$PWD/$work/no-data"
unset NANOCHAT_MODEL_DIR NANOCHAT_TOKENIZER_PATH
"$bin" tok-train --vocab-size 8192 >/dev/null 2>&1
common=(--depth 4 --seq-len 256 --batch-size 4 --dtype float32 --device cpu --eval-every 200 --quiet)
# name | flags: v1's default; HEAD at one micro-batch per step (the CPU default of --recipe head);
# HEAD at runs/runcpu.sh's 16,384-token batch (16 micro-batches), 50 steps: the same tokens.
configs=(
  "v1|--recipe v1 --total-steps 800"
  "head|--recipe head --total-steps 800"
  "head-b16k|--recipe head --total-steps 50 --total-batch-size 16384"
)
for seed in 42 43; do
  for c in "${configs[@]}"; do
    name="${c%%|*}"; read -r -a flags <<<"${c#*|}"
    tag="$name-s$seed"
    [[ "$tag" =~ $only ]] || continue
    start=$(date +%s.%N)
    summary=$("$bin" base-train "${common[@]}" "${flags[@]}" --seed "$seed" --model-tag "$tag" 2>/dev/null)
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    bpb=$(echo "$summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["val_bpb"])')
    core=$("$bin" base-eval -g "$tag" --device cpu --samples --quiet -o "$work/core-$tag.json" 2>/dev/null \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["CORE"])')
    printf '{"run": "%s", "flags": "%s", "seed": %s, "wall_s": %.1f, "val_bpb": %s, "core": %s}\n' \
      "$name" "${c#*|}" "$seed" "$wall" "$bpb" "$core"
  done
done
