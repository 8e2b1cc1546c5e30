#!/usr/bin/env bash
# One command proves the whole CUDA path: kernels, reference fixtures, CPU-vs-GPU training and
# decoding parity, kernel/training/decoding throughput and the chat server, each stage timed
# and written to DIR/gpu-check.json as it finishes (a run cut off at any moment keeps what
# finished). The GPU counterpart of `./x test`.
#
#   scripts/gpu-check.sh [--device cuda|cpu] [--smoke] [--stages LIST] [--out DIR]
#                        [--deadline SECONDS] [--bin PATH]
#
# On a GPU machine, after `scripts/build-cuda.sh` here: `scripts/gpu-check.sh` (it unpacks
# dist/nanochat.xz itself and finds libcuda, NVRTC, cuBLASLt and NCCL). CI runs
# `scripts/gpu-check.sh --device cpu --smoke`: the same stages with the CPU binary at tiny sizes.
# The stages, their sizes and tolerances are in scripts/gpu_check.py (python3, standard library
# only: the GPU machine has python3 but no Rust toolchain and no network).
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
exec python3 "$(dirname "${BASH_SOURCE[0]}")/gpu_check.py" "$@"
