"""The stages of scripts/gpu-check.sh, most valuable first, with their sizes and tolerances.

Each stage is a function of the running check `c` (scripts/gpu_check.py's `Checker`) that
returns its figures (a dict) or raises StageFailed / StageTimeout."""

import glob
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

from gpu_check_util import StageFailed, StageTimeout, tail

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------------
# Tolerances of the training parity (stage 3), and why.
#
# The same 50 steps (same seed, data and tokenizer) of a tiny model run on the CPU and on the
# device, in f32 with TF32 off on both sides (the binary allows TF32 only under
# `bench kernels --tf32`); the loss of every step is compared.
# - The two differ only in summation order (cuBLASLt and cubek tiles against the CPU's GEMM,
#   warp reductions against sequential ones): about 1e-7 to 1e-6 relative per op.
# - The loss is a mean over every token of the batch, which averages such differences out, and
#   50 steps of Muon and AdamW at these learning rates amplify them far less than the bf16/f32
#   gap: measured on the CPU (2026-11-30), a whole run in bf16 instead of f32 moves the loss by
#   at most 1.1e-3 relative over 50 steps (5.7e-4 over the smoke's 20), with bf16's rounding
#   2^16 times coarser than f32's.
# - So F32_RTOL = 1e-4 (the f32 tolerance of the reference fixtures) leaves two orders of
#   magnitude for amplification and still fails on a kernel that silently ran in a lower
#   precision (>= 5e-4) or computed anything wrong (>= 1e-2 from the first update on).
# Step 1's loss is ln(vocab) on both sides (lm_head starts at zero, as in nanochat), so the
# comparison means something from step 2 on.
F32_RTOL = 1e-4
# bf16 on the device against bf16 on the CPU: both round to bf16 at the same points and
# accumulate in f32, in different orders. Each bf16 rounding is 2^-9 relative, so two bf16 runs
# can drift apart by about as much as one bf16 run drifts from f32 (1.1e-3 measured); 5e-3 is
# that with a margin of four and still catches a bf16-only kernel bug, which moves the loss by
# 1e-2 or more.
BF16_RTOL = 5e-3
# Against the f32 CPU curve, for the record and as a second net: 10x the measured gap.
BF16_VS_F32_RTOL = 1e-2

SMOKE_PARITY = dict(depth=1, seq_len=128, batch_size=1, steps=20)
FULL_PARITY = dict(depth=2, seq_len=128, batch_size=2, steps=50)
DECODE_TOKENS = 64


def stage_selftest(c):
    args = ["selftest", "--device", c.dev, "--json"]
    if c.smoke:
        # `cargo test` runs every check already; the smoke proves the stage's plumbing.
        args += ["--filter", "rmsnorm"]
    stdout, stderr, rc = c.run(args, 240, check=False)
    r = c.parse(stdout, args, stderr, rc)
    failed = [f"{x['name']} {x['dtype']} [{x['case']}]: rel_err {x['rel_err']:.3e} > "
              f"{x['tolerance']:.1e}" for x in r["comparisons"] if not x["passed"]]
    figures = {"passed": r["passed"], "failed": r["failed"],
               "dtypes": sorted({x["dtype"] for x in r["comparisons"]}),
               "checks": len({x["name"] for x in r["comparisons"]}),
               "reference_fixtures": [{"file": f.get("file"), "max_rel_err": f.get("max_rel_err")}
                                      for f in r.get("reference_fixtures", [])]}
    if r["failed"] or failed or rc != 0:
        raise StageFailed(f"{r['failed']} comparisons failed (exit {rc}):\n"
                          + "\n".join(failed[:20]), figures)
    if r["passed"] == 0:
        raise StageFailed("no comparison ran", figures)
    return figures


def stage_nccl(c):
    """NCCL at world size 1 on this GPU (the collectives of training across ranks): all-reduce,
    reduce and broadcast of odd lengths, checked exactly against the host's values (the
    `nccl.world1` check of selftest). The CPU smoke has no NCCL: it proves the plumbing."""
    args = ["selftest", "--device", c.dev, "--json", "--filter", "nccl"]
    stdout, stderr, rc = c.run(args, 120, check=False)
    r = c.parse(stdout, args, stderr, rc)
    comparisons = [x for x in r["comparisons"] if x["name"].startswith("nccl")]
    failed = [f"{x['name']} [{x['case']}]: rel_err {x['rel_err']:.3e}"
              for x in r["comparisons"] if not x["passed"]]
    figures = {"passed": r["passed"], "failed": r["failed"],
               "collectives": sorted({x["name"] for x in comparisons})}
    if failed or rc != 0:
        raise StageFailed(f"{len(failed)} NCCL comparisons failed (exit {rc}):\n"
                          + "\n".join(failed[:20]), figures)
    if not comparisons and c.dev != "cpu":
        raise StageFailed("no NCCL comparison ran (a binary without CUDA?)", figures)
    return figures


def model_fixtures():
    """Every model fixture under tests/fixtures/reference, found by glob (the optimizer-only
    fixtures, `*_optim`, `*_muon`, have their own tests)."""
    pattern = os.path.join(ROOT, "tests", "fixtures", "reference", "**", "*.safetensors")
    return sorted(f for f in glob.glob(pattern, recursive=True)
                  if not re.search(r"_(optim|muon)\.safetensors$", os.path.basename(f)))


def stage_verify_reference(c):
    files = model_fixtures()
    if not files:
        raise StageFailed("no fixture under tests/fixtures/reference")
    if c.smoke:
        files = files[:1]
    figures, bad = {}, []
    for f in files:
        name = os.path.relpath(f, ROOT)
        args = ["verify-reference", f, "--device", c.dev]
        stdout, stderr, rc = c.run(args, 180, check=False)
        r = c.parse(stdout, args, stderr, rc)
        figures[name] = {"max_rel_err": r.get("max_rel_err"),
                         "muon_rel_err": r.get("muon_rel_err"), "passed": r.get("passed")}
        if not r.get("passed") or rc != 0:
            bad.append(f"{name}: max_rel_err {r.get('max_rel_err')} (exit {rc})")
    if bad:
        raise StageFailed("fixtures off (f32 tolerance 1e-4, TF32 off):\n" + "\n".join(bad),
                          figures)
    return figures


def rel_diff(curve, ref):
    return [abs(a - b) / abs(b) for a, b in zip(curve, ref)]


def stage_training_parity(c):
    # The four runs at once: the CPU references share the host with the device's runs.
    runs = {"cpu-f32": ("cpu", "float32"), "cpu-bf16": ("cpu", "bfloat16"),
            "dev-f32": (c.dev, "float32"), "dev-bf16": (c.dev, "bfloat16")}
    tags = {k: ("parity-cpu" if k == "cpu-f32" else f"parity-{k.replace('dev', c.dev)}")
            for k in runs}
    curves = c.train_many({tags[k]: v for k, v in runs.items()}, 400)
    ref, ref_bf = curves[tags["cpu-f32"]], curves[tags["cpu-bf16"]]
    got, bf = curves[tags["dev-f32"]], curves[tags["dev-bf16"]]
    rel, rel_bf, rel_bf32 = rel_diff(got, ref), rel_diff(bf, ref_bf), rel_diff(bf, ref)
    worst = max(range(len(rel)), key=lambda i: rel[i])
    figures = {"steps": len(ref), "cpu_f32_loss_first_last": [ref[0], ref[-1]],
               "f32_loss_first_last": [got[0], got[-1]], "f32_max_rel_diff": max(rel),
               "f32_worst_step": worst + 1, "f32_rtol": F32_RTOL,
               "bf16_loss_first_last": [bf[0], bf[-1]],
               "bf16_vs_cpu_bf16_max_rel_diff": max(rel_bf), "bf16_rtol": BF16_RTOL,
               "bf16_vs_cpu_f32_max_rel_diff": max(rel_bf32),
               "bf16_vs_f32_rtol": BF16_VS_F32_RTOL,
               "cpu_bf16_vs_cpu_f32_max_rel_diff": max(rel_diff(ref_bf, ref))}
    errors = []
    for name, diffs, tol, a, b in (("f32", rel, F32_RTOL, got, ref),
                                   ("bf16 (vs the CPU's bf16)", rel_bf, BF16_RTOL, bf, ref_bf),
                                   ("bf16 (vs the CPU's f32)", rel_bf32, BF16_VS_F32_RTOL, bf, ref)):
        i = max(range(len(diffs)), key=lambda i: diffs[i])
        if diffs[i] > tol:
            errors.append(f"{name} loss on {c.dev} differs by {diffs[i]:.2e} relative at step "
                          f"{i + 1} ({a[i]} vs {b[i]}); tolerance {tol}")
    if not bf[-1] < bf[0]:
        errors.append(f"bf16 run on {c.dev} did not learn: loss {bf[0]} -> {bf[-1]}")
    if errors:
        raise StageFailed("\n".join(errors), figures)
    return figures


def stage_engine_parity(c):
    tag = c.ensure_model()
    replies = {}
    for dev in ("cpu", c.dev):
        args = ["chat-cli", "-i", "base", "-g", tag, "-p", "Tell me about the sea.",
                "-t", "0", "-m", DECODE_TOKENS, "--json", "--device", dev]
        replies[dev] = c.run_json(args, 120)
    a, b = replies["cpu"]["tokens"], replies[c.dev]["tokens"]
    figures = {"tokens": len(b), "finish_reason": replies[c.dev]["finish_reason"],
               "reply": replies[c.dev]["reply"][:200]}
    if a != b:
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        raise StageFailed(f"greedy tokens differ at position {i}: cpu {a[i:i + 8]} vs "
                          f"{c.dev} {b[i:i + 8]} ({len(a)} vs {len(b)} tokens)", figures)
    if not b:
        raise StageFailed("no token was generated", figures)
    return figures


def stage_bench_kernels(c):
    figures = {}
    for dtype in ("bfloat16", "float32"):
        args = ["bench", "kernels", "--device", c.dev, "--dtype", dtype, "--json"]
        if c.smoke:
            args += ["--matmul-size", "128", "--train-gemms", "1", "--train-gemm-tokens", "16"]
        else:
            args += ["--train-gemms", "12,20"]
        r = c.run_json(args, 180)
        if not r.get("train_gemms"):
            raise StageFailed(f"bench kernels --dtype {dtype} printed no train_gemms", figures)
        figures[dtype] = r
    if c.dev == "cuda":
        figures["pytorch_cublas"] = torch_gemms(c, figures)
    return figures


def stage_bench_train(c):
    runs = ([dict(depth=1, batch=1, seq=64, vocab=512, steps=1)] if c.smoke else
            [dict(depth=12, batch=16, seq=2048, vocab=65536, steps=3),
             dict(depth=20, batch=8, seq=2048, vocab=65536, steps=3)])
    figures = {}
    for r in runs:
        out = c.run_json(["bench", "train", "--device", c.dev, "--dtype", "bfloat16",
                          "--depth", r["depth"], "--batch-size", r["batch"], "--seq-len",
                          r["seq"], "--vocab", r["vocab"], "--steps", r["steps"], "--json"], 240)
        figures[f"d{r['depth']}"] = out
    return figures


def stage_bench_decode(c):
    args = (["--depth", "1", "--vocab", "512", "--prompt-len", "8", "--steps", "4"] if c.smoke
            else ["--depth", "20", "--prompt-len", "128", "--steps", "32"])
    return c.run_json(["bench", "decode", "--device", c.dev, "--dtype", "bfloat16", "--json"]
                      + args, 180)


def stage_chat_web(c):
    tag = c.ensure_model()
    args = ["chat-web", "--device", c.dev, "-n", "1", "-i", "base", "-g", tag,
            "--port", "0", "-m", "16"]
    proc, output = c.start(args)
    try:
        limit = min(time.monotonic() + 120, c.deadline)
        addr = None
        while addr is None:
            if time.monotonic() > limit:
                raise StageTimeout("chat-web did not start listening\n" + tail(output()))
            if proc.poll() is not None:
                raise StageFailed(f"chat-web exited {proc.returncode}\n" + tail(output()))
            m = re.search(r"listening on (http://\S+)", output())
            addr = m.group(1) if m else None
            time.sleep(0.2)
        health = json.loads(urllib.request.urlopen(addr + "/health", timeout=30).read())
        if health.get("status") != "ok":
            raise StageFailed(f"/health answered {health}")
        body = json.dumps({"messages": [{"role": "user", "content": "Hello!"}],
                           "max_tokens": 16, "temperature": 0.0}).encode()
        req = urllib.request.Request(addr + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        t = time.monotonic()
        tokens, done, first = [], False, None
        with urllib.request.urlopen(req, timeout=60) as resp:
            for raw in resp:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                ev = json.loads(line[5:])
                if "token" in ev:
                    first = first or time.monotonic() - t
                    tokens.append(ev["token"])
                if ev.get("done"):
                    done = True
                    break
        figures = {"health": health, "streamed_events": len(tokens),
                   "first_token_s": first, "reply": "".join(tokens)[:200],
                   "seconds": time.monotonic() - t}
        if not done or not tokens:
            raise StageFailed(f"the stream ended without tokens or `done`: {figures}", figures)
        return figures
    finally:
        c.stop(proc, "chat-web", output)


# name, function, (estimate, timeout) on an H100/H200, (estimate, timeout) in smoke mode, in
# seconds. The GPU estimates are guesses until a first run measures them (gpu-check.json's
# `seconds`); the smoke ones were measured on CI's 2-core machine, unloaded.
STAGES = [
    ("selftest", stage_selftest, (45, 240), (3, 120)),
    ("verify-reference", stage_verify_reference, (15, 180), (5, 120)),
    ("training-parity", stage_training_parity, (50, 400), (40, 300)),
    ("engine-parity", stage_engine_parity, (15, 150), (4, 120)),
    ("bench-kernels", stage_bench_kernels, (70, 300), (25, 200)),
    ("bench-train", stage_bench_train, (60, 300), (10, 120)),
    ("bench-decode", stage_bench_decode, (20, 180), (3, 120)),
    ("chat-web", stage_chat_web, (15, 150), (3, 120)),
    ("nccl", stage_nccl, (5, 120), (2, 60)),
]

TORCH_GEMMS = r"""
import json, sys, torch
shapes = json.loads(sys.argv[1])
# True f32 and f32 accumulation, as ours: no TF32, no bf16 partial sums.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
    torch.backends.cuda.matmul.fp32_precision = "ieee"
out = []
for s in shapes:
    dt = {"bfloat16": torch.bfloat16, "float32": torch.float32}[s["dtype"]]
    a = torch.randn(*((s["k"], s["m"]) if s["trans_a"] else (s["m"], s["k"])), device="cuda", dtype=dt)
    b = torch.randn(*((s["n"], s["k"]) if s["trans_b"] else (s["k"], s["n"])), device="cuda", dtype=dt)
    f = lambda: (a.t() if s["trans_a"] else a) @ (b.t() if s["trans_b"] else b)
    for _ in range(2): f()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record(); f(); e1.record(); torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3)
    t = sorted(times)[len(times) // 2]
    out.append(dict(s, gflops=2.0 * s["m"] * s["n"] * s["k"] / t / 1e9))
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "gemms": out}))
"""


def torch_gemms(c, figures):
    """PyTorch's cuBLAS on the training GEMMs just measured, in the same run on the same GPU
    (the side-by-side reference; median of 5 calls timed with CUDA events, where ours is the
    median of 3 wall-clock calls with a host sync each). A note instead of figures when PyTorch
    is missing or fails: the stage keeps its own figures either way."""
    shapes = [dict(model=g["model"], layer=g["layer"], passname=g["pass"], m=g["m"], n=g["n"],
                   k=g["k"], trans_a=g["trans_a"], trans_b=g["trans_b"], dtype=dtype)
              for dtype in ("bfloat16", "float32") for g in figures[dtype]["train_gemms"]]
    limit = min(120, c.deadline - time.monotonic())
    if limit < 5:
        return {"error": "skipped: too close to the deadline"}
    try:
        # PyTorch's own environment: its wheels find their CUDA libraries themselves.
        p = subprocess.run([sys.executable, "-c", TORCH_GEMMS, json.dumps(shapes)],
                           env=c.base_env, cwd=c.work, capture_output=True, text=True,
                           timeout=limit)
        c.write_log(f"$ python3 (PyTorch GEMMs)\n{p.stdout}{p.stderr}\n")
        if p.returncode != 0:
            return {"error": tail(p.stderr, 5)}
        return json.loads(p.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"error": f"PyTorch GEMMs ran past {limit:.0f}s"}
    except (OSError, ValueError, IndexError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
