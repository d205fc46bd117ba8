"""A codec's weights as a training checkpoint, so that training can start from a shipped codec
(``neurocodec train --init ckpt.pt``) instead of from random weights:

    python -m neurocodec.tools.from_codec hyperprior hp_init.pt     # name, or a codec folder

The checkpoint is the dict tools/checkpoints.load_checkpoint accepts: "config" {"model": the
codec's model config, "train": the training config recorded in its codec.json, or {}},
"model" (the training model's state dict, float32), "step" and "elapsed" (the codec's recorded
training, informational: --init starts a fresh step count), and "from_codec" {name, id}.

What the weights are, per kind:

- image: the loaded codec's model is the whole training model. Its float16-stored tensors come
  back as float32, and its hyper-synthesis h_s is the integer network dequantised (the codec
  ships h_s only as integers; runtime/image/loaded.py), so the training model is the shipped
  model exactly. The frozen CDF tables are left out (empty, as in any training checkpoint):
  export rebuilds them from the trained weights.
- audio: the training model has weight-norm parametrizations (g, v), the loaded codec has them
  folded into plain weights (runtime/audio/loaded.py fold_weight_norm). The codec's weight file
  holds the unfolded (g, v) as exported, and those are taken as they are; a codec whose file
  holds only folded weights is unfolded through the parametrization (assigning ``weight`` calls
  weight norm's right_inverse: g = |w| per output channel, v = w). Either way the training
  model computes what the codec's model computes.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from neurocodec.runtime.registry import build_model, codec_meta, load_codec

# Buffers of CompressAI's entropy models that hold frozen coding tables: empty in a training
# model (export fills them), of the tables' size in a loaded codec.
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def _fp32(v: torch.Tensor) -> torch.Tensor:
    v = v.detach().cpu().clone()
    return v.float() if v.is_floating_point() else v


def _image_state(meta: dict) -> dict[str, torch.Tensor]:
    import neurocodec.runtime.image.models  # noqa: F401 - registers the image architectures

    codec = load_codec(meta["path"])
    src = codec.model.state_dict()  # type: ignore[attr-defined]
    fresh = build_model(meta["arch"], meta["model"]).state_dict()
    state = {}
    for k, v in fresh.items():
        if k.rsplit(".", 1)[-1] in TABLE_BUFFERS:
            state[k] = v  # the training model's own (empty) tables
        elif k not in src or src[k].shape != v.shape:
            raise ValueError(f"codec {meta['name']!r}: its model has no {k} of shape {tuple(v.shape)}")
        else:
            state[k] = _fp32(src[k])
    return state


def assign_folded(model: torch.nn.Module, folded: torch.nn.Module) -> None:
    """Load a folded model's weights (plain ``weight`` tensors) into `model`, whose modules may
    carry weight-norm parametrizations: ``module.weight = w`` goes through the parametrization's
    right_inverse (weight norm: g = |w|, v = w), everything else is copied by name."""
    from torch.nn.utils import parametrize

    src = folded.state_dict()
    with torch.no_grad():
        for name, module in model.named_modules():
            if parametrize.is_parametrized(module, "weight"):
                key = f"{name}.weight" if name else "weight"
                module.weight = src[key]  # right_inverse: (g, v) = (|w|, w)
        plain = {k: v for k, v in model.state_dict().items() if ".parametrizations." not in k}
        missing = [k for k in plain if k not in src or src[k].shape != plain[k].shape]
        if missing:
            raise ValueError(f"the folded model lacks {missing[:3]}")
        model.load_state_dict({**model.state_dict(), **{k: src[k] for k in plain}})


def _audio_state(meta: dict) -> dict[str, torch.Tensor]:
    import weightzip
    from neurocodec.runtime.audio.models import AudioModelConfig

    cfg = AudioModelConfig.from_dict(meta["model"])
    model = build_model(meta.get("arch", "audio-rvq"), cfg.to_dict())
    want = model.state_dict()
    raw = weightzip.load(Path(meta["path"]) / meta.get("weights", "weights.wz"), framework="torch")
    raw = {k[6:]: v for k, v in raw.items() if k.startswith("model.")}
    if set(raw) == set(want) and all(raw[k].shape == want[k].shape for k in want):
        return {k: _fp32(raw[k]) for k in want}  # the exported (g, v), as trained
    codec = load_codec(meta["path"])
    assign_folded(model, codec.model)  # type: ignore[attr-defined]
    return {k: _fp32(v) for k, v in model.state_dict().items()}


STATES: dict[str, Callable[[dict], dict[str, torch.Tensor]]] = {"image": _image_state, "audio": _audio_state}


def checkpoint_from_codec(name_or_folder: str | os.PathLike) -> dict:
    """The training checkpoint (a dict, see the module doc) holding a codec's weights."""
    meta = codec_meta(name_or_folder)
    kind = str(meta.get("kind", ""))
    if kind not in STATES:
        raise LookupError(f"codec {meta['name']!r}: no training checkpoint for codecs of kind {kind!r}")
    state = STATES[kind](meta)
    training = meta.get("training") or {}
    train = dict(training["config"]) if isinstance(training.get("config"), dict) else {}
    model_cfg = {"arch": meta.get("arch", meta["model"].get("arch")), **meta["model"]}
    return {"config": {"model": model_cfg, "train": train}, "model": state,
            "step": int(training.get("step", 0)), "elapsed": float(training.get("minutes", 0.0)) * 60.0,
            "from_codec": {"name": str(meta["name"]), "id": int(meta["id"])}}


def save_checkpoint_from_codec(name_or_folder: str | os.PathLike, out: str | os.PathLike,
                               overwrite: bool = False) -> Path:
    """checkpoint_from_codec() saved with torch.save (atomically) to `out`; returns out."""
    from neurocodec.tools.checkpoints import save_checkpoint

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(17, "exists (overwrite with --force)", str(out))
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "no such folder", str(out.parent))
    save_checkpoint(out, checkpoint_from_codec(name_or_folder))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m neurocodec.tools.from_codec",
                                 description="Write a codec's weights as a training checkpoint "
                                             "(for `neurocodec train --init OUT`).")
    ap.add_argument("codec", help="a codec name (neurocodec list) or a codec folder")
    ap.add_argument("out", help="the checkpoint to write (.pt)")
    ap.add_argument("-f", "--force", action="store_true", help="replace an existing OUT")
    args = ap.parse_args(argv)
    try:
        path = save_checkpoint_from_codec(args.codec, args.out, overwrite=args.force)
    except (OSError, ValueError, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{path}: training checkpoint of codec {args.codec} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
