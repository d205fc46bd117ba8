"""The image kind: what routing, `list`, `info` and the image file I/O need, without torch.
The model lives in the implementation (loaded.py: LoadedImageCodec)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from neurocodec.runtime.bitstream import NcFile
from neurocodec.runtime.codec import Codec, Option, float_list, int_list
from neurocodec.runtime.image.io import IMAGE_SUFFIXES, check_image_output, read_image, write_image
from neurocodec.runtime.image.limits import ImageNcError, check_quality, check_refine_steps
from weightzip.clitools import nonneg_int, positive_int


class ImageCodec(Codec):
    """Images: uint8 arrays [H, W] or [H, W, C], or image files; decoded to uint8 arrays and
    lossless image files (PNG by default)."""

    kind = "image"
    implementation = "neurocodec.runtime.image.loaded:LoadedImageCodec"
    tools = "neurocodec.tools.image.commands"
    archs: ClassVar[tuple[str, ...]] = ("hyperprior", "shallow")
    input_suffixes = tuple(sorted(IMAGE_SUFFIXES))
    output_suffix = ".png"
    input_hint = "a uint8 image array or an image file"
    format_error = ImageNcError
    options = {
        "encode": (Option("quality", nonneg_int, "image: quality index (see `neurocodec list`)"),
                   Option("refine_steps", nonneg_int, "image: encoder-side latent refinement steps (>= 0)")),
        "train": (Option("lmbda", float_list, "image: comma-separated λ per quality (default: 6 points, ~0.1-1 bpp)"),
                  Option("crop", positive_int, "image: training crop size (default 256)"),
                  Option("N", positive_int, "image: hyper-latent channels", flag="--N"),
                  Option("M", positive_int, "image: latent channels", flag="--M"),
                  Option("fixed_quality", int, "image: train this quality index only"),
                  Option("val_data", str, "image: validation images (default: a share of --data)"),
                  Option("precision", str, "image: auto (bf16 where the device has it), bf16 or fp32"),
                  Option("channels_last", str, "image: true/false (default true)", flag="--channels-last"),
                  Option("compile", str, "image: true/false: torch.compile the training step (default false)")),
        "export": (Option("default_quality", nonneg_int, "image: the quality encode uses by default"),),
        "eval": (Option("qualities", int_list, "image: comma-separated subset of the qualities"),
                 Option("anchors_json", str, "image: published curves (default: "
                        "../shared/anchors/kodak_rd.json if present)")),
    }

    # -- class level ------------------------------------------------------------------
    @classmethod
    def accepts(cls, data: Any, opts: dict[str, Any]) -> int:
        if opts.get("sr") is not None:
            return 0
        if isinstance(data, (str, os.PathLike)):  # Pillow also reads files by their content
            return 2 if Path(data).suffix.lower() in IMAGE_SUFFIXES else 1
        return 1

    @classmethod
    def describe(cls, nc: NcFile, meta: dict, nbytes: int) -> dict:
        out = super().describe(nc, meta, nbytes)
        if len(nc.shape) == 3 and nc.shape[0] and nc.shape[1]:
            out["bpp"] = 8 * nbytes / (nc.shape[0] * nc.shape[1])
        return out

    @classmethod
    def encoded_summary(cls, info: dict) -> str:
        return f"{info['bytes']} bytes, {info.get('bpp', 0):.4f} bpp"

    @classmethod
    def decoded_summary(cls, info: dict) -> str:
        return f"{info['shape'][1]}x{info['shape'][0]}"

    @classmethod
    def summary(cls, meta: dict) -> str:
        q = len(meta.get("model", {}).get("lmbdas", []))
        return f"qualities 0..{q - 1}" if q else "qualities ?"

    @classmethod
    def check_output(cls, out: Path, nc: NcFile) -> None:
        check_image_output(out, shape=nc.shape)

    # -- a codec's settings (from codec.json) ------------------------------------------
    @property
    def qualities(self) -> list[int]:
        return list(range(len(self.meta["model"]["lmbdas"])))

    @property
    def default_quality(self) -> int:
        return int(self.meta.get("default_quality", len(self.qualities) // 2))

    def check_encode_args(self, quality: int | None = None, refine_steps: int = 0) -> tuple[int, int]:
        """-> (quality, refine_steps), or ValueError: call before reading the input."""
        q = check_quality(quality, self.qualities, self.default_quality, self.name)
        return q, check_refine_steps(refine_steps)

    # -- files ---------------------------------------------------------------------------
    def encode_file(self, path: str | os.PathLike, progress: bool = False, **opts: Any) -> bytes:
        opts = self.check_options(opts)
        self.check_encode_args(**opts)  # before reading: a bad argument warns about nothing
        rgb, channels = read_image(path)
        return self.encode(rgb if channels != 1 else rgb[:, :, 0], progress=progress, **opts)

    def decode_to_file(self, nc: NcFile, out: Path, progress: bool = False, overwrite: bool = False) -> None:
        img: np.ndarray = self.decode_nc(nc, progress=progress)
        write_image(out, img, overwrite=overwrite)
