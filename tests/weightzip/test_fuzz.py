"""Bounded-time mutation fuzzing of the decoders (deterministic seed, about 20 s).

Valid .wz blobs (compress() frames at every level, pack()ed safetensors, save()d tensors)
are mutated: bit flips, byte overwrites, inserted/deleted/duplicated ranges, truncation,
splices of two files, garbage, and mutations of the index that re-seal every checksum (so
that the reader's own validation, not the checksum, has to catch them). Decoding must end in
FormatError/ChecksumError or in output identical to a seed's; most cases run in a child
process, so that a segfault or a hang fails the test instead of killing pytest.

WZ_FUZZ_SCALE=20 runs twenty times as many cases.
"""
from __future__ import annotations

import json
import os
import struct
import time

import numpy as np
import pytest
from common import decode_in_child
from decode_worker import decode, digest
from wz_helpers import LEVELS, build_wz, read_index

import weightzip

SCALE = float(os.environ.get("WZ_FUZZ_SCALE", 1))
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF]
INTERESTING32 = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x10000, 0xFFFF]


def weights(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(shape) * 0.03).astype(np.float32).astype(dtype)
    return a


def frame_seeds() -> list[bytes]:
    import ml_dtypes
    seeds = []
    for level in LEVELS:
        a = weights((24, 40), np.float32, 1)
        a.reshape(-1)[:3] = [np.nan, -0.0, np.inf]
        seeds.append(weightzip.compress(a, level=level))
        seeds.append(weightzip.compress(weights((33, 17), ml_dtypes.bfloat16, 2), level=level))
        seeds.append(weightzip.compress(np.arange(-50, 250, dtype=np.int64) % 7, level=level))
    seeds.append(weightzip.compress(weights((7, 9), np.float16, 3), level="max"))
    seeds.append(weightzip.compress(weights((300,), np.float64, 4), level="max"))
    seeds.append(weightzip.compress(weights((64,), ml_dtypes.float8_e4m3fn, 5), level="default"))
    seeds.append(weightzip.compress(b"the quick brown fox jumps " * 60, level="max"))
    # two chunks: the second chunk's table record and offset are exercised
    seeds.append(weightzip.compress((b"weights " * 140_000)[: (1 << 20) + 777], level="fast"))
    return seeds


def file_seeds(tmp_path, small_st_wz) -> list[bytes]:
    src = tmp_path / "seed.safetensors"
    src.write_bytes(small_st_wz[0])
    seeds = [small_st_wz[1], weightzip.pack(src, tmp_path / "s_max.wz", level="max").read_bytes()]
    tensors = {"w": weights((16, 12), np.float32, 6), "e": np.zeros((0, 3), np.int16),
               "s": np.array(3.5, np.float64), "b": np.array([True, False, True])}
    seeds.append(weightzip.save(tensors, tmp_path / "saved.wz", level="default", metadata={"a": "b"}).read_bytes())
    # lossy (0xFD quantised chunks, version 2): F32 with NaN/Inf exceptions, BF16, and the sqrt domain
    import ml_dtypes
    w = weights((40, 30), np.float32, 7)
    w.reshape(-1)[:2] = [np.nan, np.inf]
    lossy = {"w": w, "h": weights((20, 20), ml_dtypes.bfloat16, 8),
             "state.0.exp_avg_sq": np.abs(weights((100,), np.float32, 9))}
    seeds.append(weightzip.save(lossy, tmp_path / "lossy.wz", max_error=0.02).read_bytes())
    return seeds


# ------------------------------------------------------------------ mutators

def m_bitflips(rng, b, _seeds):
    b = bytearray(b)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(len(b)))
        b[i] ^= 1 << int(rng.integers(8))
    return bytes(b)


def m_payload_bitflip(rng, b, _seeds):  # aimed at the coded streams, i.e. at the decoders
    ioff = struct.unpack_from("<Q", b, len(b) - 32)[0] if len(b) >= 48 else 0
    if not 16 < ioff <= len(b) - 32:
        return m_bitflips(rng, b, _seeds)
    b = bytearray(b)
    i = int(rng.integers(16, ioff))
    b[i] ^= 1 << int(rng.integers(8))
    return bytes(b)


def m_overwrite(rng, b, _seeds):
    b = bytearray(b)
    i = int(rng.integers(len(b)))
    if rng.random() < 0.5 and i + 4 <= len(b):
        b[i:i + 4] = struct.pack("<I", INTERESTING32[int(rng.integers(len(INTERESTING32)))])
    else:
        b[i] = INTERESTING[int(rng.integers(len(INTERESTING)))] if rng.random() < 0.5 else int(rng.integers(256))
    return bytes(b)


def m_insert(rng, b, _seeds):
    i = int(rng.integers(len(b) + 1))
    return b[:i] + rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes() + b[i:]


def m_delete(rng, b, _seeds):
    i = int(rng.integers(len(b)))
    return b[:i] + b[i + int(rng.integers(1, 64)):]


def m_duplicate(rng, b, _seeds):
    i = int(rng.integers(len(b)))
    j = min(len(b), i + int(rng.integers(1, 128)))
    return b[:j] + b[i:j] + b[j:]


def m_truncate(rng, b, _seeds):
    return b[:int(rng.integers(len(b)))]


def m_splice(rng, b, seeds):
    other = seeds[int(rng.integers(len(seeds)))]
    return b[:int(rng.integers(len(b) + 1))] + other[int(rng.integers(len(other) + 1)):]


def m_garbage(rng, _b, _seeds):
    g = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
    return b"\x89WZP\r\n\x1a\n\x01\x00" + g if rng.random() < 0.5 else g


def m_resealed_index(rng, b, _seeds):
    """Edit the index JSON text or chunk table, then make every checksum valid again."""
    index, table = read_index(b)
    ioff = struct.unpack_from("<Q", b, len(b) - 32)[0]
    js = bytearray(json.dumps(index).encode())
    if rng.random() < 0.3 and len(table) >= 8:
        table = bytearray(table)
        k = int(rng.integers(len(table) // 4)) * 4
        table[k:k + 4] = struct.pack("<I", INTERESTING32[int(rng.integers(len(INTERESTING32)))])
        table = bytes(table)
    else:
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(js)))
            r = rng.random()
            if r < 0.4 and chr(js[i]).isdigit():
                js[i] = ord(str(int(rng.integers(10))))
            elif r < 0.6:
                js[i:i + 1] = b""
            elif r < 0.8:
                js[i] = b'[]{}",:-09e'[int(rng.integers(11))]
            else:
                js[i:i] = b'"x"' if rng.random() < 0.5 else b"-1"
    return build_wz(b[16:ioff], None, table, json_bytes=bytes(js))


RAW_MUTATORS = [m_bitflips, m_payload_bitflip, m_payload_bitflip, m_overwrite, m_insert, m_delete,
                m_duplicate, m_truncate, m_splice, m_garbage]


def safe(m):
    """Mutators also get already-mutated (even empty) blobs when stacked."""
    def f(rng, b, seeds):
        return m(rng, b, seeds) if len(b) else m_garbage(rng, b, seeds)
    f.__name__ = m.__name__
    return f


def mutate_all(seeds, n, seed, resealed=False):
    """n (label, blob) cases. With resealed=True every case goes through m_resealed_index
    first (then maybe a raw mutation); such cases may decode to a *different valid* file."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = seeds[int(rng.integers(len(seeds)))]
        m = m_resealed_index if resealed else RAW_MUTATORS[int(rng.integers(len(RAW_MUTATORS)))]
        blob, label = m(rng, base, seeds), m.__name__
        if rng.random() < 0.15:  # stack a second mutation now and then
            m2 = RAW_MUTATORS[int(rng.integers(len(RAW_MUTATORS)))]
            blob, label = safe(m2)(rng, blob, seeds), f"{label}+{m2.__name__}"
        out.append((label, blob))
    return out


def check(cases, outcomes, valid_digests, any_valid_output=False):
    bad = []
    for (label, _b), (status, detail) in zip(cases, outcomes):
        if status == "FMT" or (status == "OK" and (any_valid_output or detail in valid_digests)):
            continue
        bad.append(f"{label}: {'WRONG OUTPUT returned silently' if status == 'OK' else status + ' ' + detail}")
    assert not bad, f"{len(bad)} of {len(cases)} fuzz cases unsafe:\n" + "\n".join(bad[:25])


def run_child(cases, api, tmp_path, valid, any_valid_output=False):
    outcomes = decode_in_child([b for _l, b in cases], api, tmp_path, timeout=240 * max(1, SCALE))
    check(cases, outcomes, valid, any_valid_output)
    return outcomes


def test_fuzz_decompress_in_child(tmp_path):
    seeds = frame_seeds()
    valid = {digest(weightzip.decompress(s)) for s in seeds}
    cases = mutate_all(seeds, int(15000 * SCALE), seed=1234)
    outcomes = run_child(cases, "decompress", tmp_path, valid)
    assert sum(o[0] == "FMT" for o in outcomes) > len(cases) // 2  # the fuzzer reaches errors


@pytest.mark.parametrize("api,n", [("load", 2500), ("open", 1500), ("unpack", 1200)])
def test_fuzz_files_in_child(tmp_path, small_st_wz, api, n):
    seeds = file_seeds(tmp_path, small_st_wz)
    valid = {o[1] for o in decode_in_child(seeds, api, tmp_path / "ref")}
    cases = mutate_all(seeds, int(n * SCALE), seed={"load": 1, "open": 2, "unpack": 3}[api])
    outcomes = run_child(cases, api, tmp_path / "w", valid)
    assert sum(o[0] == "FMT" for o in outcomes) > len(cases) // 2


@pytest.mark.parametrize("api", ["decompress", "unpack"])
def test_fuzz_resealed_index_in_child(tmp_path, small_st_wz, api):
    seeds = frame_seeds() if api == "decompress" else file_seeds(tmp_path, small_st_wz)
    cases = mutate_all(seeds, int((1500 if api == "decompress" else 500) * SCALE), seed=77, resealed=True)
    run_child(cases, api, tmp_path / "w", set(), any_valid_output=True)


def test_fuzz_in_process(tmp_path):
    """Raw mutations in-process too (the child runs above would have caught a crash first),
    for a full traceback if an unexpected exception type appears."""
    seeds = frame_seeds()
    valid = {digest(weightzip.decompress(s)) for s in seeds}
    deadline = time.perf_counter() + 4 * SCALE
    for label, blob in mutate_all(seeds, int(10000 * SCALE), seed=99):
        if time.perf_counter() > deadline:
            break
        try:
            out = decode("decompress", blob, tmp_path)
        except weightzip.FormatError:
            continue
        assert digest(out) in valid, f"{label}: wrong output returned silently"
