"""The version of the installed distribution ("neurocodec", which ships weightzip and
neurocodec), read from its metadata, so pyproject.toml is the one place it is written.

Standard library only, read on first use (weightzip.__version__ is a lazy module attribute):
importing importlib.metadata costs ~0.1 s, which `import weightzip` and the quick commands
(`--help`, `list`, `info`) should not pay. A checkout that was never installed (only on
sys.path) reports "0+unknown"; an editable install reports the version it was installed at
(reinstall after a version bump).
"""
from __future__ import annotations

from functools import lru_cache

DISTRIBUTION = "neurocodec"
UNKNOWN = "0+unknown"


@lru_cache(maxsize=None)  # noqa: UP033  (functools.cache is 3.9+; keep one spelling with 3.8 tooling)
def version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return UNKNOWN
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN
