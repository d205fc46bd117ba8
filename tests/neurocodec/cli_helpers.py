"""Shared by the CLI tests: a tiny image codec folder, a valid .nc file, and ways to run the
CLI in-process or as a process and check its one-line errors."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")
from common import REPO
from PIL import Image
from tiny_codec import TINY_LMBDAS

from neurocodec.cli import main

TINY_QUALITIES = len(TINY_LMBDAS)  # 3 -> default quality 1


def smooth_image(h: int, w: int, mode: str = "RGB") -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([128 + 90 * np.sin(xx / (9 + 3 * c) + yy / (13 + 2 * c)) for c in range(3)], axis=2)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    if mode == "L":
        return Image.fromarray(rgb[:, :, 0], "L")
    if mode == "RGBA":
        alpha = (255 * xx / max(w - 1, 1)).astype(np.uint8)[:, :, None]
        return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")
    return Image.fromarray(rgb, "RGB")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_error(result, *needles) -> str:
    """Status 1, nothing on stdout, one 'neurocodec: error:' line mentioning every needle."""
    rc, out, err = result
    assert rc == 1, (rc, out, err)
    assert out == "", out
    assert err.startswith("neurocodec: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    for n in needles:
        assert n.lower() in err.lower(), (n, err)
    return err


def run_module(*args, cwd, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "NEUROCODEC_PATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "neurocodec", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300, check=False)


def assert_one_line_error(r: subprocess.CompletedProcess, *needles) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurocodec: error:"), r.stderr
    for n in needles:
        assert n.lower() in r.stderr.lower(), (n, r.stderr)
