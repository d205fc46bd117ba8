"""Compression levels: the one place their names and codes are spelled.

    fast     rANS on the exponent streams only (no zstd, no context mixing)
    default  rANS on every stream where it pays, zstd where a probe says it beats rANS
    max      default + the context-mixing coder (and zstd at a higher level)

The codes are the C++ core's ``enum Level { kFast = 0, kDefault = 1, kMax = 2 }``
(csrc/chunk.hpp), passed to ``_C.encode_chunks``; the names are stored in the .wz index
(``"level"``) and are what ``--level`` and ``level=`` accept.
"""
from __future__ import annotations

LEVELS: dict[str, int] = {"fast": 0, "default": 1, "max": 2}
LEVEL_NAMES: tuple[str, ...] = tuple(LEVELS)
DEFAULT_LEVEL = "default"


def level_code(level: str) -> int:
    """The C++ core's code for a level name; ValueError for anything else."""
    if not isinstance(level, str) or level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    return LEVELS[level]
