"""atheris harness: the torch checkpoint parser behind weightzip.pack() of a .pt file
(weightzip.torch_zip: zip directory (zipscan), symbolic pickle reading (pickle_scan), storage
spans; legacy files too), without torch.

    python tests/fuzz/fuzz_pt.py [libFuzzer flags] CORPUS_DIR...

Oracle: torch_zip.layout() returns None or spans, or raises FormatError; spans lie inside the
file, in order, without overlap, with unique names, a known dtype, and a shape whose size is
the span's. pack() never fails on a strange checkpoint (it stores what it cannot split as
bytes), and unpack() gives back the input byte for byte. pack/unpack run for every input
whose layout parsed and for one in ROUNDTRIP_EVERY of the others (they then take the same
raw/safetensors path, and the round trip is 4 times the cost of the parse).
"""
from __future__ import annotations

import functools
import io
import math
import os
import sys
import zlib
from pathlib import Path

import weightzip
from weightzip import torch_zip
from weightzip.dtypes import BY_NAME

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ptmut  # noqa: E402
import pyfuzz  # noqa: E402
from pyfuzz import check  # noqa: E402

ROUNDTRIP_EVERY = 8


@functools.cache
def tmp() -> Path:
    """The harness's scratch folder, made on first use (importing this module makes none)."""
    return Path(pyfuzz.scratch_dir("fuzz_pt_"))


def check_spans(spans, size: int) -> None:
    pos, names = 0, set()
    for start, end, name, dtype, shape in spans:
        check(pos <= start <= end <= size, "span outside the file or out of order", f"{start}..{end}")
        check(isinstance(name, str) and name not in names, "span name repeated", repr(name))
        check(dtype in BY_NAME and all(type(s) is int and s >= 0 for s in shape), "span dtype or shape invalid",
              f"{name!r}: {dtype} {shape}")
        check(BY_NAME[dtype].itemsize * math.prod(shape) == end - start, "span size differs from its shape",
              repr(name))
        pos = end
        names.add(name)


def roundtrip(data: bytes) -> None:
    src, wz, out = tmp() / "in.pt", tmp() / "in.pt.wz", tmp() / "out.pt"
    for p in (wz, out):
        p.unlink(missing_ok=True)
    src.write_bytes(data)
    try:
        weightzip.pack(src, wz, threads=1)  # must not fail, whatever the bytes
        weightzip.unpack(wz, out, threads=1)
    except Exception as e:  # even a documented error is a finding here
        raise pyfuzz.Finding("pack/unpack of a .pt file failed", f"{type(e).__name__}: {e}") from e
    check(out.read_bytes() == data, "pack/unpack of a .pt file is not byte-exact")


def one_input(data: bytes) -> None:
    parsed = None
    try:
        parsed = torch_zip.layout(io.BytesIO(data), len(data))
    except weightzip.FormatError:
        pyfuzz.STATS.add("(layout) weightzip.errors.FormatError")  # counted besides the input's outcome
    if parsed is not None:
        check(parsed[0] in ("torch-zip", "torch-legacy"), "unknown layout kind", repr(parsed[0]))
        check_spans(parsed[1], len(data))
    if parsed is not None or zlib.crc32(data) % ROUNDTRIP_EVERY == 0:
        roundtrip(data)


def main() -> None:
    pyfuzz.instrument(dataflow=True, packages=("weightzip",))
    pyfuzz.fuzz(pyfuzz.guarded(one_input), ptmut.mutate)


if __name__ == "__main__":
    main()
