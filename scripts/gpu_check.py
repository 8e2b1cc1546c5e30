#!/usr/bin/env python3
"""The runner of scripts/gpu-check.sh (see there for the usage).

Runs a fixed list of stages (scripts/gpu_check_stages.py) against one `nanochat` binary, each
with its own timeout, under a global deadline, and rewrites OUT/gpu-check.json atomically
before and after every stage:

    {"device", "driver", "cuda", "started", "smoke", "binary", "environment", "plan",
     "stages": [{"name", "status": "pass|fail|timeout|skipped", "seconds", "figures",
                 "error_tail"}], "finished"}

A stage that is running when the script is killed is already recorded as `timeout` ("cut
off"), so a run killed at any moment (even by SIGKILL) says where it stopped. A rerun of some
stages into the same OUT replaces those stages' entries and keeps the others'. Every command,
its output and its timing go to OUT/gpu-check.log. OUT holds nothing else: the models,
nanochat's folders (NANOCHAT_BASE_DIR), cubecl's compiled-kernel cache and the matmul autotune
cache (NANOCHAT_AUTOTUNE_CACHE) are under the work folder (`--work`, default OUT/work), so a
rerun reuses the compiled kernels and the tuned choices. Only one run may use a work folder at
a time. The CUDA binary is unpacked next to its archive (dist/nanochat).

Standard library only (the GPU machine has python3, no Rust toolchain, no network). Exit
status: 0 when every chosen stage passed, 1 when one failed or timed out or the run was cut
off, 3 when the deadline skipped one, 2 on bad arguments or nothing to run.
"""

import argparse
import ctypes
import datetime
import fcntl
import glob
import json
import lzma
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from gpu_check_stages import FULL_PARITY, ROOT, SMOKE_PARITY, STAGES
from gpu_check_util import (CutOff, SetupError, StageFailed, StageTimeout, find_cuda_libraries,
                            last_json, sha256, tail)


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def die_with_parent():
    """In each child: SIGKILL when this script dies, however it dies (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


class Checker:
    def __init__(self, args):
        self.args = args
        self.dev = args.device
        self.smoke = args.smoke
        self.out = os.path.abspath(args.out)
        self.work = os.path.abspath(args.work or os.path.join(self.out, "work"))
        for d in (self.out, self.work):
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as e:
                raise SetupError(f"cannot create the folder {d}: {e.strerror}")
        self.lock = open(os.path.join(self.work, ".lock"), "w")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SetupError(f"another gpu-check is using {self.work}; wait for it or give "
                             "another --work")
        self.json_path = os.path.join(self.out, "gpu-check.json")
        self.log_path = os.path.join(self.out, "gpu-check.log")
        self.log = open(self.log_path, "a", encoding="utf-8")
        self.log_lock = threading.Lock()
        self.live = set()
        self.start_time = time.monotonic()
        self.deadline = self.start_time + args.deadline
        self.base_env = dict(os.environ)
        self.env, self.environment = self.make_env()
        self.bin = self.find_binary()
        self.report = {
            "device": None, "driver": None, "cuda": None, "started": now(),
            "smoke": self.smoke, "deadline_s": args.deadline, "binary": self.bin,
            "environment": self.environment, "plan": [], "stages": [], "finished": None,
        }
        self.previous = self.previous_stages()
        self.describe_machine()

    # -- logging and the report ---------------------------------------------------------------

    def write_log(self, text):
        with self.log_lock:
            self.log.write(text)
            self.log.flush()

    def say(self, msg):
        stamp = f"[{time.monotonic() - self.start_time:7.1f}s]"
        print(f"{stamp} {msg}", flush=True)
        self.write_log(f"{stamp} {msg}\n")

    def save(self):
        report = dict(self.report)
        order = {name: i for i, (name, *_) in enumerate(STAGES)}
        names = {s["name"] for s in report["stages"]}
        kept = [s for s in self.previous if s["name"] not in names]
        report["stages"] = sorted(kept + report["stages"], key=lambda s: order.get(s["name"], 99))
        tmp = f"{self.json_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.json_path)

    def previous_stages(self):
        """The stages of an earlier run into this OUT with the same device and sizes, each
        marked with when it ran: a rerun of some stages keeps the others' results."""
        try:
            with open(self.json_path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            return []
        if old.get("binary") != self.bin or old.get("smoke") != self.smoke:
            return []
        return [dict(s, ran=s.get("ran", old.get("started"))) for s in old.get("stages", [])
                if isinstance(s, dict) and "name" in s]

    # -- environment --------------------------------------------------------------------------

    def make_env(self):
        env = dict(os.environ)
        # nanochat's folders, cubecl's caches and anything keyed on HOME stay under the work
        # folder; variables that would change the figures are not inherited.
        for var in ("NANOCHAT_MODEL_DIR", "NANOCHAT_TOKENIZER_PATH", "NANOCHAT_DATA_DIR",
                    "NANOCHAT_PEAK_FLOPS", "NANOCHAT_PROFILE_BACKWARD"):
            env.pop(var, None)
        env["NANOCHAT_BASE_DIR"] = self.work
        env["NANOCHAT_AUTOTUNE_CACHE"] = os.path.join(self.work, "matmul-autotune.json")
        env["XDG_CACHE_HOME"] = os.path.join(self.work, "xdg-cache")
        env.setdefault("RUST_BACKTRACE", "1")
        cache = os.path.join(self.work, "cubecl-cache")
        os.makedirs(cache, exist_ok=True)
        # cubecl reads cubecl.toml from the working directory up; the commands run in `work`.
        with open(os.path.join(self.work, "cubecl.toml"), "w", encoding="utf-8") as f:
            f.write(
                "# Written by scripts/gpu-check.sh: compiled kernels and autotune results kept\n"
                "# under this folder, so later stages and reruns do not recompile.\n"
                "[compilation]\ncache = true\n\n"
                f"[environment]\npath = {{ directory = {json.dumps(cache)} }}\n"
            )
        environment = {"NANOCHAT_BASE_DIR": self.work, "cubecl_cache": cache,
                       "NANOCHAT_AUTOTUNE_CACHE": env["NANOCHAT_AUTOTUNE_CACHE"]}
        if self.dev == "cuda":
            libs, lib_dirs, cuda_path, warnings = find_cuda_libraries()
            environment["libraries"] = libs
            environment["warnings"] = warnings
            if lib_dirs:
                old = env.get("LD_LIBRARY_PATH", "")
                env["LD_LIBRARY_PATH"] = ":".join(lib_dirs + ([old] if old else []))
            if cuda_path:
                env["CUDA_PATH"] = cuda_path
            environment["LD_LIBRARY_PATH"] = env.get("LD_LIBRARY_PATH")
            environment["CUDA_PATH"] = env.get("CUDA_PATH")
        return env, environment

    def find_binary(self):
        if self.args.bin:
            path = os.path.abspath(self.args.bin)
            if not os.path.isfile(path) or not os.access(path, os.X_OK):
                raise SetupError(f"--bin {path} is not an executable file")
            return path
        if self.dev == "cpu":
            path = os.path.join(ROOT, "target", "release", "nanochat")
            if not os.access(path, os.X_OK):
                raise SetupError(f"{path} not found: build it with "
                                 "`cargo build --release -p nanochat-bin` (or give --bin)")
            return path
        # Unpacked beside the archive: on the device tool OUT is what comes back. A stamp of
        # the archive's hash says which archive the unpacked binary came from.
        packed = os.path.join(ROOT, "dist", "nanochat.xz")
        path = os.path.join(ROOT, "dist", "nanochat")
        stamp = path + ".sha256"
        if os.path.exists(packed):
            digest = sha256(packed)
            current = open(stamp).read().strip() if os.path.exists(stamp) else None
            if not os.access(path, os.X_OK) or current != digest:
                print(f"unpacking {packed} -> {path}", flush=True)
                tmp = f"{path}.{os.getpid()}.tmp"
                with lzma.open(packed) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.chmod(tmp, 0o755)
                os.replace(tmp, path)
                with open(stamp, "w") as f:
                    f.write(digest + "\n")
            return path
        built = os.path.join(ROOT, "target", "cuda", "release", "nanochat")
        if os.access(built, os.X_OK):
            return built
        raise SetupError(f"no CUDA binary: {packed} is missing. Run scripts/build-cuda.sh on "
                         "the build machine and bring dist/ along (or give --bin)")

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
            rows = q.stdout.strip().splitlines()
            parts = [p.strip() for p in rows[0].split(",")] if rows else []
            if q.returncode == 0 and len(parts) >= 2:
                self.report["device"] = f"{parts[0]} ({parts[2]})" if len(parts) > 2 else parts[0]
                self.report["driver"] = parts[1]
                self.report["gpus"] = len(rows)
            else:
                self.report["device"] = f"cuda (nvidia-smi exited {q.returncode}: " \
                                        f"{tail(q.stderr, 2)})"
            plain = subprocess.run([smi], capture_output=True, text=True, timeout=30).stdout
            m = re.search(r"CUDA Version:\s*([0-9.]+)", plain)
            if m:
                self.report["cuda"] = m.group(1)
        except (OSError, subprocess.SubprocessError) as e:
            self.report["device"] = f"cuda (nvidia-smi failed: {e})"

    # -- running commands ---------------------------------------------------------------------

    def spawn(self, args, stdout, stderr):
        cmd = [self.bin] + [str(a) for a in args]
        proc = subprocess.Popen(cmd, cwd=self.work, env=self.env, stdout=stdout, stderr=stderr,
                                text=True, preexec_fn=die_with_parent)
        self.live.add(proc)
        return proc

    def limit(self, timeout):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise StageTimeout(f"the global deadline (--deadline {self.args.deadline:.0f}s) "
                               "passed")
        return min(timeout, left), left < timeout

    def run(self, args, timeout, check=True):
        """Runs the binary with `args` in the work folder; returns (stdout, stderr, exit
        status). Raises StageFailed on a non-zero exit when `check`, and StageTimeout past
        `timeout` or the global deadline."""
        limit, by_deadline = self.limit(timeout)
        self.write_log(f"$ nanochat {' '.join(map(str, args))}   (timeout {limit:.0f}s)\n")
        t = time.monotonic()
        proc = self.spawn(args, subprocess.PIPE, subprocess.PIPE)
        try:
            stdout, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            self.log_output(stdout, stderr, t, "killed")
            why = (f"the global deadline (--deadline {self.args.deadline:.0f}s)" if by_deadline
                   else f"its {limit:.0f}s")
            raise StageTimeout(f"`nanochat {' '.join(map(str, args[:2]))}` ran past {why}\n"
                               + tail(stderr))
        except BaseException:
            # The stage's own timeout, or the script told to stop: the command must not
            # outlive it.
            proc.kill()
            stdout, stderr = proc.communicate()
            self.log_output(stdout, stderr, t, "killed with its stage")
            raise
        finally:
            self.live.discard(proc)
        self.log_output(stdout, stderr, t, f"exit {proc.returncode}")
        if check and proc.returncode != 0:
            raise StageFailed(f"`nanochat {' '.join(map(str, args))}` exited {proc.returncode}\n"
                              + tail(stderr))
        return stdout, stderr, proc.returncode

    def log_output(self, stdout, stderr, t, how):
        self.write_log(f"--- stdout\n{stdout}--- stderr\n{stderr}"
                       f"--- {how} after {time.monotonic() - t:.1f}s\n\n")

    def parse(self, stdout, args, stderr="", returncode=0):
        return last_json(stdout, ["nanochat"] + list(args), stderr, returncode)

    def run_json(self, args, timeout):
        stdout, stderr, rc = self.run(args, timeout)
        return self.parse(stdout, args, stderr, rc)

    def start(self, args):
        """Starts a server; returns it and a function reading what it printed so far."""
        path = os.path.join(self.work, f"{args[0]}.{os.getpid()}.out")
        out = open(path, "w+", encoding="utf-8")
        self.write_log(f"$ nanochat {' '.join(map(str, args))}   (server)\n")
        proc = self.spawn(args, out, subprocess.STDOUT)

        def output():
            out.flush()
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        proc.output_file = (out, path)
        return proc, output

    def stop(self, proc, name, output):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.live.discard(proc)
        self.write_log(output() + f"--- {name} stopped (exit {proc.returncode})\n\n")
        out, path = proc.output_file
        out.close()
        os.unlink(path)

    def kill_all(self):
        for proc in list(self.live):
            proc.kill()
        self.live.clear()

    # -- shared fixtures ----------------------------------------------------------------------

    def parity_sizes(self):
        return SMOKE_PARITY if self.smoke else FULL_PARITY

    def ensure_tokenizer(self):
        if not os.path.exists(os.path.join(self.work, "tokenizer", "tokenizer.json")):
            self.run(["tok-train", "--vocab-size", "512", "--max-chars", "200000"], 120)

    def train_args(self, tag, device, dtype):
        p = self.parity_sizes()
        return ["base-train", "--depth", p["depth"], "--seq-len", p["seq_len"],
                "--batch-size", p["batch_size"], "--total-steps", p["steps"],
                "--eval-every", "0", "--eval-tokens", "512", "--seed", "42",
                "--device", device, "--dtype", dtype, "--model-tag", tag, "--quiet"]

    def losses(self, tag):
        steps = self.parity_sizes()["steps"]
        path = os.path.join(self.work, "base_checkpoints", tag, "metrics.jsonl")
        with open(path, encoding="utf-8") as f:
            losses = [json.loads(line)["loss"] for line in f if line.strip()]
        if len(losses) != steps:
            raise StageFailed(f"{path}: {len(losses)} steps logged, expected {steps}")
        return losses

    def train_many(self, runs, timeout):
        """`base-train` runs of the parity model at once ({tag: (device, dtype)}); returns
        each run's loss per step."""
        self.ensure_tokenizer()
        for tag in runs:
            shutil.rmtree(os.path.join(self.work, "base_checkpoints", tag), ignore_errors=True)
        limit, _ = self.limit(timeout)
        end = time.monotonic() + limit
        procs = {}
        for tag, (device, dtype) in runs.items():
            args = self.train_args(tag, device, dtype)
            self.write_log(f"$ nanochat {' '.join(map(str, args))}   (in parallel)\n")
            out = open(os.path.join(self.work, f"{tag}.{os.getpid()}.out"), "w+")
            procs[tag] = (self.spawn(args, out, subprocess.STDOUT), out, time.monotonic())
        try:
            while any(p.poll() is None for p, _, _ in procs.values()):
                if time.monotonic() > end:
                    raise StageTimeout(f"the parity runs ran past {limit:.0f}s")
                time.sleep(0.2)
        finally:
            for tag, (p, out, t) in procs.items():
                if p.poll() is None:
                    p.kill()
                    p.wait()
                self.live.discard(p)
                out.seek(0)
                text = out.read()
                out.close()
                os.unlink(out.name)
                self.write_log(f"--- {tag}\n{text}--- exit {p.returncode} after "
                               f"{time.monotonic() - t:.1f}s\n\n")
                procs[tag] = (p, text, t)
        bad = [f"`{tag}` exited {p.returncode}\n{tail(text, 10)}"
               for tag, (p, text, _) in procs.items() if p.returncode != 0]
        if bad:
            raise StageFailed("\n".join(bad))
        return {tag: self.losses(tag) for tag in runs}

    def ensure_model(self):
        """The model of the decoding stages: the CPU side of the training parity (trained
        again when a cut-off run left its folder without a committed checkpoint)."""
        folder = os.path.join(self.work, "base_checkpoints", "parity-cpu")
        if not (glob.glob(os.path.join(folder, "model_*.safetensors"))
                and glob.glob(os.path.join(folder, "meta_*.json"))):
            self.train_many({"parity-cpu": ("cpu", "float32")}, 300)
        return "parity-cpu"


# ---------------------------------------------------------------------------------------------

def parse_stages(text):
    names = [s[0] for s in STAGES]
    chosen = []
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


def positive_seconds(text):
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"`{text}` is not a positive number of seconds")
    return v


class Deadline:
    """A stage's own timeout: a timer interrupts whatever the stage waits for (its commands
    also get the remaining time as their own timeout)."""

    def __init__(self, seconds, why):
        self.seconds, self.why = max(0.1, seconds), why

    def __enter__(self):
        def fire(*_):
            raise StageTimeout(f"the stage ran past {self.why}")
        self.old = signal.signal(signal.SIGALRM, fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)
        return False


def indent(text):
    return "\n".join("    " + line for line in str(text).splitlines())


def run_stage(c, p):
    """Runs one stage; returns its entry."""
    name, fn = STAGES[p["stage"] - 1][:2]
    entry = {"name": name, "status": "timeout", "seconds": 0.0, "figures": {},
             "error_tail": "cut off: the run was killed while this stage ran", "ran": now()}
    left = c.deadline - time.monotonic()
    if left <= 0:
        return dict(entry, status="skipped", error_tail="skipped: the global deadline passed")
    # Recorded before it runs: a kill, even SIGKILL, leaves this entry behind.
    c.report["stages"].append(entry)
    c.save()
    c.say(f"stage {p['stage']}. {name} ...")
    t = time.monotonic()
    own = p["timeout_s"] <= left
    timer = Deadline(min(p["timeout_s"], left),
                     f"its {p['timeout_s']}s" if own else
                     f"the global deadline (--deadline {c.args.deadline:.0f}s)")
    try:
        with timer:
            entry["figures"] = fn(c)
        entry.update(status="pass", error_tail=None)
    except StageTimeout as e:
        entry.update(status="timeout", error_tail=str(e))
    except StageFailed as e:
        entry.update(status="fail", error_tail=str(e.args[0]),
                     figures=e.args[1] if len(e.args) > 1 else {})
    except CutOff as e:
        entry.update(status="timeout", error_tail=f"cut off: {e}")
        raise
    except Exception as e:  # a crash of the stage itself: reported, the run goes on
        entry.update(status="fail", error_tail=f"{type(e).__name__}: {e}")
    finally:
        c.kill_all()
        entry["seconds"] = round(time.monotonic() - t, 1)
        c.report["stages"].remove(entry)
    return entry


def main():
    ap = argparse.ArgumentParser(prog="gpu-check.sh", description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes (CI runs `--device cpu --smoke`)")
    ap.add_argument("--stages", type=parse_stages, default=list(range(1, len(STAGES) + 1)),
                    help="comma-separated stage numbers or names (default: all)")
    ap.add_argument("--out", default="gpu-check-out",
                    help="results: gpu-check.json and gpu-check.log (default ./gpu-check-out)")
    ap.add_argument("--work", help="models and caches (default OUT/work)")
    ap.add_argument("--deadline", type=positive_seconds, default=420.0,
                    help="seconds for the whole run; later stages are skipped (default 420)")
    ap.add_argument("--bin", help="the nanochat binary (default: dist/nanochat.xz unpacked for "
                                  "cuda, target/release/nanochat for cpu)")
    args = ap.parse_args()
    try:
        c = Checker(args)
    except SetupError as e:
        print(f"gpu-check: {e}", file=sys.stderr)
        try:
            os.makedirs(args.out, exist_ok=True)
            path = os.path.join(args.out, "gpu-check.json")
            if os.path.exists(path):  # another run's results (or an earlier one's) stay
                return 2
            with open(f"{path}.{os.getpid()}.tmp", "w", encoding="utf-8") as f:
                json.dump({"device": args.device, "driver": None, "cuda": None,
                           "started": now(), "error": str(e), "stages": []}, f, indent=2)
            os.replace(f"{path}.{os.getpid()}.tmp", path)
        except OSError:
            pass
        return 2

    def cut(signum, _frame):
        raise CutOff(f"signal {signal.Signals(signum).name}")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, cut)

    plan = []
    for i, (name, _, full, smoke) in enumerate(STAGES, 1):
        est, timeout = smoke if args.smoke else full
        plan.append({"stage": i, "name": name, "estimate_s": est, "timeout_s": timeout,
                     "chosen": i in args.stages})
    c.report["plan"] = plan
    chosen = [p for p in plan if p["chosen"]]
    c.say(f"gpu-check on {c.report['device']} (driver {c.report['driver']}, CUDA "
          f"{c.report['cuda']}), binary {c.bin}, results in {c.out}, work folder {c.work}")
    if c.dev == "cuda":
        c.say(f"libraries: {json.dumps(c.environment.get('libraries'))}")
        for w in c.environment.get("warnings", []):
            c.say(f"warning: {w}")
    c.say(f"plan ({'smoke' if args.smoke else 'full'} sizes, deadline {args.deadline:.0f}s, "
          f"about {sum(p['estimate_s'] for p in chosen)}s):")
    for p in plan:
        mark = " " if p["chosen"] else "-"
        c.say(f"  {mark} {p['stage']}. {p['name']:<18} ~{p['estimate_s']:>3}s  "
              f"(timeout {p['timeout_s']}s)")
    c.save()
    code = 0
    cut_off = None
    for p in chosen:
        if cut_off:
            entry = {"name": p["name"], "status": "skipped", "seconds": 0.0, "figures": {},
                     "error_tail": f"skipped: the run was cut off ({cut_off})", "ran": now()}
        else:
            try:
                entry = run_stage(c, p)
            except CutOff as e:
                cut_off = str(e)
                entry = {"name": p["name"], "status": "timeout", "seconds": 0.0,
                         "figures": {}, "error_tail": f"cut off: {e}", "ran": now()}
        c.report["stages"].append(entry)
        c.save()
        if entry["status"] in ("fail", "timeout"):
            code = 1
        elif entry["status"] == "skipped" and not cut_off:
            code = code or 3
        c.say(f"stage {p['stage']}. {p['name']}: {entry['status']} ({entry['seconds']}s)"
              + (f"\n{indent(entry['error_tail'])}" if entry["error_tail"] else ""))
    c.report["finished"] = now()
    c.report["seconds"] = round(time.monotonic() - c.start_time, 1)
    c.save()
    summary = ", ".join(f"{s['name']} {s['status']}" for s in c.report["stages"])
    c.say(f"done in {c.report['seconds']}s: {summary}")
    c.say(f"results: {c.json_path}; log: {c.log_path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
