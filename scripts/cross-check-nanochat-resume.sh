#!/usr/bin/env bash
# A local check (not in CI: it needs PyTorch and a nanochat checkout): nanochat's own
# scripts/base_train.py continues a run that nanochat-rs continued in nanochat's format, and
# lands where nanochat-rs's own continuation lands.
#   1. nanochat-rs resumes tests/fixtures/reference/head/native_head from 200 to 203;
#   2. nanochat-rs continues that copy from 203 to 206;
#   3. nanochat (92d63d4) continues a second copy of the 203 state from 203 to 206;
#   4. the per-tensor updates 203 -> 206 of both, the loader state and the loss EMA are compared.
# usage: NANOCHAT_HEAD=<checkout of nanochat 92d63d4> PY=<python with torch, tiktoken, pyarrow,
#          pyyaml, psutil> scripts/cross-check-nanochat-resume.sh [WORK_DIR]
# Recorded 2026-12-01 (torch 2.15 CPU): worst update 4.2e-4 relative L2 (resid_lambdas; matrices
# <= 2.9e-5; wte and value embeddings identical), same dataloader_state_dict, EMA within 2e-8.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HEAD=${NANOCHAT_HEAD:?set NANOCHAT_HEAD to a checkout of nanochat 92d63d4}
PY=${PY:-python3}
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK"
NC="$ROOT/target/release/nanochat"
[ -x "$NC" ] || (cd "$ROOT" && cargo build --release -p nanochat-bin)
rm -rf "$WORK/ours" "$WORK/nano" "$WORK/stubs"
cp -r "$ROOT/tests/fixtures/reference/head/native_head" "$WORK/ours"
chmod -R u+w "$WORK/ours"
FLAGS=(--run=dummy --device-type=cpu --depth=3 --aspect-ratio=21 --head-dim=32 --max-seq-len=512
  --device-batch-size=2 --total-batch-size=1024 --warmup-steps=10 --embedding-lr=3.0
  --unembedding-lr=0.08 --matrix-lr=0.2 --scalar-lr=5.0 --eval-tokens=4096 --model-tag=d3
  --eval-every=-1 --core-metric-every=-1 --sample-every=-1 --save-every=-1)
NANOCHAT_BASE_DIR="$WORK/ours" "$NC" base-train "${FLAGS[@]}" --resume-from-step=200 --num-iterations=203 --quiet >/dev/null
cp -r "$WORK/ours" "$WORK/nano"
NANOCHAT_BASE_DIR="$WORK/ours" "$NC" base-train "${FLAGS[@]}" --resume-from-step=203 --num-iterations=206 --quiet >/dev/null
# nanochat imports its tokenizer trainer (rustbpe) and wandb at start; neither is used here.
mkdir -p "$WORK/stubs"
echo "# import stub" > "$WORK/stubs/rustbpe.py"
echo "# import stub" > "$WORK/stubs/wandb.py"
(cd "$HEAD" && NANOCHAT_BASE_DIR="$WORK/nano" TORCHDYNAMO_DISABLE=1 OMP_NUM_THREADS=1 \
  PYTHONPATH="$WORK/stubs" "$PY" -m scripts.base_train "${FLAGS[@]}" --resume-from-step=203 \
  --num-iterations=206 >"$WORK/nano_log.txt" 2>&1)
"$PY" - "$WORK" <<'PYEOF'
import json, sys, torch
work = sys.argv[1]
d = "/base_checkpoints/d3/"
def load(p):
    return {k.removeprefix("_orig_mod."): v.float() for k, v in torch.load(p, map_location="cpu", weights_only=True).items()}
start, ours, nano = (load(f"{work}/{w}{d}model_{s}.pt") for w, s in [("nano", "000203"), ("ours", "000206"), ("nano", "000206")])
worst = max((((ours[k] - start[k]) - (nano[k] - start[k])).norm() / (nano[k] - start[k]).norm().clamp_min(1e-30)).item() for k in start)
mo, mn = (json.load(open(f"{work}/{w}{d}meta_000206.json")) for w in ("ours", "nano"))
print(json.dumps({"worst_update_rel_l2": worst,
    "loader_equal": mo["dataloader_state_dict"] == mn["dataloader_state_dict"],
    "smooth_train_loss": [mo["loop_state"]["smooth_train_loss"], mn["loop_state"]["smooth_train_loss"]]}))
sys.exit(0 if worst < 1e-3 and mo["dataloader_state_dict"] == mn["dataloader_state_dict"] else 1)
PYEOF
