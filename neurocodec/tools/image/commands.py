"""The image kind's tool commands (see neurocodec.tools): train, export, evaluate, with CLI-style options."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def train(arch: str, data: list[str], resume: bool = True, lmbda: list[float] | None = None, **opts: Any) -> Path:
    from neurocodec.tools.image.train import make_config
    from neurocodec.tools.image.train import train as run

    return run(make_config(arch, data, lmbdas=lmbda, **opts), resume=resume)


def export(checkpoint: str, out: str, name: str, codec_id: int, default: bool = False,
           default_quality: int | None = None) -> Path:
    from neurocodec.tools.image.export import export as run

    return run(checkpoint, out, name, codec_id, default_quality=default_quality, default=default)


def evaluate(codec: str, data: str, out: str, limit: int | None = None, anchors: bool = True,
             qualities: list[int] | None = None, anchors_json: str | None = None) -> str:
    from neurocodec.tools.image.evaluate import AUTO
    from neurocodec.tools.image.evaluate import evaluate as run

    res = run(codec, data, out, qualities=qualities, anchors=anchors, anchors_json=anchors_json or AUTO,
              limit=limit)
    return json.dumps({"bd_rate_pct": res.get("bd_rate_pct"), "curves": res.get("curves", {}).get(codec)}, indent=1)
