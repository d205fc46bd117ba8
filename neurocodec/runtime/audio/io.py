"""Audio files in and out: soundfile reads any rate and channel count (WAV, FLAC, OGG, ...),
soxr resamples to the model's rate and back ("VHQ", streaming so long files stay in constant
memory), and decoded audio is written as WAV or FLAC through a temporary file, in the input's
sample format (subtype) where the container has it, else the closest one it has."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from neurocodec.runtime.audio.checks import AudioInputError  # defined there, kept importable from here

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".mp3", ".opus")
OUT_CONTAINERS = {".wav": "WAV", ".flac": "FLAC"}
BLOCK = 1 << 16  # samples per read

# Sample formats a .nc file records (its audio parameters; docs/nc_format.md), by code.
SUBTYPES = {1: "PCM_16", 2: "PCM_24", 3: "PCM_32", 4: "FLOAT", 5: "DOUBLE", 6: "PCM_U8", 7: "PCM_S8"}
SUBTYPE_CODES = {v: k for k, v in SUBTYPES.items()}
DEFAULT_SUBTYPE = "PCM_16"  # files of the first audio release, which record none; lossy sources
# Other source subtypes -> the recorded one (anything not here and not in SUBTYPES: PCM_16).
_SOURCE_SUBTYPES = {"ALAC_16": "PCM_16", "ALAC_20": "PCM_24", "ALAC_24": "PCM_24", "ALAC_32": "PCM_32",
                    "DPCM_8": "PCM_S8", "DPCM_16": "PCM_16", "DWVW_24": "PCM_24"}
# What each output container writes, and the closest substitute for what it does not.
_WRITES = {"WAV": ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"),
           "FLAC": ("PCM_S8", "PCM_16", "PCM_24")}
_CLOSEST = {("WAV", "PCM_S8"): "PCM_U8", ("FLAC", "PCM_U8"): "PCM_S8",
            ("FLAC", "PCM_32"): "PCM_24", ("FLAC", "FLOAT"): "PCM_24", ("FLAC", "DOUBLE"): "PCM_24"}


def is_audio_path(path) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def list_audio(folder) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_audio_path(p))


def info(path) -> tuple[int, int, int]:
    """(sample rate, frames, channels) of an audio file."""
    import soundfile as sf

    try:
        i = sf.info(str(path))
    except (RuntimeError, OSError) as e:  # LibsndfileError is a RuntimeError
        raise AudioInputError(f"{path}: not a readable audio file ({e})") from None
    return i.samplerate, i.frames, i.channels


def check_finite(x: np.ndarray, what: str = "audio") -> np.ndarray:
    if not np.isfinite(x).all():
        raise AudioInputError(f"{what} contains NaN or Inf samples")
    return x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """x float32 [C, T] -> [C, T'] (soxr VHQ); T' = round(T * sr_out / sr_in)."""
    if sr_in == sr_out:
        return np.ascontiguousarray(x, np.float32)
    import soxr

    y = soxr.resample(np.ascontiguousarray(x.T), sr_in, sr_out, quality="VHQ")  # [T', C]
    return np.ascontiguousarray(np.asarray(y, np.float32).T)


def read_audio(path, sr: int | None = None) -> tuple[np.ndarray, int]:
    """Whole file -> (float32 [C, T] in [-1, 1], rate); resampled to sr when given."""
    import soundfile as sf

    info(path)
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    x = check_finite(np.ascontiguousarray(x.T), str(path))
    return (resample(x, rate, sr), sr) if sr else (x, rate)


class StreamResampler:
    """Block-wise soxr resampling of [C, n] blocks; flush() returns the tail."""

    def __init__(self, sr_in: int, sr_out: int, channels: int):
        self.same = sr_in == sr_out
        if not self.same:
            import soxr

            self.rs = soxr.ResampleStream(sr_in, sr_out, channels, dtype="float32", quality="VHQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.same:
            return np.ascontiguousarray(block, np.float32)
        return np.ascontiguousarray(self.frames(block, last).T)

    def frames(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """[C, n] -> [n', C], soxr's layout (no transposed copy of a large output)."""
        if self.same:
            return np.asarray(block, np.float32).T
        return self.rs.resample_chunk(np.ascontiguousarray(block.T, np.float32), last=last)


class PowerMeter:
    """Mean square per channel of the blocks it is shown (float64 sums)."""

    def __init__(self, channels: int):
        self.sums, self.n = np.zeros(channels), 0

    def add(self, block: np.ndarray) -> None:  # [C, n]
        self.sums += np.einsum("ct,ct->c", block, block, dtype=np.float64)
        self.n += block.shape[1]

    def mean_square(self) -> np.ndarray:
        return self.sums / max(self.n, 1)


def read_blocks(path, sr: int, meter: PowerMeter | None = None) -> Iterator[np.ndarray]:
    """float32 [C, n] blocks of the file at rate sr, read and resampled in constant memory;
    meter, if given, measures the samples as read (at the file's rate)."""
    import soundfile as sf

    rate, _, channels = info(path)
    rs = StreamResampler(rate, sr, channels)
    with sf.SoundFile(str(path)) as f:
        while True:
            b = f.read(BLOCK, dtype="float32", always_2d=True).T  # [C, n]
            last = b.shape[1] < BLOCK
            check_finite(b, str(path))
            if meter is not None:
                meter.add(b)
            y = rs(b, last=last)
            if y.shape[1]:
                yield y
            if last:
                return


def check_output_path(path) -> str:
    """The container ("WAV" or "FLAC") a decoded file goes to, from its suffix; ValueError for
    any other suffix. Cheap: call it before decoding anything."""
    suffix = Path(path).suffix.lower()
    fmt = OUT_CONTAINERS.get(suffix)
    if fmt is None:
        raise ValueError(f"{path}: audio decodes to .wav or .flac, not {suffix or 'a name without a suffix'}")
    return fmt


def out_format(path, subtype: str = DEFAULT_SUBTYPE) -> tuple[str, str]:
    """(container, subtype) for writing path: the source's subtype where the container has it,
    else the closest it has (FLAC: 24-bit for 32-bit, float and double; 8-bit signed/unsigned)."""
    fmt = check_output_path(path)
    if subtype not in _WRITES[fmt]:
        subtype = _CLOSEST.get((fmt, subtype), DEFAULT_SUBTYPE)
    return fmt, subtype


def subtype_of_file(path) -> str:
    """The sample format a .nc records for an audio file (one of SUBTYPES)."""
    import soundfile as sf

    try:
        st = sf.info(str(path)).subtype
    except (RuntimeError, OSError) as e:
        raise AudioInputError(f"{path}: not a readable audio file ({e})") from None
    return st if st in SUBTYPE_CODES else _SOURCE_SUBTYPES.get(st, DEFAULT_SUBTYPE)


def subtype_of_array(dtype) -> str:
    """The sample format a .nc records for an array: its dtype's (float32 -> FLOAT, int16 ->
    PCM_16, uint8 -> PCM_U8, ...)."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return "DOUBLE" if dt.itemsize >= 8 else "FLOAT"
    if dt.kind in "iu":
        bits = 8 * dt.itemsize
        if bits == 8:
            return "PCM_U8" if dt.kind == "u" else "PCM_S8"
        return "PCM_16" if bits == 16 else "PCM_32"
    return DEFAULT_SUBTYPE


def write_blocks(out, blocks: Iterator[np.ndarray], sr: int, channels: int, fmt: str, subtype: str,
                 overwrite: bool = False) -> None:
    """Write float32 [C, n] blocks to out through a hidden temporary sibling (renamed at the
    end, removed on any error). A failed write is an OSError naming out and saying why
    (libsndfile only says "System error.")."""
    import soundfile as sf

    from weightzip.core import atomic_path

    out = Path(out)
    it = iter(blocks)
    try:
        with atomic_path(out, overwrite) as tmp:
            try:
                with sf.SoundFile(str(tmp), "w", samplerate=sr, channels=channels, format=fmt, subtype=subtype) as f:
                    for y in it:
                        f.write(np.ascontiguousarray(y.T))
            except sf.LibsndfileError as e:
                raise write_error(out, e) from None
    finally:  # a failed write ends a decoding generator now, releasing what it holds (its
        # worker threads and temporary code file), not when the traceback is collected
        if hasattr(it, "close"):
            it.close()


def write_error(out: Path, e: Exception) -> OSError:
    """The OSError behind a libsndfile write failure, told from the output's folder."""
    import errno
    import os
    import shutil

    parent = out.parent if str(out.parent) else Path(".")
    try:
        free = shutil.disk_usage(parent).free
        read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
    except OSError:
        free, read_only = None, False
    if free is not None and free < 1 << 20:
        code, reason = errno.ENOSPC, "no space left on device"
    elif read_only:
        code, reason = errno.EROFS, "read-only file system"
    elif not os.access(parent, os.W_OK | os.X_OK):
        code, reason = errno.EACCES, "permission denied"
    else:
        code, reason = errno.EIO, f"write failed ({getattr(e, 'error_string', None) or e})"
    return OSError(code, f"cannot write: {reason}", str(out))
