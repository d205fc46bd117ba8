"""Rate-distortion utilities: Bjøntegaard deltas, published anchor curves and RD plots.

``bd_rate`` / ``bd_psnr`` follow the usual Bjøntegaard scripts (VCEG-M33, as in CompressAI's
``compressai.utils.bench`` / the ``bjontegaard`` notebooks): a cubic polynomial fitted to
log(rate) as a function of PSNR (resp. PSNR of log(rate)), integrated over the interval
where both curves overlap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

Curve = tuple[Sequence[float], Sequence[float]]  # (bpp, psnr)
MIN_POINTS = 4  # a cubic fit needs at least 4 points


def _prep(r: Sequence[float], d: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r_a, d_a = np.asarray(r, dtype=np.float64), np.asarray(d, dtype=np.float64)
    if r_a.shape != d_a.shape or r_a.ndim != 1:
        raise ValueError(f"rate and distortion must be 1-D of equal length, got {r_a.shape}, {d_a.shape}")
    # Non-finite points (a lossless setting has PSNR = inf) and non-positive rates cannot
    # enter a log-domain cubic fit; drop them rather than poisoning the fit.
    ok = np.isfinite(r_a) & np.isfinite(d_a) & (r_a > 0)
    r_a, d_a = r_a[ok], d_a[ok]
    if r_a.size < MIN_POINTS:
        raise ValueError(f"need >= {MIN_POINTS} finite RD points, got {r_a.size}")
    order = np.argsort(r_a, kind="stable")
    return r_a[order], d_a[order]


def _avg_diff(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> float:
    """Mean of (fit2 - fit1) over the overlap of the x ranges, y fitted as a cubic in x."""
    lo, hi = max(x1.min(), x2.min()), min(x1.max(), x2.max())
    if not hi > lo:
        return math.nan
    p1, p2 = np.polyint(np.polyfit(x1, y1, 3)), np.polyint(np.polyfit(x2, y2, 3))
    int1 = np.polyval(p1, hi) - np.polyval(p1, lo)
    int2 = np.polyval(p2, hi) - np.polyval(p2, lo)
    return float((int2 - int1) / (hi - lo))


def bd_rate(r1: Sequence[float], d1: Sequence[float], r2: Sequence[float], d2: Sequence[float]) -> float:
    """Bjøntegaard delta rate of curve 2 against reference curve 1, in percent.

    Negative means curve 2 needs fewer bits for the same PSNR.  ``nan`` when the PSNR
    ranges do not overlap; ``ValueError`` with fewer than 4 usable points on a curve.
    """
    r1_, d1_ = _prep(r1, d1)
    r2_, d2_ = _prep(r2, d2)
    diff = _avg_diff(d1_, np.log(r1_), d2_, np.log(r2_))
    return (math.exp(diff) - 1.0) * 100.0 if math.isfinite(diff) else math.nan


def bd_psnr(r1: Sequence[float], d1: Sequence[float], r2: Sequence[float], d2: Sequence[float]) -> float:
    """Bjøntegaard delta PSNR (dB) of curve 2 against reference curve 1 (positive = better).

    ``nan`` when the log-rate ranges do not overlap.
    """
    r1_, d1_ = _prep(r1, d1)
    r2_, d2_ = _prep(r2, d2)
    return _avg_diff(np.log(r1_), d1_, np.log(r2_), d2_)


def safe_bd(fn: Callable[..., float], ref: Curve, test: Curve) -> float:
    """``fn(ref..., test...)`` with ``nan`` instead of an error for too-short curves."""
    try:
        return fn(ref[0], ref[1], test[0], test[1])
    except ValueError:
        return math.nan


def load_anchor_curves(path: str | Path) -> dict[str, tuple[list[float], list[float]]]:
    """Published RD curves from a JSON file like ../shared/anchors/kodak_rd.json.

    Format: ``{"curves": {name: {"bpp": [...], "psnr_rgb": [...], ...}}}`` (a bare
    ``{name: {...}}`` mapping is accepted too).  ``psnr`` is accepted in place of
    ``psnr_rgb``; extra keys are ignored; curves without a rate or PSNR list, with
    mismatched lengths or with non-numeric entries are skipped.  Points are sorted by bpp.
    A missing file gives ``{}``.
    """
    p = Path(path)
    if not p.is_file():
        return {}
    doc = json.loads(p.read_text())
    curves = doc.get("curves", doc) if isinstance(doc, dict) else {}
    out: dict[str, tuple[list[float], list[float]]] = {}
    for name, c in curves.items():
        if not isinstance(c, dict):
            continue
        bpp = c.get("bpp")
        ps = c.get("psnr_rgb", c.get("psnr"))
        if not isinstance(bpp, list) or not isinstance(ps, list) or len(bpp) != len(ps) or not bpp:
            continue
        try:
            pts = sorted((float(b), float(q)) for b, q in zip(bpp, ps) if b is not None and q is not None)
        except (TypeError, ValueError):
            continue
        if pts:
            out[str(name)] = ([b for b, _ in pts], [q for _, q in pts])
    return out


def plot_rd(curves: Mapping[str, Curve], path: str | Path, title: str,
            published: Mapping[str, Curve] | None = None, anchors: Mapping[str, Curve] | None = None,
            xlim: tuple[float, float] = (0.0, 2.0)) -> Path:
    """Write an RD plot (PSNR-RGB vs bpp) as PNG.

    ``curves``: our codecs (solid, markers); ``anchors``: same-run classical codecs
    (dashed); ``published``: literature curves (thin, faded, small legend entries).
    The y range follows the points that fall inside ``xlim``.
    """
    import matplotlib
    matplotlib.use("Agg")  # headless; harmless if already selected
    import matplotlib.pyplot as plt

    # fixed axes box on the left, the (long) legend to its right
    fig = plt.figure(figsize=(16, 8), dpi=100)
    ax = fig.add_axes((0.05, 0.08, 0.52, 0.86))
    ys: list[float] = []

    def draw(group: Mapping[str, Curve] | None, **style: object) -> None:
        for name, (r, d) in (group or {}).items():
            pts = sorted((float(a), float(b)) for a, b in zip(r, d) if np.isfinite(a) and np.isfinite(b))
            if not pts:
                continue
            x, y = zip(*pts)
            ax.plot(x, y, label=name, **style)
            ys.extend(v for u, v in pts if xlim[0] <= u <= xlim[1])

    if published:
        cmap = plt.get_cmap("tab20")
        for i, (name, c) in enumerate(published.items()):
            draw({name: c}, lw=0.8, alpha=0.45, color=cmap(i % 20), marker=".", ms=2)
    for i, (name, c) in enumerate((anchors or {}).items()):
        draw({name: c}, lw=1.6, ls="--", marker="x", ms=4, color=f"C{i % 3}")
    strong = ["C3", "black", "C4", "C6", "C5", "C8", "C9"]  # distinct from the anchors' C0-C2
    for i, (name, c) in enumerate(curves.items()):
        draw({name: c}, lw=2.2, marker="o", ms=5, color=strong[i % len(strong)], zorder=5)

    ax.set_xlim(*xlim)
    if ys:
        ax.set_ylim(math.floor(min(ys)) - 0.5, math.ceil(max(ys)) + 0.5)
    ax.set_xlabel("bits per pixel (bpp)")
    ax.set_ylabel("PSNR-RGB (dB)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.35)
    n = len(ax.get_lines())
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7 if n > 12 else 9,
              ncol=2 if n > 30 else 1, frameon=False)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", bbox_inches="tight")  # keep the outside legend
    plt.close(fig)
    return out
