"""What the golden files hold and how they are written: the deterministic inputs, and one
writer per golden file, shared by the tests (test_golden_wz.py, test_golden_nc.py) and by
regenerate.py. See README.md.

Inputs come from integer arithmetic only (a vectorised splitmix64, bit patterns, cumulative
sums): nothing depends on numpy's random streams or on libm, so the same bytes come out on
every machine and numpy version. Their sha256 is pinned in manifest.json as well, so a change
here shows up as "the inputs changed", apart from a change of the formats."""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
LEVELS = ("fast", "default", "max")

# every dtype weightzip stores (weightzip/dtypes.py), by its safetensors name
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
FLOAT_BITS = {"F64": (11, 52), "F32": (8, 23), "F16": (5, 10), "BF16": (8, 7), "F8_E4M3": (4, 3),
              "F8_E5M2": (5, 2)}  # (exponent bits, mantissa bits)


# ---------------------------------------------------------------- deterministic numbers

def splitmix64(seed: int, n: int) -> np.ndarray:
    """n uint64 values of splitmix64 (Steele, Lea, Flood 2014) from seed: integer ops only."""
    with np.errstate(over="ignore"):
        x = (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) + np.uint64(seed)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def random_bytes(seed: int, n: int) -> np.ndarray:
    return splitmix64(seed, -(-n // 8)).astype("<u8").view(np.uint8)[:n].copy()


def gaussianish(seed: int, n: int) -> np.ndarray:
    """float64, mean 0, sd 1: Irwin-Hall of 4 uniforms (exact float64 arithmetic)."""
    u = (splitmix64(seed, 4 * n) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return (u.reshape(n, 4).sum(axis=1) - 2.0) * np.sqrt(3.0)


def _bits(patterns, dtype: np.dtype) -> np.ndarray:
    ut = np.dtype(f"<u{dtype.itemsize}")
    return np.array([p & ((1 << 8 * dtype.itemsize) - 1) for p in patterns], dtype=ut).view(dtype)


def edge_values(name: str) -> np.ndarray:
    """Bit patterns at the edges of the type: for floats both zeros, the smallest and largest
    subnormals, the smallest normal, the largest finite, ±Inf (finite for F8_E4M3, which has
    no Inf), quiet and signalling NaNs with payloads, 1.0, -1.0 (17 values); for integers the
    extremes and alternating bits (11); BOOL: both values (5)."""
    dt = DTYPES[name]
    if name == "BOOL":
        return np.array([False, True, True, False, True])
    b = 8 * dt.itemsize
    if name in FLOAT_BITS:
        e, m = FLOAT_BITS[name]
        sign, mant, exp = 1 << (b - 1), (1 << m) - 1, ((1 << e) - 1) << m
        one = ((1 << (e - 1)) - 1) << m
        pats = [0, sign, 1, sign | mant, 1 << m, (exp - (1 << m)) | mant, sign | (exp - (1 << m)) | mant,
                exp, sign | exp, exp | (1 << (m - 1)), sign | exp | (1 << (m - 1)) | 1, exp | 1,
                exp | mant, (1 << b) - 1, one, sign | one, int("01" * (b // 2), 2)]
    else:
        hi = 1 << (b - 1)
        pats = [0, 1, 2, (1 << b) - 1, (1 << b) - 2, hi, hi - 1, hi + 1, int("01" * (b // 2), 2),
                int("10" * (b // 2), 2), int("00001111" * (b // 8), 2)]
    return _bits(pats, dt)


def smooth(name: str, seed: int, shape=(9, 57)) -> np.ndarray:
    """Compressible, weight-like values of the dtype (so the entropy coders do real work)."""
    dt = DTYPES[name]
    n = int(np.prod(shape))
    g = gaussianish(seed, n)
    if name == "BOOL":
        return (g > 1.3).reshape(shape)
    if name == "F64":
        return (g * 0.05).reshape(shape)
    if name in FLOAT_BITS:
        f32 = (g * (0.5 if name.startswith("F8") else 0.05)).astype(np.float32)  # IEEE: correctly rounded
        return f32.astype(dt).reshape(shape)
    info = np.iinfo(dt)
    v = np.round(g * 3.0) + (0 if info.min < 0 else 10)
    return np.clip(v, info.min, info.max).astype(dt).reshape(shape)


def random_bits(name: str, seed: int, shape=(3, 7)) -> np.ndarray:
    """Uniformly random bit patterns (every NaN payload of a float type too)."""
    dt = DTYPES[name]
    b = random_bytes(seed, int(np.prod(shape)) * dt.itemsize)
    if name == "BOOL":
        b &= 1
    return b.view(dt).reshape(shape)


def wz_tensors() -> dict[str, np.ndarray]:
    """The tensor set of tensors_<level>.wz: for every dtype an edge-value vector, random bits
    (3x7), smooth values (9x57), a constant (101 ones), a scalar (0-d) and an empty tensor
    (3x0); names in dtype order, as stored."""
    out = {}
    for i, name in enumerate(DTYPES):
        k = name.lower()
        out[f"{k}.edge"] = edge_values(name)
        out[f"{k}.bits"] = random_bits(name, 100 + i)
        out[f"{k}.smooth"] = smooth(name, 200 + i)
        out[f"{k}.const"] = np.ones(101, DTYPES[name])
        out[f"{k}.scalar"] = np.array(edge_values(name)[-1])
        out[f"{k}.empty"] = np.zeros((3, 0), DTYPES[name])
    return out


WZ_METADATA = {"golden": "weightzip tensors", "note": "see tests/golden/README.md"}

FRAMES = {  # file -> (level, what compress() gets)
    "frame_bytes_fast.wz": ("fast", lambda: bytes(random_bytes(7, 333) & 15) + b"weightzip " * 40),
    "frame_f16_default.wz": ("default", lambda: smooth("F16", 8, (33, 31))),
    "frame_bf16_max.wz": ("max", lambda: smooth("BF16", 9, (31, 33))),
}


def safetensors_bytes() -> bytes:
    """A hand-laid safetensors file: tensors out of header order, unclaimed bytes between and
    after them, metadata, a header padded with spaces; pack() must keep it byte for byte."""
    a = smooth("F32", 11, (5, 13))
    b = edge_values("I16")
    c = smooth("BF16", 12, (7, 3))
    gap = bytes(random_bytes(13, 13))
    data = b.tobytes() + gap + a.tobytes() + c.tobytes() + b"trailing\x00\xff"
    off_a = b.nbytes + len(gap)
    header = {"a": {"dtype": "F32", "shape": [5, 13], "data_offsets": [off_a, off_a + a.nbytes]},
              "b": {"dtype": "I16", "shape": [11], "data_offsets": [0, b.nbytes]},
              "c": {"dtype": "BF16", "shape": [7, 3], "data_offsets": [off_a + a.nbytes, off_a + a.nbytes + c.nbytes]},
              "__metadata__": {"format": "pt", "golden": "1"}}
    js = json.dumps(header).encode() + b"    "
    return struct.pack("<Q", len(js)) + js + data


PACKED_SOURCE = "golden.safetensors"  # pack() stores the source's name: keep it


def make_wz(name: str, tmp: Path) -> bytes:
    """The bytes of golden file `name` as this weightzip writes it (one thread)."""
    import weightzip

    tmp = Path(tmp)
    if name.startswith("tensors_"):
        level = name[len("tensors_"):-3]
        out = tmp / name
        weightzip.save(wz_tensors(), out, level=level, metadata=WZ_METADATA, threads=1, overwrite=True)
        return out.read_bytes()
    if name in FRAMES:
        level, make = FRAMES[name]
        return weightzip.compress(make(), level=level, threads=1)
    if name == "packed_safetensors.wz":
        src = tmp / PACKED_SOURCE
        src.write_bytes(safetensors_bytes())
        return weightzip.pack(src, tmp / name, level="default", threads=1, overwrite=True).read_bytes()
    raise KeyError(name)


WZ_FILES = [f"tensors_{lv}.wz" for lv in LEVELS] + list(FRAMES) + ["packed_safetensors.wz"]


# ---------------------------------------------------------------- .nc inputs

def image_rgb(h: int = 24, w: int = 40) -> np.ndarray:
    """A small synthetic photo-like RGB image: gradients, a disc, a hard edge, fine texture and
    a little noise; integer arithmetic only."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    noise = random_bytes(21, h * w * 3).reshape(h, w, 3).astype(np.int64) % 13 - 6
    disc = ((y - h // 2) ** 2 + (x - w // 3) ** 2) < (h // 3) ** 2
    r = 40 + 4 * x + 2 * y + 90 * disc
    g = 200 - 3 * y + 30 * ((x // 3 + y // 3) % 2)
    b = np.where(x > 2 * w // 3, 220, 60) + y
    return np.clip(np.stack([r, g, b], -1) + noise, 0, 255).astype(np.uint8)


def image_gray(h: int = 16, w: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    noise = random_bytes(22, h * w).reshape(h, w).astype(np.int64) % 9 - 4
    return np.clip(30 + 12 * x + 40 * ((x + y) > 20) + 8 * (y % 4) + noise, 0, 255).astype(np.uint8)


def chirp_int16(sr: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """int16 [T, C]: a triangle-wave chirp per channel (integer phase accumulator) plus a
    little noise; channel c starts at a higher pitch and is quieter."""
    n = int(sr * seconds)
    cols = []
    for c in range(channels):
        f0, f1 = 220 + 170 * c, 1400 + 300 * c  # Hz, swept linearly
        inc = ((f0 + (f1 - f0) * np.arange(n, dtype=np.int64) // n) << 32) // sr  # phase step, 2^32 = a cycle
        phase = np.cumsum(inc) & 0xFFFFFFFF
        tri = np.abs((phase >> 16) - 32768) - 16384  # +-16384
        amp = 3 - c  # in quarters
        noise = random_bytes(seed + c, 2 * n).view("<u2").astype(np.int64) % 1025 - 512
        cols.append(tri * amp // 4 + noise)
    return np.stack(cols, -1).astype(np.int16)


def nc_inputs() -> dict[str, tuple[np.ndarray, int | None]]:
    """name -> (array, sample rate or None for images)."""
    mono = chirp_int16(24000, 0.5, 1, 31)[:, 0]
    return {
        "rgb40x24": (image_rgb(), None),
        "gray16x16": (image_gray(), None),
        "mono24k": ((mono.astype(np.float32) / 32768.0), 24000),  # float32 (exact): FLOAT
        "stereo16k": (chirp_int16(16000, 0.5, 2, 41), 16000),  # int16: PCM_16
    }


IMAGE_CODECS = ("hyperprior", "shallow")
IMAGE_QUALITIES = (1, 4)
AUDIO_CASES = {"mono24k": (3.0, 6.0), "stereo16k": (12.0,)}  # input -> kbps (the whole file's)


def nc_cases() -> dict[str, dict]:
    """file name -> what it is encoded from: {codec, input, quality | kbps}."""
    out = {}
    for codec in IMAGE_CODECS:
        for inp in ("rgb40x24", "gray16x16"):
            for q in IMAGE_QUALITIES:
                out[f"{codec}_{inp}_q{q}.nc"] = {"codec": codec, "input": inp, "quality": q}
    for inp, rates in AUDIO_CASES.items():
        for k in rates:
            out[f"audio-rvq_{inp}_{k:g}kbps.nc"] = {"codec": "audio-rvq", "input": inp, "kbps": k}
    return out


LEGACY_NC = {  # files older code wrote: decoded, never re-encoded
    "audio_rvq_release1.nc": "the first audio release: parameters without the "
                             "revision block (PCM_16, unity gain); stereo chirp, 16 kHz, 1.5 s, 6 kbps",
}


FITTED_NC = {  # overfitted per image: written once, then decode-only (see README.md)
    "coolchic_rgb40x24_q3.nc": {"codec": "coolchic", "input": "rgb40x24", "quality": 3, "preset": "fast"},
    "coolchic_gray16x16_q1.nc": {"codec": "coolchic", "input": "gray16x16", "quality": 1, "preset": "fast"},
}
FITTED_NOTE = ("fitted per image (coolchic): the encoder is an optimisation whose bits follow torch's float "
               "kernels on this CPU, so the file is written once and pins the decoder only")


def make_nc(case: dict) -> bytes:
    """Encode a case with this neurocodec (torch on one thread: see README.md)."""
    import neurocodec

    x, sr = nc_inputs()[case["input"]]
    if sr is None:
        return neurocodec.encode(x, codec=case["codec"], quality=case["quality"],
                                 **({"preset": case["preset"]} if "preset" in case else {}))
    return neurocodec.encode(x, sr, codec=case["codec"], kbps=case["kbps"])


# ---------------------------------------------------------------- descriptions

def sha256(b) -> str:
    return hashlib.sha256(memoryview(b).cast("B") if not isinstance(b, bytes) else b).hexdigest()


def describe(a) -> dict:
    """{dtype, shape, sha256 of the C-order bytes} of an array."""
    a = np.asarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape),
            "sha256": sha256(np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes())}


def describe_decoded(out) -> dict:
    """What neurocodec.decode returned: an image array, or (audio array, sample rate)."""
    if isinstance(out, tuple):
        return {**describe(out[0]), "sample_rate": int(out[1])}
    return describe(out)


def first_difference(got: bytes, want: bytes) -> str:
    """Where two byte strings part, for a failure message."""
    n = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return (f"{len(got)} bytes written today vs {len(want)} committed; first difference at byte {n} "
            f"(today {got[n:n + 8].hex()} | committed {want[n:n + 8].hex()}). If the format changed on "
            f"purpose, bump its version and see tests/golden/README.md")


def libzstd_version() -> int | None:
    """ZSTD_versionNumber() of the libzstd weightzip loads at run time (csrc/zstd_dl.cpp tries
    these names in this order), or None. zstd's output may change between its versions, and
    every .wz file holds zstd frames (the index is coded at the default level)."""
    import ctypes

    for name in ("libzstd.so.1", "libzstd.so", "libzstd.1.dylib", "libzstd.dylib"):
        try:
            return int(ctypes.CDLL(name).ZSTD_versionNumber())
        except (OSError, AttributeError):
            continue
    return None


def environment() -> dict:
    """What the golden files' bytes may depend on beyond this checkout (recorded, for messages)."""
    import platform

    env = {"libzstd": libzstd_version(), "numpy": np.__version__, "machine": platform.machine()}
    try:
        import torch

        env["torch"] = torch.__version__
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # AVX512, AVX2, ...: float kernels
        env["cpu_vendor"] = cpu_vendor()
    except ImportError:
        pass
    return env


def cpu_vendor() -> str:
    """GenuineIntel, AuthenticAMD... (/proc/cpuinfo's vendor_id; the platform's processor name
    elsewhere): MKL and oneDNN pick other float kernels per vendor at the same SIMD level."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def float_platform(env: dict) -> str | None:
    """What a float decoder's bits follow: the SIMD level and the CPU vendor ("AVX512/GenuineIntel";
    an AMD AVX-512 machine decodes the audio golden files to other bits than an Intel one)."""
    cap = env.get("cpu_capability")
    return None if cap is None else f"{cap}/{env.get('cpu_vendor', 'unknown')}"


def is_float_decoder(name: str) -> bool:
    """Golden .nc files whose decoder runs float kernels (the audio codec): their decoded bits
    may differ between SIMD levels. Image decoders are integer/fixed-point: one record."""
    return name.startswith("audio")


def expected_decoded(entry: dict, written_with: dict) -> dict | None:
    """What a golden .nc must decode to here. A float decoder's bits follow the CPU (torch's
    kernels differ between AVX-512 and AVX2, and between vendors: float_platform), so its entry
    may hold a record per platform besides the one of the machine that wrote the files
    ("decoded_on"); None when this platform has no record (regenerate.py --record-isa adds it).
    Every other decoder has its one record."""
    here = float_platform(environment())
    if not entry.get("float_decoder") or here is None or here == float_platform(written_with):
        return entry["decoded"]
    return entry.get("decoded_on", {}).get(here)


def load_manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def dump_json(o, indent: int = 0) -> str:
    """JSON with one line per innermost object (one line per tensor, per decoded output)."""
    if isinstance(o, dict) and any(isinstance(v, dict) for v in o.values()):
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(k)}: {dump_json(v, indent + 1)}" for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(o)
