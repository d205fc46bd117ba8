"""The coolchic kind: an overfitted image codec (Cool-chic / C3 style). Encoding fits a latent
pyramid and three tiny networks to the one image (fit.py, torch); the .nc file holds all of
them, so a codec folder has no weights (codec.json only: λ per quality, the architecture,
the presets). Decoding needs numpy and the C++ core only (decoder.py).

Encode options: quality (index into codec.json's λ list, loss λ·255²·MSE + bpp as in the image
kind), preset (fast / medium / slow: the fitting iterations of codec.json's presets) and
time_budget in **minutes** (like `neurocodec train --time-budget`; a float, so 0.5 is 30 s):
fitting stops, quantises and writes the file when either bound is reached.

This module is the kind class (no torch): options, routing, `info`, file I/O. Images are
routed here only when asked for (`--codec coolchic`): accepts() scores every image input
below the image kind, which stays the default.
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

from neurocodec.runtime.bitstream import NcFile
from neurocodec.runtime.codec import Option, int_list
from neurocodec.runtime.coolchic.format import CoolChicNcError, Header
from neurocodec.runtime.image.codec import ImageCodec
from neurocodec.runtime.image.io import IMAGE_SUFFIXES
from neurocodec.runtime.image.limits import check_quality, header_problem
from weightzip.clitools import nonneg_int, positive_float

PRESETS = ("fast", "medium", "slow")


class CoolChicCodec(ImageCodec):
    """Images (uint8 arrays [H, W] or [H, W, C], or image files) -> .nc, each fitted on its own;
    decoded to uint8 arrays and lossless image files (PNG by default). An image codec: the
    image kind's file I/O and output checks, its own options, routing and description."""

    kind = "coolchic"
    implementation = "neurocodec.runtime.coolchic.loaded:FittedCoolChicCodec"
    tools = "neurocodec.tools.coolchic.commands"  # evaluation; an overfitted codec has no training
    archs = ("coolchic",)
    input_suffixes = tuple(sorted(IMAGE_SUFFIXES))
    output_suffix = ".png"
    input_hint = "a uint8 image array or an image file (fitted per image: --codec coolchic)"
    format_error = CoolChicNcError
    options = {
        "encode": (Option("quality", nonneg_int, "image: quality index (see `neurocodec list`)"),
                   Option("preset", str, "coolchic: fast, medium or slow (bounds the fitting iterations)"),
                   Option("time_budget", positive_float, "coolchic: minutes of fitting at most (a float)")),
        "eval": (Option("qualities", int_list, "image: comma-separated subset of the qualities"),
                 Option("preset", str, "coolchic: fast, medium or slow"),
                 Option("time_budget", positive_float, "coolchic: minutes of fitting per image at most")),
    }

    # -- class level ------------------------------------------------------------------
    @classmethod
    def accepts(cls, data: Any, opts: dict[str, Any]) -> int:
        """1 for whatever the image kind takes (never above it: ties go to the kind listed
        first in the registry, and the image kind scores 2 for image files)."""
        return min(1, ImageCodec.accepts(data, opts))

    @classmethod
    def describe(cls, nc: NcFile, meta: dict, nbytes: int) -> dict:
        out = super().describe(nc, meta, nbytes)
        if len(nc.shape) != 3 or len(nc.streams) != 3 or header_problem(*nc.shape, 0, [0]):
            raise CoolChicNcError("corrupt .nc file (unexpected header for a coolchic codec)")
        h, w, channels = nc.shape
        hd = Header.from_bytes(nc.streams[0], channels)
        macs = hd.macs(h, w)
        out.update(kind="coolchic", bpp=8 * nbytes / (h * w), levels=hd.levels, latent_alphabet=hd.alphabet,
                   decoder_params=hd.n_params(), parameter_bytes=len(nc.streams[1]), latent_bytes=len(nc.streams[2]),
                   mac_per_pixel=round(macs["total"], 1),
                   mac_per_pixel_parts={k: round(v, 1) for k, v in macs.items() if k != "total"},
                   steps={"arm": hd.k_arm, "upsampler": hd.k_up, "synthesis": hd.k_syn})
        return out

    @classmethod
    def encoded_summary(cls, info: dict) -> str:
        return (f"{info['bytes']} bytes, {info.get('bpp', 0):.4f} bpp, decoder {info.get('decoder_params')} "
                f"parameters, {info.get('mac_per_pixel')} MAC/px")

    @classmethod
    def summary(cls, meta: dict) -> str:
        q = len(meta.get("model", {}).get("lmbdas", []))
        presets = ", ".join(f"{k} {v.get('iterations')} it" for k, v in meta.get("presets", {}).items())
        return (f"qualities 0..{q - 1}" if q else "qualities ?") + (f"; presets {presets}" if presets else "")

    # -- a codec's settings (codec.json) ------------------------------------------------
    @classmethod
    def load(cls, path: Path, meta: dict) -> CoolChicCodec:
        """No weights: codec.json is the whole codec (checked here)."""
        model, presets = meta.get("model"), meta.get("presets")
        ok = isinstance(model, dict) and isinstance(model.get("lmbdas"), list) and model["lmbdas"] and \
            all(isinstance(v, (int, float)) and v > 0 for v in model["lmbdas"]) and \
            isinstance(presets, dict) and set(presets) == set(PRESETS) and \
            all(isinstance(p, dict) and isinstance(p.get("iterations"), int) and p["iterations"] > 0
                for p in presets.values())
        if not ok:
            raise ValueError(f"codec {meta['name']!r}: codec.json needs model.lmbdas (positive numbers) and "
                             f"presets {', '.join(PRESETS)} with whole iteration counts")
        return cls(meta)

    def check_encode_args(self, quality: int | None = None, preset: str | None = None,  # type: ignore[override]
                          time_budget: float | None = None) -> tuple[int, str, float | None]:  # its own options
        """-> (quality, preset, time budget in seconds or None), or ValueError: before any work."""
        q = check_quality(quality, self.qualities, self.default_quality, self.name)
        preset = self.meta.get("default_preset", "medium") if preset is None else preset
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if time_budget is not None:
            if isinstance(time_budget, bool) or not isinstance(time_budget, numbers.Real) or \
                    not 0 < time_budget < float("inf"):
                raise ValueError(f"time_budget must be a positive number of minutes, got {time_budget!r}")
            return q, preset, 60.0 * float(time_budget)
        return q, preset, None
