"""The coolchic kind's tool commands. An overfitted codec has no training and no export (its
codec folder is codec.json alone, and encoding is the fitting), so train and export explain
that; evaluate is the image kind's evaluation (same metrics, anchors, plot and files) with
every image fitted at the preset and time budget asked for."""
from __future__ import annotations

import json
from typing import Any

import numpy as np


def train(arch: str, data: list[str], resume: bool = True, **opts: Any) -> Any:
    raise LookupError("coolchic has no training: encoding fits each image "
                      "(neurocodec encode IMG --codec coolchic --preset fast|medium|slow)")


def export(checkpoint: str, out: str, name: str, codec_id: int, default: bool = False, **opts: Any) -> Any:
    raise LookupError("coolchic has no export: a coolchic codec folder is its codec.json alone")


class _FittingBackend:
    """neurocodec.api with the preset and time budget bound (the evaluation's backend)."""

    def __init__(self, preset: str | None, time_budget: float | None):
        self.opts = {k: v for k, v in (("preset", preset), ("time_budget", time_budget)) if v is not None}

    def encode(self, img: np.ndarray, codec: str, quality: int) -> bytes:
        from neurocodec import api

        return api.encode(img, codec=codec, quality=quality, **self.opts)

    def decode(self, data: bytes) -> Any:
        from neurocodec import api

        return api.decode(data)

    def load_codec(self, codec: str) -> Any:
        from neurocodec import api

        return api.load_codec(codec)


def evaluate(codec: str, data: str, out: str, limit: int | None = None, anchors: bool = True,
             qualities: list[int] | None = None, anchors_json: str | None = None, preset: str | None = None,
             time_budget: float | None = None) -> str:
    from neurocodec.tools.image.evaluate import AUTO
    from neurocodec.tools.image.evaluate import evaluate as run

    res = run(codec, data, out, qualities=qualities, anchors=anchors, anchors_json=anchors_json or AUTO,
              limit=limit, backend=_FittingBackend(preset, time_budget))
    return json.dumps({"bd_rate_pct": res.get("bd_rate_pct"), "curves": res.get("curves", {}).get(codec)}, indent=1)
