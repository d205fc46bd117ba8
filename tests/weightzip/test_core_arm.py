"""weightzip.core: the fixed-point ARM latent coder (csrc/arm.hpp, docs/arm_coder.md).

The spec is re-implemented here in pure numpy / Python from the documentation (tables from exact
decimal arithmetic, the integer MLP, the closed-form CDF, the rANS streams and the payload
layout), and the C++ core must agree exactly: parameters, frequencies, CDFs and payload bytes.
Also: round trips (empty, 1x1, +-A, A = 0 and 4096), threads, rate against the ideal, the same
bytes in other processes (and with the scalar kernel), bad arguments, corrupt payloads.
"""
from __future__ import annotations

import os
import subprocess
import sys
from decimal import ROUND_HALF_EVEN, Decimal, getcontext

import numpy as np
import pytest

from weightzip import _C
from weightzip.core import (
    ARM_CONTEXT_5X5,
    ARM_LOG_SCALE_MAX,
    ARM_LOG_SCALE_MIN,
    ArmNet,
    arm_cdf,
    arm_decode,
    arm_encode,
    arm_params,
    write_varint,
)
from weightzip.errors import FormatError

I64 = np.int64


# ------------------------------------------------------------------ the reference, from the spec
def exact_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    getcontext().prec = 80
    ln2 = Decimal(2).ln()

    def rnd(x: Decimal) -> int:
        return int(x.to_integral_value(rounding=ROUND_HALF_EVEN))

    def p2(e: Decimal) -> Decimal:
        return (e * ln2).exp()

    recip = [rnd(p2(Decimal(-f) / 256) / ln2 * 2**40) for f in range(256)]
    hi = [rnd(p2(Decimal(-h) / 256) * 2**31) for h in range(256)]
    lo = [rnd(p2(Decimal(-l) / 65536) * 2**31) for l in range(256)]
    return np.array(recip, I64), np.array(hi, I64), np.array(lo, I64)


RECIP, EXP_HI, EXP_LO = exact_tables()


def ref_contexts(level: np.ndarray, context: np.ndarray) -> np.ndarray:
    """[h * w, n_ctx] latents at the context offsets (0 outside the grid)."""
    h, w = level.shape
    r = 16
    pad = np.zeros((h + 2 * r, w + 2 * r), I64)
    pad[r:r + h, r:r + w] = level
    cols = [pad[r + dy:r + dy + h, r + dx:r + dx + w].reshape(-1) for dy, dx in context]
    return np.stack(cols, 1) if cols else np.zeros((h * w, 0), I64)


def ref_net(x: np.ndarray, net: ArmNet, a: int) -> tuple[np.ndarray, np.ndarray]:
    act = x.astype(I64) * 256
    n_layers = len(net.weights)
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        acc = act @ w.astype(I64).T + b.astype(I64)
        act = (acc + 2048) >> 12
        if l + 1 < n_layers:
            act = np.clip(act, 0, 2**31 - 1)
    return np.clip(act[:, 0], -256 * a, 256 * a), np.clip(act[:, 1], ARM_LOG_SCALE_MIN, ARM_LOG_SCALE_MAX)


def ref_exp(u: np.ndarray) -> np.ndarray:
    i = u >> 40
    f = (u >> 24) & 0xFFFF
    g = (EXP_HI[f >> 8] * EXP_LO[f & 255]) >> (30 + np.minimum(i, 33))
    return np.where(i >= 33, 0, g)


def ref_cum(mu: np.ndarray, ls: np.ndarray, a: int, k: np.ndarray) -> np.ndarray:
    mu = np.clip(np.asarray(mu, I64), -256 * a, 256 * a)
    ls = np.clip(np.asarray(ls, I64), ARM_LOG_SCALE_MIN, ARM_LOG_SCALE_MAX)
    r = RECIP[ls & 255] >> ((ls >> 8) + 8)
    n, m = 2 * a + 1, 65536 - (2 * a + 1)
    k = np.asarray(k, I64)
    delta = (k - a) * 256 - 128 - mu
    half = (m * ref_exp(np.abs(delta) * r)) >> 33
    c = k + np.where(delta < 0, half, m - half)
    return np.where(k <= 0, 0, np.where(k >= n, 65536, c))


def ref_params(level: np.ndarray, net: ArmNet, a: int):
    mu, ls = ref_net(ref_contexts(level, net.context), net, a)
    k = level.reshape(-1).astype(I64) + a
    lo, hi = ref_cum(mu, ls, a, k), ref_cum(mu, ls, a, k + 1)
    return mu.reshape(level.shape), ls.reshape(level.shape), lo, hi - lo


def ref_payload(levels: list[np.ndarray], net: ArmNet, a: int) -> bytes:
    streams = []
    for level in levels:
        if level.size == 0:
            streams.append(b"")
            continue
        _, _, start, freq = ref_params(level, net, a)
        x, rev = 1 << 23, bytearray()
        for s, f in zip(start[::-1].tolist(), freq[::-1].tolist()):
            while x >= (1 << 15) * f:
                rev.append(x & 255)
                x >>= 8
            x = ((x // f) << 16) + x % f + s
        streams.append(x.to_bytes(4, "little") + bytes(reversed(rev)))
    return b"".join(write_varint(len(s)) for s in streams[:-1]) + b"".join(streams)


# ---------------------------------------------------------------------------------- helpers
def random_net(rng, context=ARM_CONTEXT_5X5, hidden=(16, 16), scale=1.0, ls_bias=0.0) -> ArmNet:
    ws, bs, n_in = [], [], len(context)
    for out in (*hidden, 2):
        ws.append(rng.normal(0, scale / np.sqrt(n_in), (out, n_in)))
        bs.append(rng.normal(0, 0.1, out))
        n_in = out
    bs[-1][1] = ls_bias
    return ArmNet.quantize(np.array(context), ws, bs)


def random_levels(rng, shapes, a, spread=2.0):
    return [np.clip(np.rint(rng.normal(0, spread, s)), -a, a).astype(np.int32) for s in shapes]


NETS = [  # (context, hidden, scale, ls_bias)
    (ARM_CONTEXT_5X5, (16, 16), 1.0, 0.0),
    (ARM_CONTEXT_5X5, (), 2.0, -3.0),
    (((0, -1),), (8,), 1.0, 2.0),
    (((-16, 16), (-1, 0), (0, -16), (-1, 0)), (3, 24, 5), 3.0, 5.0),
]


# ------------------------------------------------------------------------------ exactness
def test_tables_are_the_exact_values_rounded():
    recip, hi, lo = _C.arm_tables()
    assert np.array_equal(recip.astype(I64), RECIP)
    assert np.array_equal(hi.astype(I64), EXP_HI)
    assert np.array_equal(lo.astype(I64), EXP_LO)


@pytest.mark.parametrize("case", range(len(NETS)))
@pytest.mark.parametrize("a", [0, 1, 5, 255, 4096])
def test_params_match_the_numpy_reference(case, a):
    rng = np.random.default_rng(100 * case + a)
    ctx, hidden, scale, ls_bias = NETS[case]
    net = random_net(rng, ctx, hidden, scale, ls_bias)
    levels = random_levels(rng, [(19, 23), (1, 1), (0, 4), (3, 40)], a, spread=1 + a / 8)
    for level, got in zip(levels, arm_params(levels, net, a)):
        mu, ls, _, freq = ref_params(level, net, a)
        np.testing.assert_array_equal(got.mu, mu)
        np.testing.assert_array_equal(got.log_scale, ls)
        np.testing.assert_array_equal(got.freq.reshape(-1), freq)
        assert got.freq.dtype == np.int32 and got.freq.shape == level.shape
        assert (got.freq >= 1).all() and (got.freq <= 65536).all()


def test_params_hit_every_clamp():
    """Huge weights: hidden activations at 2**31 - 1, mu and ls at both ends of their ranges."""
    rng = np.random.default_rng(7)
    ctx = np.array(ARM_CONTEXT_5X5)
    w0 = rng.integers(-(2**28), 2**28, (8, 12))
    w1 = rng.integers(-(2**26), 2**26, (2, 8))
    net = ArmNet(ctx, (w0, w1), (rng.integers(-(2**30), 2**30, 8), np.array([0, 0])))
    level = rng.integers(-30, 31, (20, 20)).astype(np.int32)
    got = arm_params([level], net, 30)[0]
    mu, ls, _, freq = ref_params(level, net, 30)
    np.testing.assert_array_equal(got.mu, mu)
    np.testing.assert_array_equal(got.log_scale, ls)
    np.testing.assert_array_equal(got.freq.reshape(-1), freq)
    assert {mu.min(), mu.max()} == {-30 * 256, 30 * 256}
    assert {ls.min(), ls.max()} == {ARM_LOG_SCALE_MIN, ARM_LOG_SCALE_MAX}
    act = np.clip((ref_contexts(level, ctx) * 256 @ w0.T + net.biases[0] + 2048) >> 12, 0, None)
    assert act.max() > 2**31  # the activation clamp was needed


@pytest.mark.parametrize("a", [0, 1, 3, 64, 4096])
def test_cdf_matches_the_reference_and_is_valid(a):
    rng = np.random.default_rng(a)
    lim = 256 * a
    mu = np.concatenate([rng.integers(-lim - 500, lim + 501, 200), [-lim, lim, 0, 127, -128, 2**31 - 1]])
    ls = np.concatenate([rng.integers(ARM_LOG_SCALE_MIN - 50, ARM_LOG_SCALE_MAX + 51, 200),
                         [ARM_LOG_SCALE_MIN, ARM_LOG_SCALE_MAX, 0, -1, -(2**31), 255]])
    got = arm_cdf(mu, ls, a)
    assert got.shape == (206, 2 * a + 2) and got.dtype == np.int32
    k = np.arange(2 * a + 2)
    np.testing.assert_array_equal(got, ref_cum(mu[:, None], ls[:, None], a, k[None, :]))
    assert (got[:, 0] == 0).all() and (got[:, -1] == 65536).all()
    assert (np.diff(got, axis=1) >= 1).all()  # every frequency >= 1
    assert arm_cdf(np.zeros((2, 3)).astype(int), np.zeros((2, 3)).astype(int), a).shape == (2, 3, 2 * a + 2)


def test_cdf_is_a_discretised_laplace():
    a = 40
    mu, ls = np.array([0, 700, -3000]), np.array([0, 256, -200])
    got = arm_cdf(mu, ls, a).astype(np.float64)
    m, b = mu / 256, 2.0 ** (ls / 256)
    x = np.arange(1, 2 * a + 1) - a - 0.5
    lap = np.where(x < m[:, None], 0.5 * np.exp((x - m[:, None]) / b[:, None]),
                   1 - 0.5 * np.exp(-(x - m[:, None]) / b[:, None]))
    want = np.arange(1, 2 * a + 1) + (65536 - 2 * a - 1) * lap
    assert np.abs(got[:, 1:-1] - want).max() < 2


@pytest.mark.parametrize("case", range(len(NETS)))
def test_payload_bytes_match_the_reference(case):
    rng = np.random.default_rng(case)
    ctx, hidden, scale, ls_bias = NETS[case]
    net = random_net(rng, ctx, hidden, scale, ls_bias)
    a = 20
    levels = random_levels(rng, [(24, 32), (0, 3), (12, 16), (1, 1), (6, 8)], a)
    assert arm_encode(levels, net, a) == ref_payload(levels, net, a)


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("a", [0, 1, 7, 255, 4096])
def test_roundtrip(a):
    rng = np.random.default_rng(a + 1)
    net = random_net(rng, ls_bias=float(rng.integers(-4, 8)))
    shapes = [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3), (1, 1), (0, 0), (5, 0), (1, 33), (33, 1)]
    for kind in ("normal", "extremes", "zeros", "uniform"):
        if kind == "normal":
            levels = random_levels(rng, shapes, a)
        elif kind == "extremes":
            levels = [(a * rng.choice([-1, 1], s)).astype(np.int32) for s in shapes]
        elif kind == "zeros":
            levels = [np.zeros(s, np.int32) for s in shapes]
        else:
            levels = [rng.integers(-a, a + 1, s).astype(np.int32) for s in shapes]
        data = arm_encode(levels, net, a)
        assert isinstance(data, bytes)
        assert arm_encode(levels, net, a, threads=3) == data
        for threads in (1, 4, 0):
            out = arm_decode(data, shapes, net, a, threads=threads)
            assert len(out) == len(shapes)
            for x, y in zip(out, levels):
                assert x.dtype == np.int32 and x.shape == y.shape
                np.testing.assert_array_equal(x, y)
        for buf in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
            np.testing.assert_array_equal(arm_decode(buf, shapes, net, a)[0], levels[0])


def test_no_levels_and_mapping_nets():
    net = random_net(np.random.default_rng(3))
    as_dict = {"context": net.context.tolist(), "weights": [w.tolist() for w in net.weights],
               "biases": [b.tolist() for b in net.biases]}
    assert arm_encode([], net, 5) == b""
    assert arm_decode(b"", [], as_dict, 5) == []
    levels = [np.arange(-4, 5, dtype=np.int64).reshape(3, 3)]
    data = arm_encode(levels, as_dict, 5)
    assert data == arm_encode([levels[0].astype(np.int16)], net, 5)
    np.testing.assert_array_equal(arm_decode(data, [(3, 3)], net, 5)[0], levels[0])


def test_rate_is_close_to_ideal():
    rng = np.random.default_rng(11)
    net = random_net(rng, ls_bias=1.0)
    shapes = [(64, 96), (32, 48), (16, 24)]
    levels = random_levels(rng, shapes, 63, spread=3.0)
    ideal = sum(p.bits() for p in arm_params(levels, net, 63)) / 8
    size = len(arm_encode(levels, net, 63))
    assert ideal <= size + 1 and size <= ideal * 1.002 + 6 * len(shapes)


def test_quantize():
    net = ArmNet.quantize([[0, -1]], [np.array([[0.5]]), np.array([[1.0], [-2.0]])],
                          [np.array([0.25]), np.array([1 / 2**20, -3.0])])
    assert net.weights[0].tolist() == [[2048]] and net.weights[1].tolist() == [[4096], [-8192]]
    assert net.biases[0].tolist() == [2**18] and net.biases[1].tolist() == [1, -3 * 2**20]
    with pytest.raises(ValueError):
        ArmNet.quantize([[0, -1]], [np.array([[2.0**20]])], [np.array([0.0])])


# ------------------------------------------------------------------------------ determinism
SCRIPT = """
import hashlib, numpy as np
from weightzip.core import ARM_CONTEXT_5X5, ArmNet, arm_encode, arm_params
rng = np.random.default_rng(2024)
ws = [rng.normal(0, 0.3, (16, 12)), rng.normal(0, 0.25, (16, 16)), rng.normal(0, 0.25, (2, 16))]
bs = [rng.normal(0, 0.1, 16), rng.normal(0, 0.1, 16), np.array([0.1, 0.5])]
net = ArmNet.quantize(np.array(ARM_CONTEXT_5X5), ws, bs)
levels = [np.clip(np.rint(rng.normal(0, 2, (64 >> i, 96 >> i))), -50, 50).astype(np.int32) for i in range(5)]
h = hashlib.sha256(arm_encode(levels, net, 50, threads=THREADS))
for p in arm_params(levels, net, 50):
    for x in p:
        h.update(x.tobytes())
print(h.hexdigest())
"""


def test_same_bytes_in_other_processes():
    digests = set()
    for simd, threads in (("none", 1), ("", 4)):
        env = {**os.environ, "WEIGHTZIP_SIMD": simd}
        r = subprocess.run([sys.executable, "-c", SCRIPT.replace("THREADS", str(threads))],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        digests.add(r.stdout.strip())
    ns: dict = {}
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(SCRIPT.replace("THREADS", "1"), ns)
    digests.add(buf.getvalue().strip())
    assert len(digests) == 1, digests


# ------------------------------------------------------------------------------ bad inputs
def test_bad_arguments():
    rng = np.random.default_rng(5)
    net = random_net(rng)
    level = np.zeros((4, 4), np.int32)
    with pytest.raises(TypeError):
        arm_encode([level.astype(np.float32)], net, 5)
    with pytest.raises(TypeError):
        arm_encode(level, net, 5)  # one array, not a list of levels
    with pytest.raises(ValueError):
        arm_encode([np.zeros((2, 2, 2), np.int32)], net, 5)
    with pytest.raises(ValueError):
        arm_encode([level + 6], net, 5)
    with pytest.raises(ValueError):
        arm_encode([level - 6], net, 5)
    with pytest.raises(ValueError):
        arm_encode([np.full((2, 2), 2**40)], net, 5)
    for bad in (-1, 4097):
        with pytest.raises(ValueError):
            arm_encode([level], net, bad)
        with pytest.raises(ValueError):
            arm_cdf([0], [0], bad)
    for bad in (1.5, True, "5"):
        with pytest.raises(TypeError):
            arm_encode([level], net, bad)
    with pytest.raises(ValueError):
        arm_encode([level], net, 5, threads=-1)
    with pytest.raises(TypeError):
        arm_encode([level], "net", 5)
    w, b = list(net.weights), list(net.biases)
    bad_nets = [
        ArmNet(np.array([[0, 0]]), (np.zeros((2, 1), int),), (np.zeros(2, int),)),  # not causal
        ArmNet(np.array([[1, -1]]), (np.zeros((2, 1), int),), (np.zeros(2, int),)),
        ArmNet(np.array([[-17, 0]]), (np.zeros((2, 1), int),), (np.zeros(2, int),)),  # too far
        ArmNet(np.zeros((0, 2), int), (np.zeros((2, 0), int),), (np.zeros(2, int),)),  # no context
        ArmNet(net.context, (w[0], w[0], w[2]), tuple(b)),  # 12 columns after a 16-unit layer
        ArmNet(net.context, tuple(w[:2]), tuple(b[:2])),  # 16 outputs at the end
        ArmNet(net.context, (), ()),
        ArmNet(net.context, (np.full((16, 12), 2**31 - 1), np.full((2, 16), 2**31 - 1)),
               (b[0], b[2])),  # overflow of the second layer's accumulation
    ]
    for bad in bad_nets:
        with pytest.raises(ValueError):
            arm_encode([level], bad, 5)
        with pytest.raises(ValueError):
            arm_params([level], bad, 5)
        with pytest.raises(ValueError):
            arm_decode(b"", [], bad, 5)
    with pytest.raises(ValueError):
        ArmNet(np.zeros((3, 3), int), tuple(w), tuple(b))
    with pytest.raises(ValueError):
        ArmNet(net.context, tuple(w), tuple(b[:2]))
    with pytest.raises(TypeError):
        ArmNet(net.context.astype(float), tuple(w), tuple(b))
    with pytest.raises(ValueError):  # rows of weights != biases
        arm_encode([level], ArmNet(net.context, (w[0][:3], w[1], w[2]), tuple(b)), 5)
    data = arm_encode([level], net, 5)
    with pytest.raises(TypeError):
        arm_decode(data.decode("latin-1"), [(4, 4)], net, 5)
    with pytest.raises(TypeError):
        arm_decode(np.zeros(4, np.int32), [(4, 4)], net, 5)
    with pytest.raises(ValueError):
        arm_decode(data, [(4, 4, 1)], net, 5)
    with pytest.raises(ValueError):
        arm_decode(data, [(-1, 4)], net, 5)
    with pytest.raises(ValueError):
        arm_decode(data, [(1 << 21, 1)], net, 5)
    with pytest.raises(ValueError):
        arm_decode(data, [(1 << 20, 1 << 20)], net, 5)  # too many latents, nothing allocated
    with pytest.raises(ValueError):
        arm_decode(data, [(1, 1)] * 65, net, 5)
    with pytest.raises(ValueError):
        arm_cdf([0, 1], [0], 5)


def test_corrupt_and_truncated_payloads():
    rng = np.random.default_rng(9)
    net = random_net(rng, ls_bias=1.0)
    shapes = [(16, 16), (8, 8), (4, 4)]
    levels = random_levels(rng, shapes, 15)
    data = arm_encode(levels, net, 15)
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            arm_decode(data[:cut], shapes, net, 15, threads=1 + cut % 3)
    with pytest.raises(FormatError):
        arm_decode(data + b"\0", shapes, net, 15)
    with pytest.raises(FormatError):
        arm_decode(b"\xff" * 20, shapes, net, 15)
    with pytest.raises(FormatError):
        arm_decode(b"\0", [], net, 15)
    with pytest.raises(FormatError):  # a stream for a level without latents
        arm_decode(data, [(0, 16), (8, 8), (4, 4)], net, 15)
    errors = 0
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= int(rng.integers(1, 256))
        try:
            out = arm_decode(bytes(bad), shapes, net, 15)
        except FormatError:
            errors += 1
        else:
            assert all(np.abs(x).max() <= 15 for x in out)
    assert errors > len(data) // 2
    for _ in range(100):  # random garbage: FormatError or some latents, never a crash
        junk = rng.integers(0, 256, int(rng.integers(0, 100)), dtype=np.uint8).tobytes()
        try:
            arm_decode(junk, shapes, net, 15)
        except FormatError:
            pass
