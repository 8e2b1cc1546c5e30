#!/usr/bin/env bash
# Builds the CUDA `nanochat` binary and the kernel test binary for a GPU machine that has the
# NVIDIA driver and CUDA 13 but no Rust toolchain or crate registry, and compresses them for
# the trip (../shared/CUBECL.md). libstdc++, zlib and zstd are linked statically so that the
# binaries need only libc, libm and libgcc_s (plus libcuda, libnvrtc and libcublasLt, loaded at
# run time).
#
#   ./scripts/build-cuda.sh            -> dist/nanochat.xz, dist/kernel-tests.xz
# On the GPU machine:
#   xz -d nanochat.xz && chmod +x nanochat
#   LD_LIBRARY_PATH=/usr/local/cuda/lib64 CUDA_PATH=/usr/local/cuda ./nanochat selftest --device cuda
#   LD_LIBRARY_PATH=/usr/local/cuda/lib64 CUDA_PATH=/usr/local/cuda ./nanochat bench kernels --device cuda --dtype bfloat16
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
static="$root/target/static-libs"
mkdir -p "$static" dist
ln -sf /usr/lib/gcc/x86_64-linux-gnu/12/libstdc++.a "$static/libstdc++.a"
ln -sf /usr/lib/x86_64-linux-gnu/libz.a "$static/libz.a"
ln -sf /usr/lib/x86_64-linux-gnu/libzstd.a "$static/libzstd.a"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$static"
export CUDARC_CUDA_VERSION=13000
cargo build --release -p nanochat-bin --features cuda --target-dir target/cuda
cargo test --release -p nanochat-kernels --features cuda --no-run --target-dir target/cuda 2>&1 | tee target/cuda/test-build.log
test_bin=$(grep -o 'target/cuda/release/deps/nanochat_kernels-[0-9a-f]*' target/cuda/test-build.log | tail -1)
xz -T0 -6 -c target/cuda/release/nanochat > dist/nanochat.xz
xz -T0 -6 -c "$test_bin" > dist/kernel-tests.xz
ls -la dist/
ldd target/cuda/release/nanochat || true
