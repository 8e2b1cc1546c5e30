#!/usr/bin/env bash
# Runs the four library examples (examples/, README "Examples") against a base dir that holds a
# tokenizer and a base model, as CI does after the GPU check's smoke run:
#   scripts/run-examples.sh BASE_DIR [BASE_TAG]
# custom_op needs no model; finetune fine-tunes the base model BASE_TAG (default: the newest) on
# examples/data/conversations.jsonl into the sft model `examples` under BASE_DIR; chat and
# custom_task then load that model. Each example is timed; the script fails when one fails, or
# when custom_op's gradient check does not catch a wrong backward rule. Nothing is written
# outside BASE_DIR and target/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: scripts/run-examples.sh BASE_DIR [BASE_TAG]" >&2
  exit 2
fi
base=$1
if [ ! -d "$base/base_checkpoints" ]; then
  echo "error: $base has no base_checkpoints/: train a base model there first, e.g." >&2
  echo "  NANOCHAT_BASE_DIR=$base nanochat tok-train --vocab-size 512 --max-chars 200000" >&2
  echo "  NANOCHAT_BASE_DIR=$base nanochat base-train --depth 1 --seq-len 128 --total-steps 20" >&2
  exit 2
fi
tag=()
if [ $# -eq 2 ]; then tag=(-g "$2"); fi

# One build of all four (a no-op after `./x test`, which builds the examples too); then the
# binaries run directly, as `cargo run --release --example NAME -- ARGS` would.
# The features of ./x test (MPI): the dependencies it built serve here too.
cargo build --release --workspace --examples --quiet --features nanochat-bin/mpi
ex=target/release/examples
start=$(date +%s)
run() {
  local name=$1 t0
  shift
  t0=$(date +%s)
  echo "== example $name $*"
  "$ex/$name" "$@"
  echo "== example $name took $(( $(date +%s) - t0 ))s"
}

run custom_op --steps 30
echo "== example custom_op --wrong-backward (must fail)"
if out=$("$ex/custom_op" --wrong-backward --steps 1 2>&1); then
  echo "error: custom_op's gradient check passed a wrong backward rule" >&2
  exit 1
elif ! grep -q "gradient check of swish failed" <<<"$out"; then
  echo "error: custom_op --wrong-backward failed otherwise than by its gradient check:" >&2
  echo "$out" >&2
  exit 1
fi
run finetune --base-dir "$base" -i base "${tag[@]}" --steps 10 --out-tag examples
run chat --base-dir "$base" -i sft -g examples -p "What do bees make?" -m 32
run custom_task --base-dir "$base" -i sft -g examples --num-examples 24
echo "== examples passed in $(( $(date +%s) - start ))s"
