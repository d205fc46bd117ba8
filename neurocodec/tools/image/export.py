"""Training checkpoint -> shippable codec folder (codec.json + weightzip-packed weights).

The export freezes everything the decoder's probabilities depend on: the bottleneck's and
the Gaussian conditional's CDF tables, the integer hyper-synthesis and the integer gains.
Large weight tensors are stored as float16 (the shipped codec *is* the float16 model: its
results are measured with these weights), and packed losslessly by weightzip.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from neurocodec.runtime.codec import META_VERSION
from neurocodec.runtime.image.int_hyper import F_GAIN, IntHyperSynthesis, gain_int, quantize_hs
from neurocodec.runtime.image.models import ImageModelConfig
from neurocodec.runtime.registry import build_model
from neurocodec.tools.paths import display_paths

FP16_MIN_NUMEL = 4096  # smaller tensors (GDN, biases, gains, quantiles) stay float32


def export(checkpoint: str | Path, out_dir: str | Path, name: str, codec_id: int,
           default_quality: int | None = None, default: bool = False, extra: dict | None = None) -> Path:
    import weightzip

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cfg = ImageModelConfig.from_dict(state["config"]["model"])
    model = build_model(cfg.arch, cfg.to_dict())
    model.load_state_dict(state["model"])
    # Round the big tensors to float16 first, so that everything derived (integer h_s) is
    # derived from the weights that ship.
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() >= FP16_MIN_NUMEL:
                p.copy_(p.half().float())
    model.update_tables()
    tensors: dict[str, np.ndarray] = {}
    for k, v in model.state_dict().items():
        if k.startswith("h_s."):
            continue  # ships once, as the integer network (codec.py dequantises it)
        v = v.detach().cpu()
        if v.is_floating_point() and v.numel() >= FP16_MIN_NUMEL:
            v = v.half()
        tensors["model." + k] = v.contiguous().numpy()
    tensors.update(quantize_hs(model.h_s))
    with torch.no_grad():
        tensors["gain_int"] = gain_int(model.log_gain.exp()).to(torch.int64).numpy()  # [Q, M]
        tensors["igain"] = model.log_igain.exp().float().numpy()  # [Q, M]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weightzip.save(tensors, out / "weights.wz", metadata={"codec": name})
    meta = {
        "name": name, "id": int(codec_id), "kind": "image", "format_version": META_VERSION,
        "arch": cfg.arch, "model": cfg.to_dict(), "weights": "weights.wz",
        "default_quality": cfg.qualities // 2 if default_quality is None else default_quality,
        "default": bool(default), "int_hs_kinds": IntHyperSynthesis.kinds_of(model.h_s),
        "f_gain": F_GAIN, "training": {"step": state["step"], "minutes": round(state["elapsed"] / 60, 1),
                                       "config": display_paths(state["config"]["train"])},
    }
    meta.update(extra or {})
    (out / "codec.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out
