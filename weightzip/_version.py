"""The version of the installed distribution ("neurocodec", which ships weightzip and
neurocodec), read from its metadata, so pyproject.toml is the one place it is written.

Standard library only (importlib.metadata, which tqdm imports anyway; the lookup itself takes
~2 ms). A checkout that was never installed (only on sys.path) reports "0+unknown"; an
editable install reports the version it was installed at (reinstall after a version bump).
"""
from __future__ import annotations

DISTRIBUTION = "neurocodec"
UNKNOWN = "0+unknown"


def _read() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return UNKNOWN
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN


__version__: str = _read()
