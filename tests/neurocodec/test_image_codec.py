"""Image codecs end to end, on a tiny randomly initialised codec exported to a temp folder
(fast, no shipped weights needed) and on the shipped codecs where they exist."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")


from neurocodec import api
from neurocodec.runtime.bitstream import NcFile, NcFormatError
from neurocodec.runtime.registry import CodecNotFound, list_codecs, load_codec

KODAK = Path(__file__).resolve().parents[3] / "shared" / "data" / "images" / "kodak"


def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients, edges and texture: something a codec treats like a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 80 * np.sin(xx / (7 + c) + yy / (11 + 2 * c)) for c in range(3)], axis=2)
    img[h // 3:, : w // 2] *= 0.5
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_codec(tiny_image_codec) -> Path:
    return Path(tiny_image_codec)


@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 33, 3), (64, 64, 3), (70, 100, 3), (40, 30), (33, 65, 4)])
def test_roundtrip_any_shape(tiny_codec, shape):
    img = natural_image(shape[0], shape[1])
    if len(shape) == 2:
        img = img[:, :, 0]
    elif shape[2] == 4:
        img = np.concatenate([img, np.full(shape[:2] + (1,), 200, np.uint8)], axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only a real alpha channel may warn
        if len(shape) == 3 and shape[2] == 4:
            warnings.filterwarnings("ignore", message=".*alpha channel dropped")
        data = api.encode(img, codec=str(tiny_codec), quality=1)
        again = api.encode(img, codec=str(tiny_codec), quality=1)
    out = api.decode(data, codec=str(tiny_codec))
    assert out.dtype == np.uint8
    assert out.shape == (shape[:2] if len(shape) == 2 else shape[:2] + (3,))  # alpha dropped
    nc = NcFile.from_bytes(data)
    assert nc.shape[:2] == shape[:2]
    assert len(data) - sum(map(len, nc.streams)) <= 32
    # Same input -> same bytes; different quality -> a different file.
    assert again == data


def test_quality_is_validated(tiny_codec):
    with pytest.raises(ValueError, match="quality"):
        api.encode(natural_image(8, 8), codec=str(tiny_codec), quality=7)


def test_bad_arrays(tiny_codec):
    for bad in (np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4), np.float32), np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(ValueError):
            api.encode(bad, codec=str(tiny_codec))


def test_corruption_is_detected(tiny_codec):
    data = api.encode(natural_image(48, 80), codec=str(tiny_codec), quality=2)
    rng = np.random.default_rng(1)
    for n in list(range(0, len(data), max(1, len(data) // 40))) + [len(data) - 1]:
        with pytest.raises(NcFormatError):
            api.decode(data[:n], codec=str(tiny_codec))
    for _ in range(200):
        b = bytearray(data)
        pos = int(rng.integers(len(b)))
        b[pos] ^= 1 << int(rng.integers(8))
        with pytest.raises((NcFormatError, CodecNotFound)):
            api.decode(bytes(b), codec=str(tiny_codec))


def test_newer_version_and_unknown_codec(tiny_codec):
    data = bytearray(api.encode(natural_image(16, 16), codec=str(tiny_codec)))
    newer = bytes(data[:3]) + bytes([9]) + bytes(data[4:])
    with pytest.raises(NcFormatError, match="newer"):
        api.decode(newer)
    unknown = NcFile.from_bytes(bytes(data))
    unknown.codec_id = 777
    with pytest.raises(CodecNotFound, match="777"):
        api.decode(unknown.to_bytes())
    with pytest.raises(NcFormatError, match="magic"):
        api.decode(b"\x89PNG\r\n\x1a\n" + bytes(40))


def test_int_hyper_matches_float_and_ignores_threads(tiny_codec):
    codec = load_codec(str(tiny_codec))
    z = torch.randn(1, 16, 5, 7) * 3
    z_sym = torch.round(z - codec.medians.view(1, -1, 1, 1))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = codec.int_hs(z_sym, codec.medians)
        torch.set_num_threads(2)
        b = codec.int_hs(z_sym, codec.medians)
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, torch.round(x)) for x in a)  # integers
    means, scales = codec.model.h_s(z_sym.float() + codec.medians.view(1, -1, 1, 1))
    for got, want in ((a[0], means), (a[1], scales)):
        err = (got / 256 - want).abs().max().item()
        assert err < 0.05 * max(want.abs().max().item(), 1e-3) + 0.01


DECODE_WORKER = textwrap.dedent("""
    import hashlib, sys, torch
    torch.set_num_threads(int(sys.argv[1]))
    import neurocodec
    codec = sys.argv[2] or None
    for p in sys.argv[3:]:
        img = neurocodec.decode(open(p, 'rb').read(), codec=codec)
        print(hashlib.sha256(img.tobytes()).hexdigest())
""")


def decode_in_subprocess(files: list[Path], threads: int, codec: str = "") -> list[str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", DECODE_WORKER, str(threads), codec, *map(str, files)],
                         capture_output=True, text=True, env=env, check=True, timeout=600)
    return out.stdout.split()


def test_decoding_is_deterministic_across_processes_and_threads(tiny_codec, tmp_path):
    files, here = [], []
    for i, (h, w) in enumerate([(64, 96), (100, 70), (130, 190)]):
        data = api.encode(natural_image(h, w, seed=i), codec=str(tiny_codec), quality=i % 3)
        p = tmp_path / f"{i}.nc"
        p.write_bytes(data)
        files.append(p)
        here.append(hashlib.sha256(api.decode(data, codec=str(tiny_codec)).tobytes()).hexdigest())
    assert decode_in_subprocess(files, 1, str(tiny_codec)) == here
    assert decode_in_subprocess(files, 2, str(tiny_codec)) == here


# ---- the shipped codecs -----------------------------------------------------------------

SHIPPED = [m for m in list_codecs() if m["kind"] == "image" and m["id"] < 900]


def test_shipped_codecs_are_registered():
    assert SHIPPED, "no image codec ships with this checkout"
    ids = [m["id"] for m in list_codecs()]
    assert len(ids) == len(set(ids))
    assert sum(bool(m.get("default")) for m in SHIPPED) == 1


@pytest.mark.parametrize("meta", SHIPPED, ids=lambda m: m["name"])
def test_shipped_codec_folder(meta):
    root = Path(meta["path"])
    for f in ("codec.json", "weights.wz", "MODEL_CARD.md", "results.json", "rd.png"):
        assert (root / f).is_file(), f
    assert sum(p.stat().st_size for p in root.iterdir()) <= 10 * 2**20
    assert (root / "weights.wz").read_bytes()[:8] == b"\x89WZP\r\n\x1a\n"
    assert (root / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((root / "results.json").read_text())
    assert len(results["curves"][meta["name"]]["bpp"]) >= 5


@pytest.mark.parametrize("meta", SHIPPED, ids=lambda m: m["name"])
def test_shipped_codec_rate_and_quality(meta):
    img = natural_image(128, 192)
    codec = load_codec(meta["name"])
    sizes, psnrs = [], []
    for q in codec.qualities:
        data = api.encode(img, codec=meta["name"], quality=q)
        rec = api.decode(data).astype(np.float64)
        sizes.append(len(data))
        psnrs.append(10 * np.log10(255**2 / np.mean((rec - img) ** 2)))
    assert sizes == sorted(sizes) and psnrs == sorted(psnrs)  # monotone rate-distortion
    assert psnrs[-1] - psnrs[0] > 3 and sizes[-1] > 3 * sizes[0]  # the qualities span a real range


def test_refinement_lowers_rd_cost():
    meta = next((m for m in SHIPPED if m.get("arch") == "shallow"), None)
    if meta is None:
        pytest.skip("no shallow codec shipped")
    codec = load_codec(meta["name"])
    img = natural_image(128, 128, seed=3)
    q = 2
    lmbda = codec.cfg.lmbdas[q]

    def cost(data):
        rec = api.decode(data).astype(np.float64)
        return lmbda * np.mean((rec - img) ** 2) + 8 * len(data) / img[:, :, 0].size

    base = cost(codec.encode(img, quality=q))
    refined = cost(codec.encode(img, quality=q, refine_steps=30))
    assert refined < base


@pytest.mark.data
def test_kodak_decodes_bit_exactly_across_threads(tmp_path):
    if not KODAK.is_dir():
        pytest.skip("shared Kodak data absent")
    from neurocodec.runtime.image.io import read_image

    files, here = [], []
    for i, meta in enumerate(SHIPPED):
        img = read_image(KODAK / f"kodim{i + 1:02d}.png")[0]
        data = api.encode(img, codec=meta["name"], quality=i % 6)
        files.append(tmp_path / f"{i}.nc")
        files[-1].write_bytes(data)
        here.append(hashlib.sha256(api.decode(data).tobytes()).hexdigest())
    assert decode_in_subprocess(files, 1) == here
    assert decode_in_subprocess(files, 2) == here
