#!/usr/bin/env bash
# Builds the one CUDA `nanochat` binary for a GPU machine that has the NVIDIA driver, CUDA 13 and
# python3 but no Rust toolchain, crate registry or network, compresses it for the trip
# (../shared/CUBECL.md) and prints the one command to run there. `selftest --device cuda` runs
# every kernel check, so no separate test binary travels.
#
# libstdc++, zlib and zstd are linked statically, so the binary needs only libc, libm and
# libgcc_s, plus libcuda, libnvrtc and libcublasLt loaded at run time (scripts/gpu-check.sh
# finds them and the CUDA headers NVRTC needs, and sets the environment itself).
#
#   ./scripts/build-cuda.sh            -> dist/nanochat.xz
# then, on the GPU machine, from the repository with dist/ beside it:
#   scripts/gpu-check.sh
#
#   ./scripts/build-cuda.sh --mpi      -> target/cuda-mpi/release/nanochat
# a cluster binary: CUDA and MPI (`mpirun -np 8 nanochat base-train --device cuda ...`). It links
# the system's OpenMPI (libmpi.so.40), which the cluster's nodes must have; the GPU check's
# binary above has no MPI dependency.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
if [ "${1:-}" = --mpi ]; then
  export CUDARC_CUDA_VERSION=13000
  cargo build --release -p nanochat-bin --features cuda,mpi --target-dir target/cuda-mpi
  ldd target/cuda-mpi/release/nanochat | grep -i mpi
  echo "Built target/cuda-mpi/release/nanochat (CUDA + MPI). Launch: mpirun -np 8 target/cuda-mpi/release/nanochat base-train --device cuda ..."
  exit 0
fi
static="$root/target/static-libs"
mkdir -p "$static" dist
ln -sf /usr/lib/gcc/x86_64-linux-gnu/12/libstdc++.a "$static/libstdc++.a"
ln -sf /usr/lib/x86_64-linux-gnu/libz.a "$static/libz.a"
ln -sf /usr/lib/x86_64-linux-gnu/libzstd.a "$static/libzstd.a"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$static"
export CUDARC_CUDA_VERSION=13000
cargo build --release -p nanochat-bin --features cuda --target-dir target/cuda
rm -f dist/kernel-tests.xz
xz -T0 -6 -c target/cuda/release/nanochat > dist/nanochat.xz.tmp
mv dist/nanochat.xz.tmp dist/nanochat.xz
ls -la dist/
ldd target/cuda/release/nanochat || true
# What travels to the GPU machine (the repository's files and dist/) must stay under 60 MiB;
# CI keeps room for the archive by the size recorded here.
echo "$(stat -c %s dist/nanochat.xz) bytes: dist/nanochat.xz built $(date -u +%F) by scripts/build-cuda.sh" > scripts/dist-size
./scripts/check-travel.sh
cat <<'EOF'

Built dist/nanochat.xz. On the GPU machine, from this repository with dist/ beside it, run:

    scripts/gpu-check.sh

Results go to gpu-check-out/gpu-check.json, the full log beside it (models and caches in
gpu-check-out/work). With the device tool, where what is written under $OUT comes back even
from a run cut off (at most 8 files, so only the two results go there; the work folder stays
on the machine for a rerun while it is warm):

    run(command='scripts/gpu-check.sh --out "$OUT" --work gpu-check-out/work --deadline 420',
        carry=["dist/nanochat.xz"], timeout_s=480)
EOF
