"""Fast tests of the image evaluation side: metrics, Pillow anchors, BD-rate, evaluate()."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from neurocodec.tools.image import anchors as anc
from neurocodec.tools.image.metrics import ms_ssim, psnr
from neurocodec.tools.rd import bd_psnr, bd_rate, load_anchor_curves, plot_rd

KODAK_RD = Path(__file__).resolve().parents[3] / "shared" / "anchors" / "kodak_rd.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A plausible RD curve (bpp, PSNR) shaped like a learned codec on Kodak.
R = [0.12, 0.2, 0.31, 0.47, 0.68, 0.95]
D = [27.5, 29.2, 31.0, 32.9, 34.8, 36.6]


def _smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """Gradients + texture + mild noise: compressible but not trivial."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([128 + 80 * np.sin(x / (9 + seed)) * np.cos(y / 13),
                     100 + 0.5 * x + 40 * np.sin((x + y) / 7),
                     60 + 0.6 * y + 30 * np.cos(x / 5)], axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- BD metrics

def test_bd_rate_self_is_zero() -> None:
    assert bd_rate(R, D, R, D) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(R, D, R, D) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_scaled_rates() -> None:
    r2 = [0.8 * r for r in R]
    assert bd_rate(R, D, r2, D) == pytest.approx(-20.0, abs=0.5)
    assert bd_rate(r2, D, R, D) == pytest.approx(25.0, abs=0.5)  # inverse direction
    # input order must not matter (points are sorted)
    assert bd_rate(R[::-1], D[::-1], r2[::-1], D[::-1]) == pytest.approx(-20.0, abs=0.5)


def test_bd_psnr_shift() -> None:
    assert bd_psnr(R, D, R, [d + 1.0 for d in D]) == pytest.approx(1.0, abs=1e-6)
    assert bd_rate(R, D, R, [d + 1.0 for d in D]) < 0


def test_bd_no_overlap_and_too_few_points() -> None:
    assert math.isnan(bd_rate(R, D, R, [d + 50 for d in D]))
    assert math.isnan(bd_psnr(R, D, [r * 100 for r in R], D))
    with pytest.raises(ValueError):
        bd_rate(R[:3], D[:3], R, D)


# --------------------------------------------------------------------------- metrics

def test_psnr() -> None:
    a = _smooth_image(32, 40, 0)
    assert psnr(a, a) == math.inf
    b = a.astype(np.int16)
    b[0, 0, 0] += 10 if b[0, 0, 0] < 200 else -10
    b[5, 7, 2] += 3 if b[5, 7, 2] < 200 else -3
    mse = (10**2 + 3**2) / a.size
    assert psnr(a, b.astype(np.uint8)) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)


def test_ms_ssim_identity_and_noise() -> None:
    a = _smooth_image(192, 200, 1)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    vals = [ms_ssim(a, np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8)) for s in (2, 8, 25)]
    assert 1.0 > vals[0] > vals[1] > vals[2] > 0
    with pytest.raises(ValueError):
        ms_ssim(a[:100], a[:100])


def test_ms_ssim_matches_pytorch_msssim() -> None:
    ref = pytest.importorskip("pytorch_msssim")
    import torch

    a = _smooth_image(199, 230, 2)  # odd side: exercises the pooling padding
    rng = np.random.default_rng(1)
    b = np.clip(a + rng.normal(0, 10, a.shape), 0, 255).astype(np.uint8)
    t = lambda v: torch.from_numpy(v).permute(2, 0, 1)[None].float()
    expected = float(ref.ms_ssim(t(a), t(b), data_range=255))
    assert ms_ssim(a, b) == pytest.approx(expected, abs=1e-4)


# --------------------------------------------------------------------------- Pillow anchors

@pytest.mark.parametrize("fmt", anc.FORMATS)
def test_pillow_codec_roundtrip(fmt: str) -> None:
    if not anc.available(fmt):
        pytest.skip(f"Pillow built without {fmt}")
    img = _smooth_image(64, 96, 3)
    sizes = []
    for q in (90, 50, 10):
        data, rec = anc.pillow_codec(img, fmt, q)
        assert isinstance(data, bytes) and rec.shape == img.shape and rec.dtype == np.uint8
        sizes.append(len(data))
    assert sizes[0] > sizes[1] > sizes[2]
    assert sorted(anc.ANCHOR_QUALITIES[fmt]) == anc.ANCHOR_QUALITIES[fmt]


# --------------------------------------------------------------------------- published curves

def test_load_anchor_curves_missing(tmp_path: Path) -> None:
    assert load_anchor_curves(tmp_path / "nope.json") == {}


def test_load_anchor_curves_tolerant(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"curves": {
        "ok": {"bpp": [0.5, 0.1], "psnr_rgb": [33, 27], "ms_ssim": [0.9, 0.8]},
        "alt_key": {"bpp": [0.1, 0.2], "psnr": [27, 29]},
        "no_psnr": {"bpp": [0.1]}, "ragged": {"bpp": [0.1, 0.2], "psnr_rgb": [27]}, "junk": 3}}))
    c = load_anchor_curves(p)
    assert set(c) == {"ok", "alt_key"}
    assert c["ok"] == ([0.1, 0.5], [27.0, 33.0])


def test_load_anchor_curves_real_file() -> None:
    if not KODAK_RD.is_file():
        pytest.skip("../shared/anchors/kodak_rd.json not present")
    c = load_anchor_curves(KODAK_RD)
    assert len(c) >= 10
    for bpp, ps in c.values():
        assert len(bpp) == len(ps) > 0 and bpp == sorted(bpp)
        assert all(0 < b < 10 for b in bpp) and all(15 < p < 60 for p in ps)


def test_plot_rd(tmp_path: Path) -> None:
    out = plot_rd({"mine": (R, D)}, tmp_path / "rd.png", "t", published={"pub": (R, [d - 1 for d in D])},
                  anchors={"JPEG": ([r * 1.5 for r in R], D)})
    assert out.read_bytes()[:8] == PNG_MAGIC


# --------------------------------------------------------------------------- evaluate()

def _fake_backend(calls: list[str]) -> types.SimpleNamespace:
    """neurocodec.api stand-in: the 'codec' is Pillow JPEG at the given quality."""
    from PIL import Image

    def encode(img: np.ndarray, codec: str, quality: int) -> bytes:
        calls.append(codec)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        return buf.getvalue()

    def decode(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def load_codec(codec: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(qualities=list(anc.ANCHOR_QUALITIES["jpeg"]))

    return types.SimpleNamespace(encode=encode, decode=decode, load_codec=load_codec)


def _write_images(d: Path) -> None:
    from PIL import Image

    d.mkdir()
    Image.fromarray(_smooth_image(176, 184, 4)).save(d / "a.png")
    Image.fromarray(_smooth_image(168, 176, 5)).save(d / "b.png")
    (d / "notes.txt").write_text("not an image")


def test_evaluate_fake_backend(tmp_path: Path) -> None:
    from neurocodec.tools.image.evaluate import CSV_COLUMNS, evaluate

    _write_images(tmp_path / "imgs")
    pub = tmp_path / "pub.json"
    pub.write_text(json.dumps({"curves": {"pub-curve": {"bpp": [0.5, 1, 2, 3, 4], "psnr_rgb": [25, 28, 31, 34, 37]}}}))
    calls: list[str] = []
    kept: dict = {}
    evaluate("fakejpeg", tmp_path / "imgs", tmp_path / "out", anchors=True, anchors_json=str(pub),
             progress=False, backend=_fake_backend(calls), keep_bitstreams=kept)
    out = tmp_path / "out"
    assert (out / "rd.png").read_bytes()[:8] == PNG_MAGIC
    with open(out / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0]) == CSV_COLUMNS
    fmts = [f for f in anc.FORMATS if anc.available(f)]
    nq = len(anc.ANCHOR_QUALITIES["jpeg"])
    assert len(rows) == 2 * (nq + sum(len(anc.ANCHOR_QUALITIES[f]) for f in fmts))
    assert set(calls) == {"fakejpeg"} and len(kept) == 2 * nq
    saved = json.loads((out / "results.json").read_text())
    cur = saved["curves"]["fakejpeg"]
    assert cur["quality"] == anc.ANCHOR_QUALITIES["jpeg"] and cur["bpp"] == sorted(cur["bpp"])
    assert all(0 < m <= 1 for m in cur["ms_ssim"])
    same = saved["bd_rate_pct"]["same_run"]
    assert set(same) == set(fmts)
    assert all(v is not None and math.isfinite(v) for v in same.values())
    # the fake codec *is* Pillow JPEG at the anchor's qualities: identical curves
    assert saved["curves"]["jpeg"]["bpp"] == cur["bpp"] and abs(same["jpeg"]) < 1e-6
    assert set(saved["bd_rate_pct"]["published"]) == {"pub-curve"}
    assert saved["meta"]["machine"]["cpu_count"] and saved["meta"]["versions"]["pillow"]


def test_evaluate_uses_neurocodec_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neurocodec
    from neurocodec.tools.image.evaluate import evaluate

    fake = types.ModuleType("neurocodec.api")
    calls: list[str] = []
    for k, v in vars(_fake_backend(calls)).items():
        setattr(fake, k, v)
    monkeypatch.setitem(sys.modules, "neurocodec.api", fake)
    monkeypatch.setattr(neurocodec, "api", fake, raising=False)
    _write_images(tmp_path / "imgs")
    res = evaluate("x", tmp_path / "imgs", tmp_path / "out", qualities=[20, 80], anchors=False,
                   anchors_json=None, limit=1, progress=False)
    assert calls and res["images"] == ["a.png"] and res["curves"]["x"]["quality"] == [20, 80]
    assert math.isfinite(res["curves"]["x"]["psnr"][0])
