#!/usr/bin/env bash
# What travels to a GPU machine (the repository's files that git does not ignore, plus dist/)
# must stay under 60 MiB: the device tool carries at most 64 MiB, and fixtures grow with the
# next issues. Where dist/ has not been built (CI), room is kept for it: the size of the last
# dist/nanochat.xz built (scripts/build-cuda.sh), recorded in scripts/dist-size.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
limit=$((60 * 1024 * 1024))
files=$(git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
if [ -f dist/nanochat.xz ]; then
  dist=$(stat -c %s dist/nanochat.xz)
  how="dist/nanochat.xz"
else
  dist=$(grep -o '^[0-9]*' scripts/dist-size)
  how="room for dist/nanochat.xz as last built (scripts/dist-size)"
fi
total=$((files + dist))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "travel: repository files $(mib "$files") + $how $(mib "$dist") = $(mib "$total") (limit $(mib "$limit"))"
if [ "$total" -gt "$limit" ]; then
  echo "error: what travels to the GPU machine is over 60 MiB; largest files:" >&2
  git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c '%s %n' \
    | sort -rn | head -10 >&2
  exit 1
fi
