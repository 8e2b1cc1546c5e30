#!/usr/bin/env python3
"""The stages of scripts/gpu-check.sh (see there for the usage).

Runs a fixed list of stages against one `nanochat` binary, each with its own timeout, under a
global deadline, and rewrites OUT/gpu-check.json atomically after every stage:

    {"device", "driver", "cuda", "started", "smoke", "binary", "environment", "plan",
     "stages": [{"name", "status": "pass|fail|timeout|skipped", "seconds", "figures",
                 "error_tail"}], "finished"}

Every command, its output and its timing also go to OUT/gpu-check.log. Nothing is written
outside OUT: nanochat's folders (NANOCHAT_BASE_DIR), cubecl's kernel cache and the matmul
autotune cache (NANOCHAT_AUTOTUNE_CACHE) all live under it, so a rerun (`--stages 2,3` after a
fix) reuses the compiled kernels and the tuned choices.

Standard library only. Exit status: 0 when every chosen stage passed, 1 when one failed or
timed out, 3 when the deadline skipped one, 2 on bad arguments.
"""

import argparse
import datetime
import glob
import json
import lzma
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------------
# Tolerances of the parity stages, and why.
#
# Training parity (stage 3) runs the same 50 steps (same seed, same data, same tokenizer) of a
# tiny model on the CPU and on the device, both in f32 with TF32 off (the binary only allows
# TF32 under `bench kernels --tf32`), and compares the loss of every step.
# - The two differ only in summation order (cuBLASLt and cubek tiles against the CPU's GEMM,
#   warp reductions against sequential ones): about 1e-7 to 1e-6 relative per op.
# - The loss is a mean over every token of the batch, which averages such differences out, and
#   50 steps of Muon and AdamW at these learning rates amplify them by far less than the
#   bf16/f32 gap: measured on the CPU (2026-11-30), a whole run in bf16 instead of f32 moves the
#   loss by at most 1.1e-3 relative over the 50 steps, with bf16's rounding 2^16 times coarser
#   than f32's.
# - So F32_RTOL = 1e-4 (the f32 tolerance of the reference fixtures) leaves two orders of
#   magnitude for amplification and still fails on a kernel that silently ran in a lower
#   precision (>= 1e-3) or computed anything wrong (>= 1e-2 from the first update on).
# Step 1's loss is ln(vocab) on both sides (lm_head starts at zero, as in nanochat), so the
# comparison starts to mean something from step 2.
F32_RTOL = 1e-4
# bf16 on the device against the f32 CPU curve: 10x the measured CPU bf16-vs-f32 gap (1.1e-3),
# for the device's own accumulation orders (tensor cores, bf16 attention). The run must also
# learn: its last loss below its first.
BF16_RTOL = 1e-2

SMOKE_PARITY = dict(depth=1, seq_len=128, batch_size=1, steps=20)
FULL_PARITY = dict(depth=2, seq_len=128, batch_size=2, steps=50)
DECODE_TOKENS = 64


class StageFailed(Exception):
    """A stage's check did not hold (not a crash of the script)."""


class StageTimeout(Exception):
    pass


class SetupError(Exception):
    """No binary to check: reported in gpu-check.json too, then exit 1."""


class Checker:
    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        self.json_path = os.path.join(self.out, "gpu-check.json")
        self.log_path = os.path.join(self.out, "gpu-check.log")
        self.log = open(self.log_path, "a", encoding="utf-8")
        self.work = os.path.join(self.out, "work")
        os.makedirs(self.work, exist_ok=True)
        self.dev = args.device
        self.smoke = args.smoke
        self.start = time.monotonic()
        self.deadline = self.start + args.deadline
        self.env, self.environment = self.make_env()
        self.bin = self.find_binary()
        self.report = {
            "device": None,
            "driver": None,
            "cuda": None,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "smoke": self.smoke,
            "deadline_s": args.deadline,
            "binary": self.bin,
            "environment": self.environment,
            "plan": [],
            "stages": [],
            "finished": None,
        }
        self.describe_machine()

    # -- logging and the report ---------------------------------------------------------------

    def say(self, msg):
        stamp = f"[{time.monotonic() - self.start:7.1f}s]"
        print(f"{stamp} {msg}", flush=True)
        self.log.write(f"{stamp} {msg}\n")
        self.log.flush()

    def save(self):
        tmp = self.json_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.report, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.json_path)

    # -- environment --------------------------------------------------------------------------

    def make_env(self):
        env = dict(os.environ)
        # nanochat's folders, cubecl's caches and anything keyed on HOME stay under OUT.
        for var in ("NANOCHAT_MODEL_DIR", "NANOCHAT_TOKENIZER_PATH", "NANOCHAT_DATA_DIR"):
            env.pop(var, None)
        env["NANOCHAT_BASE_DIR"] = self.work
        env["NANOCHAT_AUTOTUNE_CACHE"] = os.path.join(self.out, "matmul-autotune.json")
        env["XDG_CACHE_HOME"] = os.path.join(self.out, "xdg-cache")
        env.setdefault("RUST_BACKTRACE", "1")
        cache = os.path.join(self.out, "cubecl-cache")
        os.makedirs(cache, exist_ok=True)
        # cubecl reads cubecl.toml from the working directory up; the commands run in OUT.
        with open(os.path.join(self.out, "cubecl.toml"), "w", encoding="utf-8") as f:
            f.write(
                "# Written by scripts/gpu-check.sh: compiled kernels and autotune results kept\n"
                "# under this folder, so later stages and reruns do not recompile.\n"
                "[compilation]\ncache = true\n\n"
                f"[environment]\npath = {{ directory = {json.dumps(cache)} }}\n"
            )
        environment = {"NANOCHAT_BASE_DIR": self.work, "cubecl_cache": cache,
                       "NANOCHAT_AUTOTUNE_CACHE": env["NANOCHAT_AUTOTUNE_CACHE"]}
        if self.dev == "cuda":
            libs, lib_dirs, cuda_path = find_cuda_libraries()
            environment["libraries"] = libs
            if lib_dirs:
                old = env.get("LD_LIBRARY_PATH", "")
                env["LD_LIBRARY_PATH"] = ":".join(lib_dirs + ([old] if old else []))
            if cuda_path:
                env["CUDA_PATH"] = cuda_path
                env.setdefault("CUDA_HOME", cuda_path)
            environment["LD_LIBRARY_PATH"] = env.get("LD_LIBRARY_PATH")
            environment["CUDA_PATH"] = env.get("CUDA_PATH")
        return env, environment

    def find_binary(self):
        if self.args.bin:
            path = os.path.abspath(self.args.bin)
            if not os.access(path, os.X_OK):
                raise SetupError(f"--bin {path} is not an executable file")
            return path
        if self.dev == "cpu":
            path = os.path.join(ROOT, "target", "release", "nanochat")
            if not os.access(path, os.X_OK):
                raise SetupError(f"{path} not found: build it with "
                                 "`cargo build --release -p nanochat-bin` (or give --bin)")
            return path
        # Unpacked beside the archive, not under OUT: on the device tool OUT is what comes back.
        packed = os.path.join(ROOT, "dist", "nanochat.xz")
        path = os.path.join(ROOT, "dist", "nanochat")
        if os.path.exists(packed):
            if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(packed):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                print(f"unpacking {packed} -> {path}", flush=True)
                tmp = path + ".tmp"
                with lzma.open(packed) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.chmod(tmp, 0o755)
                os.replace(tmp, path)
            return path
        built = os.path.join(ROOT, "target", "cuda", "release", "nanochat")
        if os.access(built, os.X_OK):
            return built
        raise SetupError(f"no CUDA binary: {packed} is missing. Run scripts/build-cuda.sh "
                         "on the build machine and bring dist/ along (or give --bin)")

    def describe_machine(self):
        if self.dev == "cpu":
            model = None
            try:
                with open("/proc/cpuinfo", encoding="utf-8") as f:
                    for line in f:
                        if line.startswith("model name"):
                            model = line.split(":", 1)[1].strip()
                            break
            except OSError:
                pass
            self.report["device"] = f"cpu ({model or 'unknown'}, {os.cpu_count()} threads)"
            return
        smi = shutil.which("nvidia-smi")
        if not smi:
            self.report["device"] = "cuda (nvidia-smi not found)"
            return
        try:
            q = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30)
            first = q.stdout.strip().splitlines()[0] if q.stdout.strip() else ""
            parts = [p.strip() for p in first.split(",")]
            if len(parts) >= 2:
                self.report["device"] = f"{parts[0]} ({parts[2]})" if len(parts) > 2 else parts[0]
                self.report["driver"] = parts[1]
                self.report["gpus"] = len(q.stdout.strip().splitlines())
            plain = subprocess.run([smi], capture_output=True, text=True, timeout=30).stdout
            m = re.search(r"CUDA Version:\s*([0-9.]+)", plain)
            if m:
                self.report["cuda"] = m.group(1)
        except (OSError, subprocess.SubprocessError, IndexError) as e:
            self.report["device"] = f"cuda (nvidia-smi failed: {e})"

    # -- running commands ---------------------------------------------------------------------

    def run(self, args, timeout, check=True):
        """Runs the binary with `args` in OUT; returns (stdout, stderr). Raises StageFailed on a
        non-zero exit (with the tail of its stderr) and StageTimeout past `timeout` or the
        global deadline."""
        limit = min(timeout, self.deadline - time.monotonic())
        if limit <= 0:
            raise StageTimeout("the global deadline passed")
        cmd = [self.bin] + [str(a) for a in args]
        self.log.write(f"$ {' '.join(cmd)}   (timeout {limit:.0f}s)\n")
        self.log.flush()
        t = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=self.out, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            stdout, stderr = proc.communicate()
            self.log_output(stdout, stderr, t, "killed")
            raise StageTimeout(f"`{' '.join(cmd[1:3])}` ran past {limit:.0f}s\n"
                               + tail(stderr))
        except BaseException:
            # The stage's own timeout (SIGALRM) or ^C: the command must not outlive it.
            kill_group(proc)
            stdout, stderr = proc.communicate()
            self.log_output(stdout, stderr, t, "killed with its stage")
            raise
        self.log_output(stdout, stderr, t, f"exit {proc.returncode}")
        if check and proc.returncode != 0:
            raise StageFailed(f"`{' '.join(cmd[1:])}` exited {proc.returncode}\n" + tail(stderr))
        return stdout, stderr

    def log_output(self, stdout, stderr, t, how):
        self.log.write(f"--- stdout\n{stdout}--- stderr\n{stderr}"
                       f"--- {how} after {time.monotonic() - t:.1f}s\n\n")
        self.log.flush()

    def run_json(self, args, timeout):
        stdout, _ = self.run(args, timeout)
        return last_json(stdout, args)

    # -- shared fixtures ----------------------------------------------------------------------

    def parity_sizes(self):
        return SMOKE_PARITY if self.smoke else FULL_PARITY

    def ensure_tokenizer(self):
        if not os.path.exists(os.path.join(self.work, "tokenizer", "tokenizer.json")):
            self.run(["tok-train", "--vocab-size", "512", "--max-chars", "200000"], 120)

    def train(self, tag, device, dtype, timeout):
        """A `base-train` run of the parity model; returns its loss per step."""
        p = self.parity_sizes()
        self.ensure_tokenizer()
        self.run(["base-train", "--depth", p["depth"], "--seq-len", p["seq_len"],
                  "--batch-size", p["batch_size"], "--total-steps", p["steps"],
                  "--eval-every", "0", "--eval-tokens", "512", "--seed", "42",
                  "--device", device, "--dtype", dtype, "--model-tag", tag, "--quiet"],
                 timeout)
        path = os.path.join(self.work, "base_checkpoints", tag, "metrics.jsonl")
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        losses = [r["loss"] for r in rows]
        if len(losses) != p["steps"]:
            raise StageFailed(f"{path}: {len(losses)} steps logged, expected {p['steps']}")
        return losses

    def ensure_model(self):
        """The model of the decoding stages: the CPU side of the training parity (trained
        again when a cut-off run left its folder without a checkpoint)."""
        folder = os.path.join(self.work, "base_checkpoints", "parity-cpu")
        if not glob.glob(os.path.join(folder, "model_*.safetensors")):
            shutil.rmtree(folder, ignore_errors=True)
            self.train("parity-cpu", "cpu", "float32", 300)
        return "parity-cpu"


# ---------------------------------------------------------------------------------------------
# The stages, most valuable first. Each returns its figures (a dict) or raises.

def stage_selftest(c):
    args = ["selftest", "--device", c.dev, "--json"]
    if c.smoke:
        # `cargo test` runs every check already; the smoke proves the stage's plumbing.
        args += ["--filter", "rmsnorm"]
    stdout, _ = c.run(args, 240, check=False)
    r = last_json(stdout, args)
    failed = [f"{x['name']} {x['dtype']} [{x['case']}]: rel_err {x['rel_err']:.3e} > "
              f"{x['tolerance']:.1e}" for x in r["comparisons"] if not x["passed"]]
    dtypes = sorted({x["dtype"] for x in r["comparisons"]})
    figures = {"passed": r["passed"], "failed": r["failed"], "dtypes": dtypes,
               "checks": len({x["name"] for x in r["comparisons"]}),
               "reference_fixtures": [{"file": f.get("file"), "max_rel_err": f.get("max_rel_err")}
                                      for f in r.get("reference_fixtures", [])]}
    if r["failed"] or failed:
        raise StageFailed(f"{r['failed']} comparisons failed:\n" + "\n".join(failed[:20]),
                          figures)
    if r["passed"] == 0:
        raise StageFailed("no comparison ran", figures)
    return figures


def stage_verify_reference(c):
    # Every model fixture, found by glob (optimizer-only fixtures have their own tests).
    files = sorted(f for f in glob.glob(os.path.join(ROOT, "tests", "fixtures", "reference",
                                                     "**", "*.safetensors"), recursive=True)
                   if not re.search(r"_(optim|muon)\b|_(optim|muon)\.", os.path.basename(f)))
    if not files:
        raise StageFailed("no fixture under tests/fixtures/reference")
    if c.smoke:
        files = files[:1]
    figures, bad = {}, []
    for f in files:
        name = os.path.relpath(f, ROOT)
        stdout, _ = c.run(["verify-reference", f, "--device", c.dev], 180, check=False)
        r = last_json(stdout, ["verify-reference", name])
        figures[name] = {"max_rel_err": r.get("max_rel_err"),
                         "muon_rel_err": r.get("muon_rel_err"), "passed": r.get("passed")}
        if not r.get("passed"):
            bad.append(f"{name}: max_rel_err {r.get('max_rel_err')}")
    if bad:
        raise StageFailed("fixtures off (f32 tolerance 1e-4, TF32 off):\n" + "\n".join(bad),
                          figures)
    return figures


def stage_training_parity(c):
    ref = c.train("parity-cpu", "cpu", "float32", 300)
    got = c.train(f"parity-{c.dev}-f32", c.dev, "float32", 300)
    rel = [abs(a - b) / abs(b) for a, b in zip(got, ref)]
    worst = max(range(1, len(rel)), key=lambda i: rel[i])
    figures = {"steps": len(ref), "cpu_loss_first_last": [ref[0], ref[-1]],
               "f32_loss_first_last": [got[0], got[-1]], "f32_max_rel_diff": max(rel),
               "f32_worst_step": worst + 1, "f32_rtol": F32_RTOL}
    bf = c.train(f"parity-{c.dev}-bf16", c.dev, "bfloat16", 300)
    rel_bf = [abs(a - b) / abs(b) for a, b in zip(bf, ref)]
    figures.update({"bf16_loss_first_last": [bf[0], bf[-1]], "bf16_max_rel_diff": max(rel_bf),
                    "bf16_rtol": BF16_RTOL})
    errors = []
    if max(rel) > F32_RTOL:
        errors.append(f"f32 loss on {c.dev} differs from the CPU's by {max(rel):.2e} relative "
                      f"at step {worst + 1} ({got[worst]} vs {ref[worst]}); tolerance {F32_RTOL}")
    if max(rel_bf) > BF16_RTOL:
        i = max(range(len(rel_bf)), key=lambda i: rel_bf[i])
        errors.append(f"bf16 loss on {c.dev} differs from the f32 CPU's by {rel_bf[i]:.2e} "
                      f"relative at step {i + 1}; tolerance {BF16_RTOL}")
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
    cmd = [c.bin, "chat-web", "--device", c.dev, "-n", "1", "-i", "base", "-g", tag,
           "--port", "0", "-m", "16"]
    c.log.write(f"$ {' '.join(cmd)}\n")
    log = open(os.path.join(c.out, "chat-web.log"), "w+", encoding="utf-8")
    proc = subprocess.Popen(cmd, cwd=c.out, env=c.env, stdout=log, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        limit = min(time.monotonic() + 120, c.deadline)
        addr = None
        while addr is None:
            if time.monotonic() > limit:
                raise StageTimeout("chat-web did not start listening\n" + read_tail(log))
            if proc.poll() is not None:
                raise StageFailed(f"chat-web exited {proc.returncode}\n" + read_tail(log))
            log.seek(0)
            m = re.search(r"listening on (http://\S+)", log.read())
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
        kill_group(proc, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.wait()
        log.seek(0)
        c.log.write(log.read() + "--- chat-web stopped\n\n")
        log.close()


# name, function, (estimate, timeout) on an H100/H200, (estimate, timeout) in smoke mode (s)
STAGES = [
    ("selftest", stage_selftest, (45, 240), (8, 120)),
    ("verify-reference", stage_verify_reference, (15, 180), (8, 120)),
    ("training-parity", stage_training_parity, (50, 400), (45, 300)),
    ("engine-parity", stage_engine_parity, (15, 150), (4, 120)),
    ("bench-kernels", stage_bench_kernels, (70, 300), (15, 200)),
    ("bench-train", stage_bench_train, (60, 300), (6, 120)),
    ("bench-decode", stage_bench_decode, (20, 180), (4, 120)),
    ("chat-web", stage_chat_web, (15, 150), (4, 120)),
]


# ---------------------------------------------------------------------------------------------
# Helpers

def tail(text, lines=25):
    return "\n".join((text or "").strip().splitlines()[-lines:])


def read_tail(f):
    f.seek(0)
    return tail(f.read())


def kill_group(proc, sig=signal.SIGKILL):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def last_json(stdout, args):
    """The last line of `stdout` that parses as a JSON object (or the whole of it)."""
    for line in reversed((stdout or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    try:
        return json.loads(stdout)
    except ValueError:
        raise StageFailed(f"`{' '.join(map(str, args))}` printed no JSON:\n{tail(stdout)}")


def find_cuda_libraries():
    """Where libcuda, NVRTC, cuBLASLt and NCCL are: the CUDA toolkit's folders, the system's,
    and the `nvidia-*` Python packages PyTorch brings (nvidia-nccl-cu13 among them). Returns
    ({library: path or None}, folders for LD_LIBRARY_PATH, a CUDA_PATH with the headers NVRTC
    needs or None)."""
    roots = [os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda",
             "/opt/cuda"]
    roots += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    roots = [r for r in roots if r and os.path.isdir(r)]
    dirs = []
    for r in roots:
        dirs += [os.path.join(r, "lib64"), os.path.join(r, "lib"),
                 os.path.join(r, "targets", "x86_64-linux", "lib")]
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib", "/usr/local/nvidia/lib64"]
    packages = []
    try:
        packages = site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:
        pass
    packages += glob.glob("/usr/local/lib/python3*/dist-packages") + \
        glob.glob("/usr/lib/python3/dist-packages")
    for p in packages:
        dirs += sorted(glob.glob(os.path.join(p, "nvidia", "*", "lib")))
    dirs = [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]
    wanted = {"libcuda": "libcuda.so*", "libnvrtc": "libnvrtc.so*",
              "libcublasLt": "libcublasLt.so*", "libnccl": "libnccl.so*"}
    found, used = {}, []
    for name, pattern in wanted.items():
        found[name] = None
        for d in dirs:
            hits = sorted(glob.glob(os.path.join(d, pattern)))
            hits = [h for h in hits if "builtins" not in os.path.basename(h)
                    and "alt" not in os.path.basename(h)]
            if hits:
                found[name] = hits[0]
                if d not in used and name != "libcuda":
                    used.append(d)
                break
    # NVRTC (cubecl's cuda-cpp path) reads CUDA_PATH/include; without a toolkit, a Python
    # package's folder with the runtime headers will do.
    header_roots = roots + [os.path.dirname(d) for d in dirs if "/nvidia/" in d]
    cuda_path = None
    for r in header_roots:
        if os.path.exists(os.path.join(r, "include", "cuda_runtime.h")) or \
                os.path.exists(os.path.join(r, "include", "cuda.h")):
            cuda_path = r
            break
    return found, used, cuda_path


TORCH_GEMMS = r"""
import json, sys, torch
shapes = json.loads(sys.argv[1])
torch.backends.cuda.matmul.allow_tf32 = False
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
    (the side-by-side reference); a note instead when PyTorch is not importable."""
    shapes = [dict(model=g["model"], layer=g["layer"], passname=g["pass"], m=g["m"], n=g["n"],
                   k=g["k"], trans_a=g["trans_a"], trans_b=g["trans_b"], dtype=dtype)
              for dtype in ("bfloat16", "float32") for g in figures[dtype]["train_gemms"]]
    limit = min(120, c.deadline - time.monotonic())
    try:
        p = subprocess.run([sys.executable, "-c", TORCH_GEMMS, json.dumps(shapes)], env=c.env,
                           capture_output=True, text=True, timeout=max(limit, 1))
    except subprocess.TimeoutExpired:
        return {"error": f"PyTorch GEMMs ran past {limit:.0f}s"}
    c.log.write(f"$ python3 (PyTorch GEMMs)\n{p.stdout}{p.stderr}\n")
    if p.returncode != 0:
        return {"error": tail(p.stderr, 5)}
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------

def parse_stages(text):
    if not text:
        return list(range(1, len(STAGES) + 1))
    chosen = []
    names = [s[0] for s in STAGES]
    for part in text.split(","):
        part = part.strip()
        if part.isdigit() and 1 <= int(part) <= len(STAGES):
            chosen.append(int(part))
        elif part in names:
            chosen.append(names.index(part) + 1)
        else:
            raise argparse.ArgumentTypeError(
                f"unknown stage `{part}`: 1-{len(STAGES)} or one of {', '.join(names)}")
    return sorted(set(chosen))


def main():
    ap = argparse.ArgumentParser(prog="gpu-check.sh", description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes (CI runs `--device cpu --smoke`)")
    ap.add_argument("--stages", type=parse_stages, default=parse_stages(""),
                    help="comma-separated stage numbers or names (default: all)")
    ap.add_argument("--out", default="gpu-check-out", help="output folder (default ./gpu-check-out)")
    ap.add_argument("--deadline", type=float, default=540.0,
                    help="seconds for the whole run; later stages are skipped (default 540)")
    ap.add_argument("--bin", help="the nanochat binary (default: dist/nanochat.xz unpacked for "
                                  "cuda, target/release/nanochat for cpu)")
    args = ap.parse_args()
    try:
        c = Checker(args)
    except SetupError as e:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "gpu-check.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"device": args.device, "driver": None, "cuda": None,
                       "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                           timespec="seconds"), "error": str(e), "stages": []}, f, indent=2)
        os.replace(path + ".tmp", path)
        print(f"gpu-check: {e}", file=sys.stderr)
        return 1
    plan = []
    for i, (name, _, full, smoke) in enumerate(STAGES, 1):
        est, timeout = smoke if args.smoke else full
        plan.append({"stage": i, "name": name, "estimate_s": est, "timeout_s": timeout,
                     "chosen": i in args.stages})
    c.report["plan"] = plan
    chosen = [p for p in plan if p["chosen"]]
    c.say(f"gpu-check on {c.report['device']} (driver {c.report['driver']}, CUDA "
          f"{c.report['cuda']}), binary {c.bin}, output {c.out}")
    if c.dev == "cuda":
        c.say(f"libraries: {json.dumps(c.environment.get('libraries'))}")
    c.say(f"plan ({'smoke' if args.smoke else 'full'} sizes, deadline {args.deadline:.0f}s, "
          f"about {sum(p['estimate_s'] for p in chosen)}s):")
    for p in plan:
        mark = " " if p["chosen"] else "-"
        c.say(f"  {mark} {p['stage']}. {p['name']:<18} ~{p['estimate_s']:>3}s  "
              f"(timeout {p['timeout_s']}s)")
    c.save()
    code = 0
    for p in chosen:
        name, fn = STAGES[p["stage"] - 1][:2]
        entry = {"name": name, "status": "skipped", "seconds": 0.0, "figures": {},
                 "error_tail": None}
        left = c.deadline - time.monotonic()
        if left <= 0:
            entry["error_tail"] = "skipped: the global deadline passed"
            code = code or 3
        else:
            c.say(f"stage {p['stage']}. {name} ...")
            t = time.monotonic()
            timer = Deadline(min(p["timeout_s"], left))
            try:
                with timer:
                    entry["figures"] = fn(c)
                entry["status"] = "pass"
            except StageTimeout as e:
                entry.update(status="timeout", error_tail=str(e))
                code = 1
            except StageFailed as e:
                entry.update(status="fail", error_tail=str(e.args[0]),
                             figures=e.args[1] if len(e.args) > 1 else {})
                code = 1
            except Exception as e:  # a crash of the stage itself: reported, the run goes on
                entry.update(status="fail", error_tail=f"{type(e).__name__}: {e}")
                code = 1
            entry["seconds"] = round(time.monotonic() - t, 1)
        c.report["stages"].append(entry)
        c.save()
        c.say(f"stage {p['stage']}. {name}: {entry['status']} ({entry['seconds']}s)"
              + (f"\n{indent(entry['error_tail'])}" if entry["error_tail"] else ""))
    c.report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    c.report["seconds"] = round(time.monotonic() - c.start, 1)
    c.save()
    summary = ", ".join(f"{s['name']} {s['status']}" for s in c.report["stages"])
    c.say(f"done in {c.report['seconds']}s: {summary}")
    c.say(f"results: {c.json_path}; log: {c.log_path}")
    return code


class Deadline:
    """A stage's own timeout: SIGALRM interrupts whatever it waits for (its commands also get
    the remaining time as their own timeout)."""

    def __init__(self, seconds):
        self.seconds = max(0.1, seconds)

    def __enter__(self):
        def fire(*_):
            raise StageTimeout(f"the stage ran past its {self.seconds:.0f}s")
        self.old = signal.signal(signal.SIGALRM, fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)
        return False


def indent(text):
    return "\n".join("    " + line for line in str(text).splitlines())


if __name__ == "__main__":
    sys.exit(main())
