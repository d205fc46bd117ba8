"""Fixtures of the neurocodec tests: tiny random codecs (tiny_codec.py), exported once per
session, stand in for the shipped ones where a test needs speed, not quality."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_image_codec(tmp_path_factory) -> str:
    """A tiny random image codec folder (tests/tiny_codec.py), exported once per session."""
    from tiny_codec import maketiny_codec

    return str(maketiny_codec(tmp_path_factory.mktemp("codec")))


@pytest.fixture(scope="session")
def tiny_audio_codec(tmp_path_factory) -> str:
    """A tiny random audio codec folder (tests/tiny_codec.py), exported once per session."""
    from tiny_codec import make_tiny_audio_codec

    return str(make_tiny_audio_codec(tmp_path_factory.mktemp("acodec")))
