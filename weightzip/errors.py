"""Exceptions raised by weightzip. The C++ core raises these same classes."""


class FormatError(ValueError):
    """The input is not a valid weightzip file (wrong magic, truncated, corrupt, unsupported)."""


class ChecksumError(FormatError):
    """A chunk or the index does not match its stored checksum (the file is corrupt)."""


class RefError(FormatError):
    """A delta .wz file's reference is missing, wrong (another file than the one it was coded
    against), or not a weightzip file."""
