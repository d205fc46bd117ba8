"""Rate-distortion evaluation of an image codec on a folder of images (e.g. Kodak).

``evaluate()`` runs a codec through the public API (``neurocodec.api.encode/decode``: whole
.nc files, so bpp includes every header byte), the Pillow anchors on the same images in the
same process, and writes per-image numbers, mean curves with BD-rates, and an RD plot.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurocodec.tools.image.anchors import (
    ANCHOR_QUALITIES,
    FORMATS,
    available,
    pillow_decode,
    pillow_encode,
)
from neurocodec.tools.image.metrics import ms_ssim, psnr
from neurocodec.tools.paths import display_command, display_path
from neurocodec.tools.rd import bd_psnr, bd_rate, load_anchor_curves, plot_rd, safe_bd

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
CSV_COLUMNS = ["codec", "quality", "image", "bpp", "psnr", "ms_ssim", "enc_ms", "dec_ms"]
REPO_ROOT = Path(__file__).resolve().parents[3]
ANCHORS_JSON_NAME = "kodak_rd.json"
AUTO = "auto"

# Pillow anchor rows of this process, keyed by (fmt, quality, image name, image digest): a
# benchmark evaluating several codecs measures each anchor point once.
_ANCHOR_CACHE: dict[tuple[str, int, str, str], dict[str, Any]] = {}


def find_anchors_json() -> Path | None:
    """Published curves file: $NEUROCODEC_ANCHORS_JSON, else ../shared/anchors/kodak_rd.json
    next to the repository or the working directory."""
    env = os.environ.get("NEUROCODEC_ANCHORS_JSON")
    cands = [Path(env)] if env else []
    cands += [REPO_ROOT.parent / "shared" / "anchors" / ANCHORS_JSON_NAME,
              Path.cwd().parent / "shared" / "anchors" / ANCHORS_JSON_NAME]
    return next((p for p in cands if p.is_file()), None)


def load_images(data_dir: str | Path, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(file name, uint8 HxWx3 array) for every PNG/JPEG/WebP in ``data_dir``, sorted by name."""
    from PIL import Image

    files = sorted(p for p in Path(data_dir).iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if limit is not None:
        files = files[:limit]
    if not files:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_EXTS)} images in {data_dir}")
    out = []
    for p in files:
        with Image.open(p) as im:
            out.append((p.name, np.asarray(im.convert("RGB"))))
    return out


def measure(img: np.ndarray, encode: Callable[[np.ndarray], bytes],
            decode: Callable[[bytes], np.ndarray]) -> tuple[dict[str, float], bytes]:
    """Encode + decode one image; returns (metrics row, bitstream)."""
    t0 = time.perf_counter()
    data = bytes(encode(img))
    t1 = time.perf_counter()
    rec = np.asarray(decode(data))
    t2 = time.perf_counter()
    if rec.shape != img.shape or rec.dtype != np.uint8:
        raise ValueError(f"decoder returned {rec.dtype} {rec.shape}, expected uint8 {img.shape}")
    try:
        ms = ms_ssim(img, rec)
    except ValueError:  # image too small for 5 scales
        ms = math.nan
    h, w = img.shape[:2]
    row = {"bpp": 8.0 * len(data) / (h * w), "psnr": psnr(img, rec), "ms_ssim": ms,
           "enc_ms": 1e3 * (t1 - t0), "dec_ms": 1e3 * (t2 - t1)}
    return row, data


def mean_curves(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per codec, per quality (ascending): means over images of bpp, PSNR, MS-SSIM and times.

    PSNR is the mean of per-image PSNR (the convention of the published Kodak curves).
    """
    groups: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for r in rows:
        groups.setdefault(r["codec"], {}).setdefault(int(r["quality"]), []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for codec, by_q in groups.items():
        qs = sorted(by_q)
        cur: dict[str, Any] = {"quality": qs, "n_images": [len(by_q[q]) for q in qs]}
        for k in ("bpp", "psnr", "ms_ssim", "enc_ms", "dec_ms"):
            cur[k] = [float(np.mean([r[k] for r in by_q[q]])) for q in qs]
        out[codec] = cur
    return out


def _git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True, check=False).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_metadata() -> dict[str, Any]:
    """Provenance of a run: git sha, command line, machine, library versions, date."""
    import PIL
    import torch

    return {
        "git_sha": _git_sha(),
        "command": display_command([sys.executable, *sys.argv]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads()},
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "torch": torch.__version__, "pillow": PIL.__version__},
    }


def json_safe(x: Any) -> Any:
    """nan/inf -> None so results.json stays strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def _digest(img: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(img).tobytes() + str(img.shape).encode()).hexdigest()


def _anchor_fmts(anchors: bool | Sequence[str]) -> list[str]:
    if anchors is True:
        return list(FORMATS)
    return [] if not anchors else [str(f).lower() for f in anchors]  # type: ignore[union-attr]


def evaluate(codec: str, data_dir: str | Path, out_dir: str | Path, qualities: list[int] | None = None,
             anchors: bool | Sequence[str] = True, anchors_json: str | Path | None = AUTO,
             limit: int | None = None, progress: bool = True, backend: Any = None,
             keep_bitstreams: dict[tuple[int, str], bytes] | None = None) -> dict[str, Any]:
    """Evaluate ``codec`` on the images of ``data_dir``; write CSV, JSON and PNG to ``out_dir``.

    ``backend``: an object with ``encode(img, codec=, quality=) -> bytes``,
    ``decode(bytes) -> uint8 HxWxC`` and ``load_codec(codec).qualities``; None means
    ``neurocodec.api``.  ``anchors``: True for JPEG/WebP/AVIF (those Pillow supports), or a
    list of formats, or False.  ``anchors_json``: published curves ("auto" looks for
    ../shared/anchors/kodak_rd.json; None skips them).  ``keep_bitstreams``: if a dict,
    receives ``{(quality, image name): bitstream}`` of the codec.  Returns the content of
    results.json (with nan where the file has null; paths as ``neurocodec.tools.paths.display_path``
    records them) plus ``files`` (the paths written, as given).
    """
    from tqdm import tqdm

    if backend is None:
        # lazy: the API module is optional at import time
        from neurocodec import api as backend
    if qualities is None:
        qs = backend.load_codec(codec).qualities
        qualities = list(range(qs)) if isinstance(qs, int) else [int(q) for q in qs]  # int: a count
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = load_images(data_dir, limit)
    fmts = _anchor_fmts(anchors)
    skipped = [f for f in fmts if f not in FORMATS or not available(f)]
    fmts = [f for f in fmts if f not in skipped]
    if codec in fmts:  # rows and curves are keyed by name
        raise ValueError(f"codec name {codec!r} collides with a Pillow anchor; pass anchors=False")
    digests = {name: _digest(img) for name, img in images} if fmts else {}

    total = len(images) * (len(qualities) + sum(len(ANCHOR_QUALITIES[f]) for f in fmts))
    rows: list[dict[str, Any]] = []
    with tqdm(total=total, desc=f"eval {codec}", unit="img", disable=not progress, leave=False) as bar:
        for q in qualities:
            for name, img in images:
                row, data = measure(img, lambda x, q=q: backend.encode(x, codec=codec, quality=q), backend.decode)
                rows.append({"codec": codec, "quality": q, "image": name, **row})
                if keep_bitstreams is not None:
                    keep_bitstreams[(q, name)] = data
                bar.update()
        for f in fmts:
            for q in ANCHOR_QUALITIES[f]:
                for name, img in images:
                    key = (f, q, name, digests[name])
                    if key not in _ANCHOR_CACHE:
                        _ANCHOR_CACHE[key] = measure(img, lambda x, f=f, q=q: pillow_encode(x, f, q),
                                                     pillow_decode)[0]
                    rows.append({"codec": f, "quality": q, "image": name, **_ANCHOR_CACHE[key]})
                    bar.update()

    with open(out / "per_image.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows({k: r[k] for k in CSV_COLUMNS} for r in rows)

    curves = mean_curves(rows)
    mine = (curves[codec]["bpp"], curves[codec]["psnr"])
    json_path = find_anchors_json() if anchors_json == AUTO else anchors_json
    published = load_anchor_curves(json_path) if json_path is not None else {}
    same_run = {f: (curves[f]["bpp"], curves[f]["psnr"]) for f in fmts}
    bd = {
        "bd_rate_pct": {"same_run": {f: safe_bd(bd_rate, c, mine) for f, c in same_run.items()},
                        "published": {n: safe_bd(bd_rate, c, mine) for n, c in published.items()}},
        "bd_psnr_db": {"same_run": {f: safe_bd(bd_psnr, c, mine) for f, c in same_run.items()},
                       "published": {n: safe_bd(bd_psnr, c, mine) for n, c in published.items()}},
    }
    meta = run_metadata()
    pil_ver = meta["versions"]["pillow"]
    png = plot_rd({codec: mine}, out / "rd.png", f"{codec} on {Path(data_dir).name} ({len(images)} images)",
                  published=published,
                  anchors={f"{f.upper()} (Pillow {pil_ver}, same run)": c for f, c in same_run.items()})
    result: dict[str, Any] = {
        "codec": codec, "data_dir": display_path(data_dir), "images": [n for n, _ in images],
        "anchor_qualities": {f: ANCHOR_QUALITIES[f] for f in fmts}, "anchors_skipped": skipped,
        "anchors_json": None if json_path is None else display_path(json_path),
        "curves": curves, **bd, "meta": meta,
        "notes": "BD-rate: % rate change of this codec vs the reference curve at equal PSNR-RGB "
                 "(negative = fewer bits); null = no overlap / too few points.",
    }
    (out / "results.json").write_text(json.dumps(json_safe(result), indent=2) + "\n")
    result["files"] = {"per_image_csv": str(out / "per_image.csv"), "results_json": str(out / "results.json"),
                       "rd_png": str(png)}
    return result
