"""Golden files (README.md): committed .wz and .nc files that pin the formats byte for byte."""
from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "shipped_codecs: loads the shipped codecs of codecs/ (about 1 s each); deselect with "
                   "-m 'not shipped_codecs'")

