"""Fixtures of the neurocodec tests: tiny random codecs (tiny_codec.py), exported once per
session, stand in for the shipped ones where a test needs speed, not quality."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_image_codec(tmp_path_factory) -> str:
    """A tiny random image codec folder (tests/tiny_codec.py), exported once per session."""
    from tiny_codec import make_tiny_codec

    return str(make_tiny_codec(tmp_path_factory.mktemp("codec")))


@pytest.fixture(scope="session")
def tiny_audio_codec(tmp_path_factory) -> str:
    """A tiny random audio codec folder (tests/tiny_codec.py), exported once per session."""
    from tiny_codec import make_tiny_audio_codec

    return str(make_tiny_audio_codec(tmp_path_factory.mktemp("acodec")))


@pytest.fixture(scope="module")
def tiny(tiny_image_codec) -> str:
    """A tiny random hyperprior codec folder (tests/tiny_codec.py), TINY_QUALITIES qualities."""
    return tiny_image_codec


@pytest.fixture(scope="module")
def nc_file(tiny, tmp_path_factory) -> Path:
    """A valid .nc of a 37x19 RGB image (quality 2), written by the CLI."""
    from cli_helpers import smooth_image

    from neurocodec.cli import main

    d = tmp_path_factory.mktemp("nc")
    smooth_image(19, 37).save(d / "src.png")
    assert main(["encode", str(d / "src.png"), "--codec", tiny, "--quality", "2", "-o", str(d / "src.nc")]) == 0
    return d / "src.nc"
