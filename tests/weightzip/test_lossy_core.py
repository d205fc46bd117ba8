"""Property tests of the lossy core (weightzip.lossy over csrc/quant, cabac and lossy): for F32,
F16, BF16 and F64 tensors of every kind (normal, heavy-tailed, constant, denormal, huge,
NaN/±Inf/−0.0, empty, odd lengths), random E in [1e-4, 0.5], with and without a reference, in
the linear and the sqrt domain:

- every finite element is within E·RMS(x), with RMS recomputed here in float64 over the finite
  values (np.sqrt(np.mean(x.astype(np.float64)**2))), not with the library's formula;
  in the sqrt domain |√x̂ − √x| ≤ E·RMS(√x), x̂ ≥ 0 and x > 0 never gives x̂ = 0;
- NaN/±Inf (and negatives in the sqrt domain) come back bit-exact;
- the decoder returns exactly the encoder's reconstruction, and the payload is deterministic;
- truncated payloads raise FormatError; bit-flipped ones raise it or decode, never crash.
"""
from __future__ import annotations

import os

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightzip import lossy
from weightzip.errors import FormatError

SETTINGS = settings(max_examples=int(os.environ.get("WZ_PROPERTY_EXAMPLES", 60)), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = [np.dtype(np.float32), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float64)]
KINDS = ["normal", "heavy", "const", "denormal", "huge", "special", "zeros"]
UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def make(kind: str, dt: np.dtype, n: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    fi = ml_dtypes.finfo(dt) if dt.name == "bfloat16" else np.finfo(dt)
    if kind == "normal":
        v = rng.standard_normal(n) * scale
    elif kind == "heavy":
        v = rng.standard_t(1.5, n) * scale
    elif kind == "const":
        v = np.full(n, scale * (1 if rng.random() < 0.5 else -1))
    elif kind == "denormal":  # around the smallest normal: subnormals of the dtype
        v = rng.uniform(-4, 4, n) * float(fi.smallest_normal)
    elif kind == "huge":
        v = rng.standard_normal(n) * scale
        v[::7] = rng.uniform(-0.99, 0.99, v[::7].size) * float(fi.max)
    elif kind == "special":
        v = rng.standard_normal(n) * scale
        for val, p in ((np.nan, 0.05), (np.inf, 0.03), (-np.inf, 0.03), (-0.0, 0.05)):
            v[rng.random(n) < p] = val
    else:
        v = np.zeros(n)
        v[rng.random(n) < 0.5] = -0.0
    with np.errstate(over="ignore", invalid="ignore"):
        return v.astype(dt)


@st.composite
def cases(draw):
    dt = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(KINDS))
    n = draw(st.one_of(st.integers(0, 9), st.integers(10, 3000)))
    rows = draw(st.sampled_from([None, 1, 7, 64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** draw(st.floats(-3, 3))
    x = make(kind, dt, n, rng, scale)
    domain = draw(st.sampled_from(["linear", "sqrt"]))
    if domain == "sqrt":  # moments are >= 0; a few negatives must come back exactly
        x = np.abs(x.astype(np.float64))
        x[rng.random(n) < 0.02] *= -1
        with np.errstate(over="ignore", invalid="ignore"):
            x = x.astype(dt)
    ref = None
    if draw(st.booleans()):  # a previous checkpoint (its reconstruction): x plus drift, some junk
        with np.errstate(over="ignore", invalid="ignore"):
            r = x.astype(np.float64) + rng.standard_normal(n) * scale * draw(st.sampled_from([0.0, 0.001, 0.1, 3]))
            r[rng.random(n) < 0.01] = np.nan
            ref = r.astype(dt)
    if rows and n % rows == 0 and n:
        x = x.reshape(-1, rows)
        ref = None if ref is None else ref.reshape(x.shape)
    e = draw(st.floats(1e-4, 0.5))
    return x, ref, e, domain


def bits(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1).view(UINT[a.dtype.itemsize])


def check_bound(x: np.ndarray, recon: np.ndarray, e: float, domain: str) -> None:
    assert recon.dtype == x.dtype and recon.shape == x.shape
    x64, r64 = x.astype(np.float64).ravel(), recon.astype(np.float64).ravel()
    with np.errstate(over="ignore", invalid="ignore"):
        if domain == "linear":
            ok = np.isfinite(x64)
            vals, rv = x64[ok], r64[ok]
        else:
            ok = np.isfinite(x64) & (x64 >= 0)
            vals, rv = np.sqrt(x64[ok]), r64[ok]
            assert (rv >= 0).all()
            assert not ((x64[ok] > 0) & (rv == 0)).any(), "a positive moment reconstructed as 0"
            rv = np.sqrt(rv)
        rms = np.sqrt(np.mean(vals ** 2)) if vals.size else 0.0
        err = np.abs(vals - rv)
    worst = float(err.max() / (e * rms)) if err.size and rms > 0 else 0.0
    assert (err <= e * rms).all(), f"bound exceeded: max |x - x̂| = {worst} · E·RMS"
    assert np.array_equal(bits(x)[~ok], bits(recon)[~ok]), "non-finite elements not bit-exact"


@SETTINGS
@given(cases())
def test_bound_roundtrip_determinism(case):
    x, ref, e, domain = case
    payload, recon = lossy.quantise(x, e, ref, domain)
    check_bound(x, recon, e, domain)
    dec = lossy.dequantise(payload, x.dtype, x.shape, ref)
    assert np.array_equal(bits(dec), bits(recon)), "decoder != encoder's reconstruction"
    assert lossy.quantise(x, e, ref, domain)[0] == payload, "not deterministic"
    inf = lossy.info(payload)
    assert inf["n"] == x.size and inf["domain"] == domain and inf["predicted"] == (ref is not None)
    assert lossy.bits_per_weight(payload) == (8 * len(payload) / x.size if x.size else 0.0)


@SETTINGS
@given(cases(), st.integers(0, 2**32 - 1))
def test_corrupt_payloads(case, seed):
    x, ref, e, domain = case
    payload, recon = lossy.quantise(x, e, ref, domain)
    rng = np.random.default_rng(seed)
    for cut in sorted(set(rng.integers(0, len(payload), 8).tolist())):
        with pytest.raises(FormatError):
            lossy.dequantise(payload[:cut], x.dtype, x.shape, ref)
    for _ in range(8):
        bad = bytearray(payload)
        bad[int(rng.integers(len(bad)))] ^= 1 << int(rng.integers(8))
        try:
            out = lossy.dequantise(bytes(bad), x.dtype, x.shape, ref)
            assert out.shape == x.shape
        except FormatError:
            pass


@pytest.mark.parametrize("dt", DTYPES[:3], ids=lambda d: d.name)
def test_reconstruction_casts_round_to_nearest_even(dt):
    """x̂ = cast(q·Δ) rounds straight from double, as numpy (float16) and ml_dtypes (bfloat16) do:
    with an unbounded check the encoder keeps q = round(x/Δ), so x̂ must equal their cast. Steps
    of 2^-k make q·Δ land on ties between neighbours, tiny ones test subnormals."""
    from weightzip import _C

    rng = np.random.default_rng(0)
    code = lossy.dtype_code(dt)
    for step in (2.0 ** -25, 2.0 ** -11, 2.0 ** -9, 0.0123456789, 3.3e-7, 2.0 ** -134, 1e-310):
        x = (rng.standard_normal(20000) * rng.choice([1e-6, 1e-3, 1, 100], 20000)).astype(dt)
        with np.errstate(over="ignore"):
            t = x.astype(np.float64) / step
            q = np.sign(t) * np.floor(np.abs(t) + 0.5) + 0.0  # +0.0: q = 0 gives +0.0, as 0·Δ does
            want = (q * step).astype(dt)
        _, recon = _C.lossy_encode(x.view(np.uint8), code, step, 1e300)
        keep = (np.abs(t) < 2 ** 30) & np.isfinite(want.astype(np.float64))
        assert np.array_equal(bits(recon.view(dt))[keep], bits(want)[keep]), step


def test_closed_loop_chain_does_not_accumulate():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((256, 96)).astype(np.float32) * 0.02
    ref, sizes = None, []
    for _ in range(6):
        x = (x + rng.standard_normal(x.shape).astype(np.float32) * 2e-4).astype(np.float32)
        payload, recon = lossy.quantise(x, 0.01, ref)
        check_bound(x, recon, 0.01, "linear")
        assert np.array_equal(lossy.dequantise(payload, x.dtype, x.shape, ref), recon)
        sizes.append(len(payload))
        ref = recon
    assert max(sizes[1:]) * 2 < sizes[0], sizes  # deltas are much cheaper than the keyframe


def test_keyframe_rate():  # a Gaussian at E = 0.01: about log2(50·√(2πe)) ≈ 7.69 bits/weight
    x = np.random.default_rng(0).standard_normal(200_000).astype(np.float32)
    payload, _ = lossy.quantise(x, 0.01)
    assert 7.5 < lossy.bits_per_weight(payload) < 7.9
    assert x.nbytes / len(payload) >= 4


def test_deadzone_keeps_the_bound():
    x = np.random.default_rng(1).laplace(size=20_000).astype(np.float32)
    for theta in (0.5, 0.4, 0.33, 0.0):
        _, recon = lossy.quantise(x, 0.02, deadzone=theta)
        check_bound(x, recon, 0.02, "linear")


def test_bad_arguments():
    x = np.ones(10, np.float32)
    with pytest.raises(ValueError):
        lossy.quantise(np.arange(10), 0.01)
    with pytest.raises(ValueError):
        lossy.quantise(x, 0.0)
    with pytest.raises(ValueError):
        lossy.quantise(x, 0.01, np.ones(10, np.float64))
    with pytest.raises(ValueError):
        lossy.quantise(x, 0.01, domain="log")
    payload, _ = lossy.quantise(x, 0.01)
    with pytest.raises(FormatError):
        lossy.dequantise(payload, np.float32, 11)
    with pytest.raises(FormatError):
        lossy.dequantise(payload, np.float16, 10)
    with pytest.raises(FormatError):
        lossy.dequantise(payload, np.float32, 10, ref=x)


def test_csrc_lossy_unit(tmp_path):
    """csrc/tests/test_lossy.cpp (casts, cabac, payloads, garbage), compiled with the system
    compiler straight from the sources (the same program ctest runs as wz_test_lossy)."""
    import shutil
    import subprocess
    from pathlib import Path

    csrc = Path(__file__).resolve().parents[2] / "csrc"
    if not (csrc / "tests" / "test_lossy.cpp").exists():
        pytest.skip("not a source checkout")
    cxx = next((p for p in (shutil.which(c) for c in (os.environ.get("CXX", ""), "c++", "g++", "clang++") if c)
                if p), None)
    if cxx is None:
        pytest.skip("no C++ compiler found")
    exe = tmp_path / "test_lossy"
    sources = [str(csrc / f) for f in ("quant.cpp", "cabac.cpp", "lossy.cpp", "tests/test_lossy.cpp")]
    r = subprocess.run([cxx, "-std=c++17", "-O1", "-ffp-contract=off", "-pthread", f"-I{csrc}", *sources,
                        "-o", str(exe)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-6000:]
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-6000:]
    assert r.stdout.strip().endswith("0 failures")
