"""The image codec's implementation: the trained model, its frozen entropy tables and the
integer hyper-synthesis, coding images to .nc streams [z, y] and back (codec.py holds the kind
class: options, file I/O, describing files).

Determinism: the decoder's probabilities (CDF tables and their selection) come only from
stored integer tables and exact integer arithmetic (int_hyper.py), so entropy decoding is
bit-exact everywhere. The float32 synthesis transform is not thread-count invariant by
itself (oneDNN blocks its reductions by thread count: measured, 1 vs 2 threads changed
Kodak pixels), so it always runs on one intra-op thread: the same kernels in the same order
in every process, whatever torch.set_num_threads says.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import weightzip
from neurocodec.runtime.bitstream import NcFile
from neurocodec.runtime.image.codec import ImageCodec
from neurocodec.runtime.image.int_hyper import F_GAIN, Z_CLAMP, IntHyperSynthesis, dequantize_hs, gaussian_params
from neurocodec.runtime.image.io import as_rgb, to_channels
from neurocodec.runtime.image.limits import ImageNcError, header_problem
from neurocodec.runtime.image.models import ImageCodecModel, ImageModelConfig
from neurocodec.runtime.registry import build_model
from neurocodec.runtime.torch_threads import one_intra_op_thread
from weightzip.core import FormatError, decode_indexed, encode_indexed

Y_CLAMP = 1 << 15


def _load_tables(module: torch.nn.Module, prefix: str, state: dict) -> None:
    # CompressAI registers empty CDF buffers; size them before load_state_dict.
    for name in ("_quantized_cdf", "_offset", "_cdf_length", "scale_table"):
        if f"{prefix}.{name}" in state:
            getattr(module, name).resize_(state[f"{prefix}.{name}"].shape)


class LoadedImageCodec(ImageCodec):
    """An image codec with its model loaded (ImageCodec.from_dir / neurocodec.load_codec)."""

    def __init__(self, meta: dict, tensors: dict[str, torch.Tensor]):
        super().__init__(meta)
        self.cfg = ImageModelConfig.from_dict(meta["model"])
        model = build_model(self.cfg.arch, self.cfg.to_dict())
        state = {k[6:]: v.float() if v.is_floating_point() else v
                 for k, v in tensors.items() if k.startswith("model.")}
        _load_tables(model.entropy_bottleneck, "entropy_bottleneck", state)
        _load_tables(model.gaussian_conditional, "gaussian_conditional", state)
        model.load_state_dict(state, strict=False)
        hs = {k: v.numpy() for k, v in tensors.items() if k.startswith("hs.")}
        dequantize_hs(hs, model.h_s)
        missing = set(model.state_dict()) - set(state) - {k for k in model.state_dict() if k.startswith("h_s.")}
        if missing:
            raise ValueError(f"codec {meta['name']!r}: weights lack {sorted(missing)[:3]}")
        self.model = model.eval().requires_grad_(False)
        self.int_hs = IntHyperSynthesis(hs, meta["int_hs_kinds"])
        self.gain_int = tensors["gain_int"].double()  # [Q, M], F_GAIN fractional bits
        self.igain = tensors["igain"].float()  # [Q, M]
        eb, gc = model.entropy_bottleneck, model.gaussian_conditional
        self.z_tables = (eb._quantized_cdf.numpy(), eb._cdf_length.numpy(), eb._offset.numpy())
        self.y_tables = (gc._quantized_cdf.numpy(), gc._cdf_length.numpy(), gc._offset.numpy())
        self.medians = eb.quantiles[:, 0, 1].detach().clone()  # [N]
        self.scale_table = gc.scale_table.detach().clone()

    @classmethod
    def load(cls, path: Path, meta: dict) -> LoadedImageCodec:
        if meta.get("f_gain", F_GAIN) != F_GAIN:  # the gains' fixed point is part of the format
            raise ValueError(f"codec {meta['name']!r} stores gains with {meta['f_gain']} fractional bits; "
                             f"this neurocodec uses {F_GAIN}")
        return cls(meta, weightzip.load(path / meta.get("weights", "weights.wz"), framework="torch"))

    def macs_per_pixel(self) -> dict:
        return self.model.macs_per_pixel()

    # -- encoder ------------------------------------------------------------------
    def _analyse_rgb(self, rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 RGB -> (x padded [1,3,H',W'], y, z)."""
        h, w = rgb.shape[:2]
        x = torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255.0  # [1, 3, H, W]
        s = ImageCodecModel.stride
        ph, pw = -h % s, -w % s
        if ph or pw:  # replicate, not zeros: flat borders cost almost no bits
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        with torch.no_grad():
            y = self.model.g_a(x)  # [1, M, H'/16, W'/16]
            z = self.model.h_a(y)  # [1, N, H'/64, W'/64]
        return x, y, z

    def analyse(self, img: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """uint8 image -> (x padded [1,3,H',W'], y, z, channels)."""
        rgb, channels = as_rgb(img)
        return (*self._analyse_rgb(rgb), channels)

    def encode(self, img: np.ndarray, progress: bool = False, quality: int | None = None,  # type: ignore[override]
               refine_steps: int = 0) -> bytes:
        q, refine_steps = self.check_encode_args(quality, refine_steps)
        rgb, channels = as_rgb(img)
        h, w = rgb.shape[:2]
        problem = header_problem(h, w, channels, q, self.qualities)  # the decoder's own check
        if problem:
            raise ValueError(problem)
        x, y, z = self._analyse_rgb(rgb)
        if refine_steps > 0:
            from neurocodec.runtime.image.refine import refine_latents

            y, z = refine_latents(self, x, y, z, q, refine_steps, progress=progress)
        z_sym = torch.round(z - self.medians.view(1, -1, 1, 1)).clamp(-Z_CLAMP, Z_CLAMP)
        mu, idx = self._params(z_sym, q)
        g = self.gain_int[q].view(1, -1, 1, 1) / 2.0**F_GAIN
        y_sym = torch.round(y.double() * g - mu).clamp(-Y_CLAMP, Y_CLAMP)
        z_idx = np.broadcast_to(np.arange(z.shape[1], dtype=np.int32)[None, :, None, None], z_sym.shape)
        streams = [encode_indexed(z_sym.to(torch.int32).numpy(), z_idx, *self.z_tables),
                   encode_indexed(y_sym.to(torch.int32).numpy(), idx.numpy(), *self.y_tables)]
        return NcFile(self.id, q, (h, w, channels), streams).to_bytes()

    def _params(self, z_sym: torch.Tensor, q: int) -> tuple[torch.Tensor, torch.Tensor]:
        means, scales = self.int_hs(z_sym, self.medians)
        return gaussian_params(means, scales, self.gain_int[q], self.scale_table)

    # -- decoder ------------------------------------------------------------------
    def decode_nc(self, nc: NcFile, progress: bool = False) -> np.ndarray:
        """Every error for a bad file is an ImageNcError (an NcFormatError, a ValueError)."""
        if len(nc.shape) != 3 or len(nc.streams) != 2:
            raise ImageNcError("corrupt .nc file (unexpected header for an image codec)")
        h, w, channels = nc.shape
        problem = header_problem(h, w, channels, nc.quality, self.qualities)  # the encoder's own check
        if problem:
            raise ImageNcError(f"corrupt .nc header ({problem})")
        s = ImageCodecModel.stride
        zh, zw = -(-h // s), -(-w // s)
        N = self.cfg.N
        z_idx = np.broadcast_to(np.arange(N, dtype=np.int32)[None, :, None, None], (1, N, zh, zw))
        try:
            z_int = decode_indexed(nc.streams[0], z_idx, *self.z_tables)
            z_sym = torch.from_numpy(z_int.astype(np.float64))
            mu, idx = self._params(z_sym.clamp(-Z_CLAMP, Z_CLAMP), nc.quality)
            y_int = decode_indexed(nc.streams[1], idx.numpy(), *self.y_tables)
        except FormatError as e:  # the entropy coder's (weightzip's) error: one family for .nc files
            raise ImageNcError(f"corrupt .nc payload ({e})") from None
        y_sym = torch.from_numpy(y_int.astype(np.float64))
        y_hat = ((y_sym.clamp(-Y_CLAMP, Y_CLAMP) + mu) * self.igain[nc.quality].double().view(1, -1, 1, 1)).float()
        with torch.no_grad(), one_intra_op_thread():
            x_hat = self.model.g_s(y_hat)[:, :, :h, :w]  # [1, 3, H, W]
        rgb = (x_hat.clamp(0, 1) * 255.0).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
        return to_channels(np.ascontiguousarray(rgb), channels)
