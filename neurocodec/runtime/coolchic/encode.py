"""The coolchic encoder: fit the image (fit.py), then quantise the fitted model into the
decoder's integer formats (quantise.py). Imported only when encoding (decoding needs no torch)."""
from __future__ import annotations

from typing import Any

import numpy as np

from neurocodec.runtime.coolchic.fit import fit
from neurocodec.runtime.coolchic.quantise import quantise


def encode_image(img: np.ndarray, lmbda: float, iterations: int, time_budget_s: float | None, cfg: dict,
                 progress: bool = False) -> tuple[list[bytes], dict[str, Any]]:
    """uint8 [H, W, planes] -> (the three streams of a coolchic file, statistics)."""
    model, stats = fit(img, lmbda, iterations, time_budget_s, cfg, progress=progress)
    _, streams, qstats = quantise(model, img, lmbda)
    return streams, {**stats, **qstats}
