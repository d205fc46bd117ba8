"""Training checkpoint -> shippable audio codec folder: float16 weights (the shipped codec *is*
the float16 model) and index priors fitted on the codes of training audio, packed losslessly
by weightzip, plus codec.json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from neurocodec.runtime.audio.index_model import IndexPriors
from neurocodec.runtime.audio.io import list_audio, read_audio
from neurocodec.runtime.audio.models import AudioModelConfig
from neurocodec.runtime.audio.stream import encode_all, model_fns
from neurocodec.runtime.codec import META_VERSION
from neurocodec.runtime.registry import build_model
from neurocodec.tools.paths import display_path, display_paths

FP16_MIN_NUMEL = 4096  # smaller tensors (Snake alphas, biases, weight-norm gains) stay float32


def fit_priors(model, folders: list[str], max_seconds: float = 1200.0, n_ctx: int = 16,
               progress: bool = True) -> tuple[IndexPriors, dict]:
    """Fit the index priors on the codes (all stages) of up to max_seconds of each folder."""
    enc, _ = model_fns(model)
    cfg: AudioModelConfig = model.cfg
    codes, seconds = [], {}
    files = [(f, p) for f in folders for p in list_audio(f)]
    for folder, p in tqdm(files, desc="fit priors", disable=not progress):
        if seconds.get(folder, 0.0) >= max_seconds:
            continue
        x, _ = read_audio(p, cfg.sample_rate)  # [C, T]
        seconds[folder] = seconds.get(folder, 0.0) + x.shape[1] / cfg.sample_rate
        c, _ = encode_all([x], enc, cfg.hop_length)  # [C, n_q, F]
        codes += list(c)
    priors = IndexPriors.fit(codes, cfg.n_codebooks, cfg.codebook_size, n_ctx=n_ctx)
    return priors, {"seconds": {display_path(k): round(v, 1) for k, v in seconds.items()}, "n_ctx": n_ctx}


def export(checkpoint: str | Path, out_dir: str | Path, name: str, codec_id: int, prior_data: list[str],
           default: bool = False, default_kbps: float = 6.0, extra: dict | None = None,
           prior_seconds: float = 1200.0) -> Path:
    import weightzip

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    arch = state["config"]["model"].get("arch", "audio-rvq")
    cfg = AudioModelConfig.from_dict(state["config"]["model"])
    model = build_model(arch, cfg.to_dict())
    model.load_state_dict(state["model"])
    with torch.no_grad():  # round first: the priors are fitted on the codes of the shipped weights
        for p in model.parameters():
            if p.numel() >= FP16_MIN_NUMEL:
                p.copy_(p.half().float())
    model.eval()
    priors, prior_info = fit_priors(model, prior_data, max_seconds=prior_seconds)
    tensors: dict[str, np.ndarray] = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if v.is_floating_point() and v.numel() >= FP16_MIN_NUMEL:
            v = v.half()
        tensors["model." + k] = v.contiguous().numpy()
    tensors.update({"priors." + k: v for k, v in priors.state_dict().items()})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weightzip.save(tensors, out / "weights.wz", metadata={"codec": name})
    meta = {
        "name": name, "id": int(codec_id), "kind": "audio", "format_version": META_VERSION, "arch": arch,
        "model": {"arch": arch, **cfg.to_dict()}, "weights": "weights.wz", "default": bool(default),
        "default_kbps": float(default_kbps), "priors": prior_info,
        "training": {"step": state["step"], "minutes": round(state["elapsed"] / 60, 1),
                     "config": display_paths(state["config"]["train"])},
    }
    meta.update(extra or {})
    (out / "codec.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out
