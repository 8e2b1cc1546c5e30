#!/usr/bin/env python3
"""Checks that torch files (zip archives) name only globals torch.load(weights_only=True)
allows for a state dict, using only the standard library (zipfile, pickletools): no torch needed.
Usage: check_pt_globals.py FILE.pt [...]; exits 1 naming the first file and global refused."""
import pickletools
import sys
import zipfile

ALLOWED = {
    "collections OrderedDict",
    "torch._utils _rebuild_tensor_v2",
    "torch._utils _rebuild_parameter",
    "torch FloatStorage", "torch DoubleStorage", "torch HalfStorage", "torch BFloat16Storage",
    "torch LongStorage", "torch IntStorage", "torch ShortStorage", "torch CharStorage",
    "torch ByteStorage", "torch BoolStorage",
}

for path in sys.argv[1:]:
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("/data.pkl")]
        if len(names) != 1:
            sys.exit(f"{path}: {len(names)} data.pkl entries")
        data = z.read(names[0])
        for op, arg, pos in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST") and arg not in ALLOWED:
                sys.exit(f"{path}: global {arg!r} at byte {pos} is not allowed by weights_only")
            if op.name == "STACK_GLOBAL":
                sys.exit(f"{path}: STACK_GLOBAL at byte {pos} (torch.save writes GLOBAL)")
        for n in z.namelist():
            if "/data/" in n and z.getinfo(n).compress_type != zipfile.ZIP_STORED:
                sys.exit(f"{path}: storage {n} is compressed")
print(f"ok: {len(sys.argv) - 1} files name only weights_only globals")
