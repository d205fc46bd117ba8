"""weightzip.torch.compress_module (weightzip/torch_module.py): lossless modules give bit-identical
outputs and train like plain ones, lossy ones round mantissas exactly, and weights stay coded
between uses."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import weightzip.torch as wzt  # noqa: E402
from weightzip.torch_module import MANTISSA, round_mantissa  # noqa: E402

DTYPES = [torch.bfloat16, torch.float16, torch.float32]


def mlp(dtype, seed=0, width=128):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.GELU(), torch.nn.Linear(width, width),
                               torch.nn.LayerNorm(width), torch.nn.Linear(width, 32)).to(dtype)


def big_params(m):
    return [p for p in m.parameters() if p.numel() >= 4096]


@pytest.mark.parametrize("dtype", DTYPES)
def test_lossless_outputs_are_bit_identical_and_weights_stay_coded(dtype):
    m = mlp(dtype)
    x = torch.randn(16, 64, dtype=dtype)
    with torch.no_grad():
        ref = m(x)
    plain = sum(p.numel() * p.element_size() for p in big_params(m))
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    wzt.compress_module(m)
    assert all(p.numel() == 0 for p in big_params(m)) or not big_params(m)
    with torch.no_grad():
        y = m(x)
    assert torch.equal(y.view(torch.uint8), ref.view(torch.uint8))
    assert sum(p.numel() for n, p in m.named_parameters() if n.endswith("weight") and "3." not in n) == 0
    assert wzt.coded_bytes(m) < plain
    got = m.state_dict()
    assert list(got) == list(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    wzt.decompress_module(m)
    assert not any(hasattr(mod, "_wz_coded") for mod in m.modules())
    with torch.no_grad():
        assert torch.equal(m(x), ref)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_training_matches_the_plain_module_bit_for_bit(dtype):
    a, b = mlp(dtype), mlp(dtype)
    wzt.compress_module(b)
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-2)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(8, 64, generator=g).to(dtype)
        for m, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            m(x).float().pow(2).mean().backward()
            opt.step()
        wzt.recompress_module(b)
        assert all(p.numel() == 0 for p in big_params(b))
    wzt.decompress_module(b)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), n


def test_transformer_layers_decode_as_a_whole():
    """nn.MultiheadAttention reads out_proj.weight itself: the layer is the unit that decodes."""
    torch.manual_seed(0)
    enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0),
                                      2).to(torch.bfloat16).eval()
    x = torch.randn(2, 5, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        ref = enc(x)
    wzt.compress_module(enc)
    units = [m for m in enc.modules() if hasattr(m, "_wz_coded")]
    assert units == list(enc.layers)
    with torch.no_grad():
        assert torch.equal(enc(x), ref)


def test_tied_parameters_are_coded_once_and_stay_tied():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(256, 64)
    head = torch.nn.Linear(64, 256, bias=False)
    head.weight = emb.weight
    m = torch.nn.ModuleDict({"emb": emb, "head": head})
    wzt.compress_module(m)
    assert wzt.coded_bytes(m) < 256 * 64 * 4
    ids = torch.arange(10)
    with torch.no_grad():
        y = m["head"](m["emb"](ids))
    wzt.decompress_module(m)
    assert m["head"].weight is m["emb"].weight
    with torch.no_grad():
        assert torch.equal(m["head"](m["emb"](ids)), y)


def test_lossy_rounds_and_shrinks():
    m = mlp(torch.bfloat16, width=256)
    x = torch.randn(32, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        ref = m(x).float()
    plain = sum(p.numel() * 2 for p in big_params(m))
    wzt.compress_module(m, mantissa_bits=3)
    assert wzt.coded_bytes(m) < 0.45 * plain
    with torch.no_grad():
        y = m(x).float()
    assert 0 < ((y - ref).norm() / ref.norm()).item() < 0.1
    with pytest.raises(ValueError, match="already"):
        wzt.compress_module(m)


def _reference_round(bits_u: np.ndarray, m: int, k: int, width: int) -> np.ndarray:
    """RNE of the mantissa to k bits, by integers; Inf/NaN kept; a carry into the all-ones
    exponent truncates instead."""
    drop = m - k
    exp_mask = ((1 << (width - 1 - m)) - 1) << m
    out = []
    for x in bits_u.tolist():
        if x & exp_mask == exp_mask or drop == 0:
            out.append(x)
            continue
        q, r = divmod(x, 1 << drop)
        half = 1 << (drop - 1)
        q += 1 if r > half or (r == half and q & 1) else 0
        y = q << drop
        out.append(x >> drop << drop if y & exp_mask == exp_mask else y)
    return np.array(out, dtype=np.uint64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [0, 3])
def test_round_mantissa_against_integer_reference(dtype, k):
    width = torch.finfo(dtype).bits
    rng = np.random.default_rng(k)
    if width == 16:
        bits = np.arange(1 << 16, dtype=np.uint64)[:: 7 if dtype == torch.float16 else 1]  # every BF16 pattern
    else:
        bits = np.concatenate([rng.integers(0, 1 << 32, 20000, dtype=np.uint64),
                               np.array([0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0x7FC00001, 0x80000000, 1, 0x007FFFFF],
                                        dtype=np.uint64)])
    t = torch.from_numpy(bits.astype({16: np.uint16, 32: np.uint32}[width]).view({16: np.int16, 32: np.int32}[width]))
    got = round_mantissa(t.view(dtype), k).view({16: torch.int16, 32: torch.int32}[width]).numpy()
    got = got.view({16: np.uint16, 32: np.uint32}[width]).astype(np.uint64)
    want = _reference_round(bits, MANTISSA[dtype], k, width)
    assert np.array_equal(got, want)


def test_cuda_module_outputs_are_bit_identical():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    m = mlp(torch.bfloat16).cuda()
    x = torch.randn(16, 64, dtype=torch.bfloat16, device="cuda")
    with torch.no_grad():
        ref = m(x)
    wzt.compress_module(m)
    with torch.no_grad():
        assert torch.equal(m(x), ref)
    assert all(p.numel() == 0 and p.is_cuda for p in big_params(m))
