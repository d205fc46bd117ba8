"""The coolchic implementation: encoding fits the image (fit.py, torch, imported only then);
decoding is decoder.py (numpy and the C++ core: no torch, so the core install decodes)."""
from __future__ import annotations

from typing import Any

import numpy as np

from neurocodec.runtime.bitstream import NcFile
from neurocodec.runtime.codec import CODEC_MODULES, require
from neurocodec.runtime.coolchic.codec import CoolChicCodec
from neurocodec.runtime.coolchic.decoder import decode_streams
from neurocodec.runtime.coolchic.format import CoolChicNcError
from neurocodec.runtime.image.io import as_rgb
from neurocodec.runtime.image.limits import header_problem


class FittedCoolChicCodec(CoolChicCodec):
    """A coolchic codec (CoolChicCodec.from_dir / neurocodec.load_codec)."""

    #: the last encode's statistics (iterations, seconds, quantisation steps, float PSNR)
    last_stats: dict

    def encode(self, img: np.ndarray, progress: bool = False, quality: int | None = None,  # type: ignore[override]
               preset: str | None = None, time_budget: float | None = None) -> bytes:
        q, preset, budget_s = self.check_encode_args(quality, preset, time_budget)
        rgb, channels = as_rgb(img)
        h, w = rgb.shape[:2]
        problem = header_problem(h, w, channels, q, self.qualities)  # the decoder's own check
        if problem:
            raise ValueError(problem)
        try:
            from neurocodec.runtime.coolchic.encode import encode_image
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] in CODEC_MODULES:
                raise require("codecs", "coolchic encoding", e) from None
            raise
        planes = rgb[:, :, :1] if channels == 1 else rgb
        iterations = int(self.meta["presets"][preset]["iterations"])
        streams, self.last_stats = encode_image(np.ascontiguousarray(planes), float(self.meta["model"]["lmbdas"][q]),
                                                iterations, budget_s, self.meta["model"], progress=progress)
        return NcFile(self.id, q, (h, w, channels), streams).to_bytes()

    def decode_nc(self, nc: NcFile, progress: bool = False) -> Any:
        """Every error for a bad file is a CoolChicNcError (an NcFormatError, a ValueError)."""
        if len(nc.shape) != 3:
            raise CoolChicNcError("corrupt .nc file (unexpected header for a coolchic codec)")
        h, w, channels = nc.shape
        problem = header_problem(h, w, channels, nc.quality, self.qualities)
        if problem:
            raise CoolChicNcError(f"corrupt .nc header ({problem})")
        pix, _ = decode_streams(nc.streams, h, w, channels)
        return pix[:, :, 0] if channels == 1 else pix
