#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: installs Debian's LLVM 22 (when missing) and presents it
# to cubecl's build as the LLVM bundle it would otherwise download (../shared/CUBECL.md). With
# `test`, also chromium and a Python venv (target/pyenv) with the `openai` client for the
# chat-web tests.
# Safe to run before every build; does nothing when everything is already in place.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need_pkgs=()
# LLVM for cubecl's CPU runtime; OpenMPI (and libclang for the bindings of the `mpi` crate) for
# training across processes (`mpirun -np N nanochat ...`, the feature `mpi` that ./x enables).
pkgs=(llvm-22-dev libpolly-22-dev libzstd-dev libopenmpi-dev openmpi-bin libclang-dev)
# For the tests (`./scripts/setup.sh test`): chromium drives the chat page in the web tests;
# python3-venv holds the `openai` client they use.
[ "${1:-}" = test ] && pkgs+=(chromium python3-venv)
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

X="$root/target/llvm-shim/tracel/tracel-llvm-23.1.0-4"
if [ ! -f "$X/.tracel-llvm-installed" ]; then
  mkdir -p "$X/bin"
  ln -sfn /usr/lib/llvm-22/include "$X/include"
  ln -sfn /usr/lib/llvm-22/lib "$X/lib"
  cat > "$X/bin/llvm-config" <<'SH'
#!/bin/sh
# Debian's llvm-config prints absolute .so paths; the bundler turns them into -llibz3: print -lz3 instead.
/usr/lib/llvm-22/bin/llvm-config "$@" | sed -E 's#/usr/lib/x86_64-linux-gnu/lib([A-Za-z0-9_+-]+)\.so#-l\1#g'
SH
  chmod +x "$X/bin/llvm-config"
  touch "$X/.tracel-llvm-installed"
fi

# The OpenAI Python client, which the chat-web tests point at our /v1/chat/completions.
PY="$root/target/pyenv"
if [ "${1:-}" = test ] && { [ ! -x "$PY/bin/python" ] || ! "$PY/bin/python" -c "import openai" 2>/dev/null; }; then
  echo "setup: creating $PY with the openai client" >&2
  python3 -m venv "$PY"
  "$PY/bin/pip" install -q --no-cache-dir openai
fi
