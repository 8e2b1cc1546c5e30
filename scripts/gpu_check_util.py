"""Shared pieces of scripts/gpu-check.sh: its exceptions, output parsing, and where the CUDA
libraries and headers are on a GPU machine. Standard library only."""

import glob
import hashlib
import json
import os
import site


class StageFailed(Exception):
    """A stage's check did not hold: `args[0]` says why, `args[1]` (optional) holds the figures
    measured before it failed."""


class StageTimeout(Exception):
    """A stage or one of its commands ran past its time (its own timeout or the deadline)."""


class CutOff(BaseException):
    """The script itself was told to stop (SIGTERM, SIGHUP, ^C)."""


class SetupError(Exception):
    """Nothing to check with (no binary, an unusable folder): reported, then exit 2."""


def tail(text, lines=25):
    return "\n".join((text or "").strip().splitlines()[-lines:])


def last_json(stdout, args, stderr="", returncode=0):
    """The last line of `stdout` that parses as a JSON object, or the whole of it; a failure
    names the command, its exit status and the tail of its stderr (where the reason is)."""
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
        raise StageFailed(f"`{' '.join(map(str, args))}` exited {returncode} and printed no "
                          f"JSON:\n{tail(stderr) or tail(stdout)}")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _preference(path):
    """Sort key of a library file: CUDA 13's first (the binary is built for it), then the
    unversioned name, then anything else."""
    name = os.path.basename(path)
    if ".so.13" in name or (name.startswith("libnccl") and ".so.2" in name) or \
            name == "libcuda.so.1":
        return 0
    if name.endswith(".so"):
        return 1
    return 2


def find_cuda_libraries():
    """Where libcuda, NVRTC, cuBLASLt and NCCL are: the CUDA toolkit's folders, the system's,
    and the `nvidia-*` Python packages PyTorch brings (nvidia-nccl-cu13 among them).

    Returns ({library: file or None}, folders for LD_LIBRARY_PATH, a CUDA_PATH whose `include/`
    has the CUDA headers NVRTC compiles cubecl's kernels against (cubecl-cuda reads
    `$CUDA_PATH/include` and `include/cccl`), or None, [warnings])."""
    roots = [os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda",
             "/opt/cuda"]
    roots += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    roots = [r for r in dict.fromkeys(roots) if r and os.path.isdir(r)]
    dirs = []
    for r in roots:
        dirs += [os.path.join(r, "lib64"), os.path.join(r, "lib"),
                 os.path.join(r, "targets", "x86_64-linux", "lib")]
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib",
             "/usr/local/nvidia/lib64"]
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
    found, used, warnings = {}, [], []
    for name, pattern in wanted.items():
        hits = []
        for d in dirs:
            hits += [h for h in glob.glob(os.path.join(d, pattern))
                     if "builtins" not in os.path.basename(h)
                     and "alt" not in os.path.basename(h)]
        hits.sort(key=_preference)
        found[name] = hits[0] if hits else None
        if hits and os.path.dirname(hits[0]) not in used:
            used.append(os.path.dirname(hits[0]))
        if not hits and name != "libnccl":
            warnings.append(f"{name} not found in {len(dirs)} folders")
        elif hits and _preference(hits[0]) == 2:
            warnings.append(f"{name}: no CUDA 13 library; using {hits[0]}")
    # Without a toolkit, a Python package's folder with the runtime headers will do.
    header_roots = roots + [os.path.dirname(d) for d in dirs if "/nvidia/" in d]
    cuda_path = None
    for r in header_roots:
        if os.path.exists(os.path.join(r, "include", "cuda_runtime.h")) or \
                os.path.exists(os.path.join(r, "include", "cuda.h")):
            cuda_path = r
            break
    if cuda_path is None:
        warnings.append("no CUDA headers (include/cuda.h) found: NVRTC cannot compile cubecl's "
                        "kernels; set CUDA_PATH to a CUDA 13 toolkit")
    elif not os.path.isdir(os.path.join(cuda_path, "include", "cccl")):
        warnings.append(f"{cuda_path}/include/cccl is missing: cubek's TMA matmuls need it "
                        "(<cuda/barrier>); the other kernels do not")
    return found, used, cuda_path, warnings
