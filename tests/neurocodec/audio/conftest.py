"""Fixtures of the audio codec tests: `tiny` is the tiny random audio codec's folder here (the
image one in the parent folder), `codec` that codec loaded."""
from __future__ import annotations

import pytest

import neurocodec


@pytest.fixture(scope="module")
def tiny(tiny_audio_codec) -> str:
    return tiny_audio_codec


@pytest.fixture(scope="module")
def codec(tiny):
    return neurocodec.load_codec(tiny)
