"""The C++ upsampler and synthesis (weightzip.core.synth_*, csrc/synthesis.hpp) against the numpy
reference of neurocodec/runtime/coolchic/decoder.py: the same bits for random latents and nets
(odd sizes, gray and RGB, extreme parameters that hit the activation clamp), on every SIMD path
(WEIGHTZIP_SIMD, in subprocesses), and clear errors for bad arguments. No torch."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from neurocodec.runtime.coolchic import decoder as D
from neurocodec.runtime.coolchic.format import CLAMP, F_A
from weightzip import _C
from weightzip.core import SYNTH_CLAMP, SYNTH_FRAC_A, synth_decode, synth_forward, synth_upsample

SHIPPED = [[16, 1, 1], [16, 1, 1], [0, 1, 0], [0, 3, 3], [0, 3, 2]]  # codecs/coolchic "synthesis"
SIZES = [(1, 1), (1, 9), (9, 1), (5, 7), (33, 47), (2, 3), (17, 64)]


def make_case(seed: int, h: int, w: int, planes: int, spec: list[list[int]], extreme: bool = False):
    """Random levels, taps and a net for spec rows (out, kernel, flags); out 0 = planes."""
    rng = np.random.default_rng(seed)
    n_levels = int(rng.integers(1, 7))
    shapes = [(-(-h // 2 ** i), -(-w // 2 ** i)) for i in range(n_levels)]
    a = 4096 if extreme else int(rng.choice([2, 30, 4096]))
    levels = [rng.integers(-a, a + 1, s).astype(np.int32) for s in shapes]
    taps = rng.integers(-4096, 4097, 4) if extreme else np.array([-1, 5, 29, 3]) * int(rng.integers(1, 64))
    p = 4096 if extreme else int(rng.choice([64, 600]))
    net, c = [], n_levels
    for out, k, flags in spec:
        out = out or planes
        w_ = rng.choice([-4096, 4096], (out, c, k, k)) if extreme and rng.random() < 0.5 else \
            rng.integers(-p, p + 1, (out, c, k, k))
        net.append((w_.astype(np.int32), rng.integers(-4096, 4097, out).astype(np.int32), flags))
        c = out
    return levels, taps.astype(np.int32), int(rng.integers(0, 13)), net, int(rng.integers(0, 13))


def reference(levels, taps, k_up, net, k_syn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy: (synthesis input, last activations, pixels [H, W, planes])."""
    x = D.upsample_stack(levels, taps, k_up)
    layers, c = [], len(levels)
    for w, _, f in net:
        layers.append((w.shape[0], c, w.shape[2], f))
        c = w.shape[0]
    hd = SimpleNamespace(syn_layers=lambda: layers, k_syn=k_syn)
    groups = {"syn_w": np.concatenate([w.ravel() for w, _, _ in net]).astype(np.int64),
              "syn_b": np.concatenate([b for _, b, _ in net]).astype(np.int64)}
    a = D.synthesis(hd, groups, x)
    pix = np.clip(D._shift(a * 255.0, F_A), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return x, a, pix


def random_spec(rng: np.random.Generator) -> list[list[int]]:
    spec = [[int(rng.integers(1, 9)), int(rng.choice([1, 3, 5])), int(rng.integers(0, 2))]
            for _ in range(int(rng.integers(0, 4)))]
    return spec + [[0, int(rng.choice([1, 3])), int(rng.integers(0, 2))]]


def fix_residual(spec: list[list[int]], n_levels: int, planes: int) -> list[list[int]]:
    out, c = [], n_levels
    for o, k, f in spec:
        o2 = o or planes
        out.append([o, k, f if o2 == c else f & 1])
        c = o2
    return out


def check(seed: int, h: int, w: int, planes: int, spec: list[list[int]], extreme: bool = False) -> bool:
    levels, taps, k_up, net, k_syn = make_case(seed, h, w, planes, spec, extreme)
    # residual layers need out == in: drop the flag where the drawn level count breaks that
    spec = fix_residual(spec, len(levels), planes)
    levels, taps, k_up, net, k_syn = make_case(seed, h, w, planes, spec, extreme)
    x, a, pix = reference(levels, taps, k_up, net, k_syn)
    got_x = synth_upsample(levels, taps, k_up)
    assert got_x.dtype == np.int32 and np.array_equal(got_x, x), "upsampler"
    got_a = synth_forward(got_x, net, k_syn)
    assert got_a.dtype == np.int32 and np.array_equal(got_a, a), "synthesis"
    got = synth_decode(levels, taps, k_up, net, k_syn)
    assert got.dtype == np.uint8 and got.shape == (h, w, planes) and np.array_equal(got, pix), "pixels"
    return bool(np.any(np.abs(a) == CLAMP) or np.any(np.abs(x) == CLAMP))


def test_constants():
    assert (SYNTH_FRAC_A, SYNTH_CLAMP) == (F_A, CLAMP)


@pytest.mark.parametrize("planes", [1, 3])
@pytest.mark.parametrize("h,w", SIZES)
def test_shipped_net_matches_numpy(h, w, planes):
    for seed in range(3):
        check(seed * 100 + h * 7 + w, h, w, planes, SHIPPED)


@pytest.mark.parametrize("h,w", SIZES)
def test_random_nets_match_numpy(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    for seed in range(6):
        check(seed, h, w, int(rng.choice([1, 3])), random_spec(rng))


def test_extremes_hit_the_clamp_and_match():
    rng = np.random.default_rng(5)
    hits = sum(check(seed, 13, 21, 3, random_spec(rng) if seed % 2 else SHIPPED, extreme=True)
               for seed in range(12))
    assert hits >= 6


def test_kernel_paths_agree():
    """Every SIMD path (WEIGHTZIP_SIMD caps the choice) gives the numpy reference's bits."""
    script = (
        "import sys, hashlib; sys.path[:0] = sys.argv[1:2]\n"
        "import test_coolchic_kernel as t\n"
        "from weightzip import _C\n"
        "rng = t.np.random.default_rng(9)\n"
        "for s in range(8): t.check(s, 19, 37, 1 + 2 * (s % 2), t.SHIPPED if s % 3 == 0 else t.random_spec(rng),"
        " extreme=s % 4 == 1)\n"
        "c = t.make_case(1, 40, 56, 3, t.SHIPPED)\n"
        "print(_C.synth_kernel(), hashlib.sha256(t.synth_decode(*c).tobytes()).hexdigest())\n")
    here = os.path.dirname(os.path.abspath(__file__))
    seen = {}
    for simd in ("none", "avx2", ""):
        env = dict(os.environ, WEIGHTZIP_SIMD=simd)
        r = subprocess.run([sys.executable, "-c", script, here], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        name, digest = r.stdout.split()
        seen[name] = digest
    assert "generic" in seen and len(set(seen.values())) == 1
    levels, taps, k_up, net, k_syn = make_case(1, 40, 56, 3, SHIPPED)
    pix = reference(levels, taps, k_up, net, k_syn)[2]
    assert hashlib.sha256(np.ascontiguousarray(pix).tobytes()).hexdigest() in seen.values()
    assert _C.synth_kernel() in ("avx512", "avx2", "generic")


def test_bad_arguments():
    levels, taps, k_up, net, k_syn = make_case(0, 8, 8, 3, SHIPPED)
    x = synth_upsample(levels, taps, k_up)
    bad = [
        (lambda: synth_upsample([], taps, 0), "1 to 32"),
        (lambda: synth_upsample([np.zeros((8, 8), np.int32), np.zeros((3, 4), np.int32)], taps, 0), "twice"),
        (lambda: synth_upsample([np.zeros((0, 4), np.int32)], taps, 0), "1 to 2"),
        (lambda: synth_upsample([np.full((2, 2), (1 << 18) + 1, np.int32)], taps, 0), "latents"),
        (lambda: synth_upsample(levels, [1, 2, 3], 0), "4 integers"),
        (lambda: synth_upsample(levels, [4097, 0, 0, 0], 0), "taps"),
        (lambda: synth_upsample(levels, taps, 31), "k_up"),
        (lambda: synth_forward(x, [], 0), "non-empty"),
        (lambda: synth_forward(x, net[1:], k_syn), "inputs"),
        (lambda: synth_forward(x, [(net[0][0], net[0][1][:3], 1)] + net[1:], k_syn), "biases"),
        (lambda: synth_forward(x, net[:-1] + [(np.zeros((3, 3, 2, 2), np.int32), net[-1][1], 2)], k_syn), "odd"),
        (lambda: synth_forward(x, net[:2] + [(net[2][0], net[2][1], 2)] + net[3:], k_syn), "residual"),
        (lambda: synth_forward(x, [(net[0][0] + 5000, net[0][1], 1)] + net[1:], k_syn), "weights"),
        (lambda: synth_forward(x, net[:-1] + [(net[-1][0], net[-1][1], 4)], k_syn), "flags"),
        (lambda: synth_forward(x, net, -1), "k_syn"),
        (lambda: synth_forward(x[0], net, k_syn), "3-D"),
        (lambda: synth_forward(np.full_like(x, CLAMP + 1), net, k_syn), "synthesis input"),
        (lambda: synth_forward(np.zeros((40, 4, 4), np.int32), [(np.zeros((3, 40, 7, 7), np.int32),
                                                                 np.zeros(3, np.int32), 0)], 0), "1024"),
        (lambda: synth_decode(levels, taps, k_up, [(net[0][0], net[0][1])], k_syn), "(weights, biases, flags)"),
    ]
    for call, msg in bad:
        with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            call()
    with pytest.raises(TypeError):
        synth_forward(x.astype(np.float64), net, k_syn)
