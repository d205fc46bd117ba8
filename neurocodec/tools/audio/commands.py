"""The audio kind's tool commands (see neurocodec.tools): train, export, evaluate, with CLI-style options."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def train(arch: str, data: list[str], resume: bool = True, **opts: Any) -> Path:
    from neurocodec.tools.audio.train import make_config
    from neurocodec.tools.audio.train import train as run

    return run(make_config(arch, data, **opts), resume=resume)


def export(checkpoint: str, out: str, name: str, codec_id: int, default: bool = False,
           default_kbps: float | None = None, prior_data: list[str] | None = None) -> Path:
    from neurocodec.tools.audio.export import export as run
    from neurocodec.tools.checkpoints import load_checkpoint

    data = prior_data or load_checkpoint(checkpoint)["config"]["train"]["data"]
    return run(checkpoint, out, name, codec_id, data, default=default,
               default_kbps=6.0 if default_kbps is None else default_kbps)


def evaluate(codec: str, data: str, out: str, limit: int | None = None, anchors: bool = True,
             kbps: list[float] | None = None) -> str:
    from neurocodec.tools.audio.evaluate import evaluate as run

    res = run(codec, data, out, kbps=tuple(kbps or (1.5, 3.0, 6.0)), opus_kbps=(6.0, 12.0) if anchors else (),
              limit=limit)
    cols = ("system", "nominal_kbps", "kbps", "si_sdr", "mel", "stoi", "pesq_wb", "encdec_rtf")
    lines = [" ".join(f"{c:>12}" for c in cols)]
    for m in res["means"]:
        lines.append(" ".join(f"{m[c]:>12.3f}" if isinstance(m.get(c), float) else f"{m.get(c, '')!s:>12}"
                              for c in cols))
    return "\n".join(lines)
