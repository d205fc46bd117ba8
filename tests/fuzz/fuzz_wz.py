"""atheris harness: the .wz reader (weightzip.container.Reader), decompress(),
WzFile.get_tensor() and unpack() into a temporary folder.

    python tests/fuzz/fuzz_wz.py [libFuzzer flags] CORPUS_DIR...

Oracle (pyfuzz.py): FormatError/ChecksumError, or outputs consistent with the index: every
tensor has the dtype, shape and size its entry declares and decodes the same twice;
decompress() returns what the entry declares; unpack() writes each file with the size of
its parts (byte-exact kinds), the arrays named in the index (npz-arrays), or a checkpoint.
Entries declaring more than MAX_DECLARED bytes are not decoded: a legitimate file may ask
for that much memory (constant streams expand 1 byte to a chunk), which is no parser bug.
"""
from __future__ import annotations

import functools
import io
import os
import shutil
import sys
from pathlib import Path

import weightzip
from weightzip.container import Reader
from weightzip.dtypes import by_name

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyfuzz  # noqa: E402
import wzmut  # noqa: E402
from pyfuzz import check  # noqa: E402

MAX_DECLARED = 64 << 20
MAX_TENSORS = 8


@functools.cache
def tmp() -> Path:
    """The harness's scratch folder, made on first use (importing this module makes none)."""
    return Path(pyfuzz.scratch_dir("fuzz_wz_"))


def check_tensors(path: Path, r: Reader) -> None:
    with weightzip.open(path, threads=1) as f:
        for name in list(f.keys())[:MAX_TENSORS]:
            e = r.entries[r.tensors[name]]
            a = f.get_tensor(name)
            check(a.dtype == by_name(e.dtype).numpy and a.shape == tuple(e.shape) and a.nbytes == e.nbytes,
                  "tensor differs from its entry", f"{name!r}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}")
            check(f.get_tensor(name).tobytes() == a.tobytes(), "tensor decodes differently twice", repr(name))


def check_decompress(data: bytes, r: Reader) -> None:
    out = weightzip.decompress(data, threads=1)
    e = r.entries[0]
    if isinstance(out, bytes):
        check(len(out) == e.nbytes, "decompress() returned the wrong number of bytes")
    else:
        check(out.shape == tuple(e.shape) and out.dtype == by_name(e.dtype).numpy, "decompress() shape/dtype")
    again = weightzip.decompress(data, threads=1)
    check((again if isinstance(again, bytes) else again.tobytes()) ==
          (out if isinstance(out, bytes) else out.tobytes()), "decompress() differs between two calls")


def check_unpack(path: Path, r: Reader) -> None:
    dst = tmp() / "out"
    weightzip.unpack(path, dst, threads=1)
    kind = r.source.get("kind")
    if kind == "torch":
        check(dst.is_file(), "unpack() wrote no checkpoint")
    elif kind == "npz-arrays":
        import numpy as np
        with np.load(dst) as z:
            check(set(z.files) == {a["name"] for a in r.source["arrays"]}, "npz arrays differ from the index")
    elif kind == "folder":
        want = {}
        for fd in r.files:  # a later file of the same path overwrites an earlier one
            want[(dst / fd["path"]).resolve()] = sum(r.entries[i].nbytes for i in fd["parts"])
        for p, n in want.items():
            check(p.is_file() and p.stat().st_size == n, "unpack() wrote a file of the wrong size", str(p))
    else:
        n = sum(r.entries[i].nbytes for i in r.files[0]["parts"])
        check(dst.is_file() and dst.stat().st_size == n, "unpack() output has the wrong size")


def one_input(data: bytes) -> None:
    r = Reader(io.BytesIO(data))  # FormatError here: the other entry points share this parse
    if sum(e.nbytes for e in r.entries) > MAX_DECLARED:
        return
    path = tmp() / "in.wz"
    path.write_bytes(data)
    try:
        check_tensors(path, r)
        if r.source.get("kind") == "array":
            check_decompress(data, r)
        else:
            check_unpack(path, r)
    finally:
        shutil.rmtree(tmp() / "out", ignore_errors=True)
        if (tmp() / "out").exists():
            (tmp() / "out").unlink()


def main() -> None:
    pyfuzz.instrument(dataflow=True)
    pyfuzz.fuzz(pyfuzz.guarded(one_input), wzmut.mutate)


if __name__ == "__main__":
    main()
