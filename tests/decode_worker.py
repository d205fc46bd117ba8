"""Decode many (possibly corrupt) .wz blobs in a child process and report each outcome.

    python decode_worker.py CASES API WORKDIR

CASES holds records (u32 length, blob). API is decompress | load | unpack | open. For each
case one line is printed (and flushed) *before* the next case starts:

    <i> FMT <ExceptionName>        weightzip.FormatError / ChecksumError raised
    <i> OK <digest>                decoded; digest of the output (compare with the original)
    <i> EXC <ExceptionName> <msg>  any other exception: a bug
    <i> LEFTOVER <names>           unpack failed but left files in its output folder: a bug

so that if the process crashes or hangs the parent knows which case did it. Digests are
computed by digest() below; the parent calls the same function on the valid output.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np


def digest_array(h, a: np.ndarray) -> None:
    h.update(f"{a.dtype.str}|{a.dtype.name}|{a.shape}|".encode())
    h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes())


def digest(result) -> str:
    """A hash of everything a decode returned: arrays (dtype, shape, bits), bytes, dicts of
    arrays, or a path to an unpacked file or folder."""
    h = hashlib.sha256()
    if isinstance(result, np.ndarray):
        digest_array(h, result)
    elif isinstance(result, (bytes, bytearray)):
        h.update(b"bytes|" + bytes(result))
    elif isinstance(result, dict):
        for k in result:
            h.update(f"{k!r}|".encode())
            digest_array(h, result[k])
    elif isinstance(result, Path):
        if result.is_dir():
            for p in sorted(result.rglob("*")):
                if p.is_file():
                    h.update(p.relative_to(result).as_posix().encode() + b"|" + p.read_bytes())
        else:
            h.update(b"file|" + result.read_bytes())
    else:
        raise TypeError(type(result))
    return h.hexdigest()


def decode(api: str, blob: bytes, workdir: Path):
    """Run one public decoding API on blob; returns what digest() accepts."""
    import weightzip
    if api == "decompress":
        return weightzip.decompress(blob)
    src = workdir / "case.wz"
    src.write_bytes(blob)
    if api == "load":
        return weightzip.load(src)
    if api == "open":
        with weightzip.open(src) as f:
            return {k: f.get_tensor(k) for k in reversed(f.keys())}
    if api == "unpack":
        out_dir = workdir / "out"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir()
        return weightzip.unpack(src, out_dir / "restored")
    raise ValueError(api)


def iter_cases(path: Path):
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        yield data[pos + 4:pos + 4 + n]
        pos += 4 + n


def write_cases(path: Path, blobs) -> int:
    n = 0
    with open(path, "wb") as f:
        for b in blobs:
            f.write(struct.pack("<I", len(b)) + b)
            n += 1
    return n


def main() -> None:
    cases, api, workdir = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    import weightzip
    out = sys.stdout
    for i, blob in enumerate(iter_cases(cases)):
        try:
            line = f"{i} OK {digest(decode(api, blob, workdir))}"
        except weightzip.FormatError as e:
            line = f"{i} FMT {type(e).__name__}"
            if api == "unpack":
                left = os.listdir(workdir / "out")
                if left:
                    line = f"{i} LEFTOVER {left}"
        except Exception as e:  # noqa: BLE001 - reporting it is the point
            msg = str(e).replace("\n", " ")[:200]
            line = f"{i} EXC {type(e).__name__} {msg}"
        out.write(line + "\n")
        out.flush()


if __name__ == "__main__":
    main()
