"""atheris harness: neurocodec.decode() of .nc files with the shipped codecs (the container
parse, the indexed rANS streams, the audio parameters and index streams, the synthesis).

    python tests/fuzz/fuzz_nc.py image|audio [libFuzzer flags] CORPUS_DIR...

The kind only picks the seeds' world (the mutator keeps codec ids mostly as they are); any
file decodes through the public API. Oracle (pyfuzz.py): NcFormatError and the codecs'
ValueError subclasses (and CodecNotFound for ids no installed codec has), or an output as
documented: images uint8 [H, W] for grayscale sources, else [H, W, 3]; audio (float32 [T] or
[T, C] in [-1, 1], the header's sample rate), T and C as the header says. One successful
decode in DETERMINISM_EVERY is decoded again and must be identical (a full second decode
for each would halve the campaign's rate).
"""
from __future__ import annotations

import os
import sys
import zlib

import numpy as np

import neurocodec
from neurocodec.runtime.bitstream import NcFile
from neurocodec.runtime.registry import CodecNotFound, load_by_id

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ncmut  # noqa: E402
import pyfuzz  # noqa: E402
from pyfuzz import check  # noqa: E402

DETERMINISM_EVERY = 4


def check_image(out, shape) -> None:
    h, w, c = shape
    want = (h, w) if c == 1 else (h, w, 3)
    check(isinstance(out, np.ndarray) and out.dtype == np.uint8, "image decode returned no uint8 array", str(type(out)))
    check(out.shape in (want, (h, w, c)), "image shape differs from the header", f"{out.shape} vs {shape}")


def check_audio(out, shape) -> None:
    sr, n, c = shape
    check(isinstance(out, tuple) and len(out) == 2, "audio decode must return (samples, rate)")
    y, rate = out
    check(rate == sr, "audio rate differs from the header", f"{rate} vs {sr}")
    check(isinstance(y, np.ndarray) and y.dtype == np.float32, "audio samples are no float32 array", str(type(y)))
    check(y.shape == ((n,) if c == 1 else (n, c)), "audio shape differs from the header", f"{y.shape} vs {shape}")
    check(bool(np.isfinite(y).all()) and float(np.abs(y).max(initial=0)) <= 1.0, "audio outside [-1, 1]")


def same(a, b) -> bool:
    if isinstance(a, tuple):
        return a[1] == b[1] and np.array_equal(a[0], b[0])
    return np.array_equal(a, b)


def one_input(data: bytes) -> None:
    out = neurocodec.decode(data)
    nc = NcFile.from_bytes(data)
    (check_audio if isinstance(out, tuple) else check_image)(out, nc.shape)
    if zlib.crc32(data) % DETERMINISM_EVERY == 0:
        check(same(out, neurocodec.decode(data)), "decoding the same file twice gave different outputs")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("image", "audio"):
        sys.exit(__doc__)
    del sys.argv[1]
    pyfuzz.one_thread()
    for codec_id in (1, 2, 3):  # load (and import) every shipped codec before instrumenting
        load_by_id(codec_id)
    pyfuzz.instrument(dataflow=False)
    pyfuzz.fuzz(pyfuzz.guarded(one_input, extra=(CodecNotFound,)), ncmut.mutate)


if __name__ == "__main__":
    main()
