"""The audio decoder's memory: what it holds is proportional to what it produces, never to
what a header claims (a small valid file may claim a day of 16 channels at 768 kHz).

* AudioCodec.header() refuses an index stream shorter than IndexPriors.min_stream_bytes()
  for the frames and stages the header claims, before anything is allocated: a file cannot
  claim more codes than its bytes can hold.
* Codes are decoded one channel at a time (IndexPriors.decode_frames: int32 indexes and
  symbols of one rANS stream at a time) into the smallest integer type that holds the
  codebook (int16), frame-major [F, n_q]. The format does not allow less than a channel at a
  time: stream j of a channel holds frame j of every segment, and a rANS stream is decoded in
  one call. All channels together stay in memory up to CODE_MEMORY bytes; beyond that each
  channel goes to an anonymous temporary file as soon as it is decoded (beside the output for
  decode_to_file), and synthesis reads back one window of frames per chunk.
* Synthesis runs chunk by chunk (DECODE_CHUNK frames, DECODE_WORKERS in flight): constant.
  Each chunk's model call runs under torch_threads.one_intra_op_thread(), entered and left
  around that call only, so a half-consumed decoding generator holds nothing that another
  decode waits for.
* The in-memory API (AudioCodec.decode_nc) refuses, before decoding anything, an output over
  MAX_ARRAY_BYTES of float32 samples (DecodeTooLargeError): such files decode to disk.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator

import numpy as np

from neurocodec.runtime.audio.checks import AudioFormatError, DecodeTooLargeError
from neurocodec.runtime.audio.index_model import IndexPriors
from neurocodec.runtime.audio.io import StreamResampler
from neurocodec.runtime.audio.stream import decode_stream

# Decoding runs in chunks of DECODE_CHUNK frames (3.3 s; 16 frames of context each side, a
# one-hop cross-fade), DECODE_WORKERS at a time, each on one intra-op thread: the samples
# depend on the chunking (part of the format) but not on the number of workers or threads.
DECODE_CHUNK = 250
DECODE_WORKERS = 2
CODE_MEMORY = 256 << 20  # bytes of codes (all channels) kept in memory; more go to a file
MAX_ARRAY_BYTES = 2 << 30  # float32 output of the in-memory API (AudioCodec.decode_nc)
RESAMPLE_OUT = 1 << 20  # about this many output samples (all channels) per resampler call


def code_dtype(codebook_size: int) -> np.dtype:
    """The smallest integer type that holds codes -1..codebook_size - 1."""
    return np.dtype(np.int16 if codebook_size <= 1 << 15 else np.int32)


class CodeStore:
    """The codes of every channel, frame-major [F, n_q] each, in memory or in an anonymous
    temporary file (spill_dir; None: the system's) when all of them exceed `memory` bytes."""

    def __init__(self, channels: int, F: int, n_q: int, dtype, spill_dir=None, memory: int | None = None):
        self.channels, self.F, self.n_q, self.dtype = channels, F, n_q, np.dtype(dtype)
        self._row = n_q * self.dtype.itemsize  # bytes per frame of one channel
        spill = channels * F * self._row > (CODE_MEMORY if memory is None else memory)
        self._dir = spill_dir
        self._file = tempfile.TemporaryFile(dir=spill_dir, prefix=".neurocodec-codes-") if spill else None
        self._mem: list[np.ndarray] = []
        self._n = 0

    def add(self, codes: np.ndarray) -> None:
        """The next channel's codes [F, n_q]."""
        assert codes.shape == (self.F, self.n_q) and codes.dtype == self.dtype
        if self._file is None:
            self._mem.append(codes)
        else:
            try:
                self._file.write(np.ascontiguousarray(codes).data)
            except OSError as e:  # ENOSPC would not say which file system
                raise OSError(e.errno, f"cannot write the decoder's temporary codes ({e.strerror})",
                              str(self._dir or tempfile.gettempdir())) from None
        self._n += 1

    def window(self, a: int, b: int) -> np.ndarray:
        """Codes [C, n_q, b - a] of frames a..b-1, -1 where not sent."""
        if self._file is None:
            return np.stack([c[a:b].T for c in self._mem])
        size, fd = (b - a) * self._row, self._file.fileno()
        out = []
        for c in range(self.channels):
            raw = os.pread(fd, size, (c * self.F + a) * self._row)
            if len(raw) != size:
                raise OSError(f"temporary code file: read {len(raw)} of {size} bytes")
            out.append(np.frombuffer(raw, self.dtype).reshape(b - a, self.n_q).T)
        return np.stack(out)

    def blocks(self, n: int) -> Iterator[np.ndarray]:
        assert self._n == self.channels
        if self._file is not None:
            self._file.flush()  # window() reads with os.pread
        for a in range(0, self.F, n):
            yield self.window(a, min(self.F, a + n))

    def close(self) -> None:
        self._mem.clear()
        if self._file is not None:
            self._file.close()


def decode_codes(priors: IndexPriors, streams: list[bytes], es: list[int], F: int, n_q: int,
                 codebook_size: int, spill_dir=None) -> CodeStore:
    """Each channel's index stream -> its codes, one channel at a time, into a CodeStore;
    AudioFormatError for corrupt streams or codes outside the codebook."""
    store = CodeStore(len(streams), F, n_q, code_dtype(codebook_size), spill_dir)
    try:
        for data, e in zip(streams, es):
            try:
                codes = priors.decode_frames(data, n_q, F, e=e, dtype=store.dtype)
            except ValueError as err:  # weightzip's FormatError from the rANS core
                raise AudioFormatError(f"corrupt .nc audio indices ({err})") from None
            if codes.max(initial=-1) >= codebook_size or codes.min(initial=-1) < -1:
                raise AudioFormatError("corrupt .nc audio indices")
            store.add(codes)
            del codes
    except BaseException:
        store.close()
        raise
    return store


def check_array_size(n_samples: int, channels: int, sr: int, limit: int = MAX_ARRAY_BYTES) -> None:
    """DecodeTooLargeError if the decoded float32 array would exceed limit bytes."""
    size = 4 * n_samples * channels
    if size > limit:
        h, rem = divmod(round(n_samples / sr), 3600)
        raise DecodeTooLargeError(
            f"this file decodes to {h}:{rem // 60:02d}:{rem % 60:02d} of {channels}-channel audio at {sr} Hz "
            f"({size / 2**30:.1f} GiB of float32 samples), more than neurocodec.decode returns in memory "
            f"({limit / 2**30:g} GiB): decode it to a file with neurocodec.decode_file() or "
            f"`neurocodec decode FILE -o out.wav`, which stream to disk")


def synthesize(decode_fn: Callable, model_sr: int, hop: int, blocks: Iterator[np.ndarray], channels: int,
               T24: int, sr: int, n: int, gains: np.ndarray | None, out_sr: int, clip: bool = True,
               bar=None) -> Iterator[np.ndarray]:
    """float32 [C, k] blocks at out_sr of the signal of n samples at sr that the code blocks
    [C, n_q, f] describe: model output x gains, resampled, clipped to [-1, 1]. The encoder
    measures its gains on exactly this (gains None, no clipping)."""
    total = n if out_sr == sr else round(n * out_sr / sr)
    rs, emitted = StreamResampler(model_sr, out_sr, channels), 0
    chunks = decode_stream(blocks, decode_fn, hop, T24, chunk_frames=DECODE_CHUNK, workers=DECODE_WORKERS)
    for last, y in _flag_last(chunks):
        if bar is not None:
            bar.update(1)
        if gains is not None:
            y = y * gains[:, None]
        # A chunk resampled at once is 164 MB at 768 kHz x 16 (and soxr needs twice that), so
        # large outputs are resampled a piece at a time: soxr's stream output does not depend
        # on how its input is cut (tests/test_audio_limits.py checks it).
        n, step = y.shape[1], max(1, RESAMPLE_OUT * model_sr // (out_sr * channels))
        for i in range(0, max(n, 1), step):
            z = rs.frames(y[:, i:i + step], last=last and i + step >= n)[: total - emitted]  # [k, C]
            if clip:
                np.clip(z, -1, 1, out=z)
            emitted += len(z)
            if len(z):
                yield z.T  # a view: writers take [k, C] as it is
    if emitted < total:  # the resampler's rounding: at most a sample or two
        yield np.zeros((channels, total - emitted), np.float32)


def split(codes: np.ndarray, n: int) -> Iterator[np.ndarray]:
    for i in range(0, codes.shape[-1], n):
        yield codes[..., i:i + n]


def _flag_last(it) -> Iterator[tuple[bool, np.ndarray]]:
    prev = next(it, None)
    for cur in it:
        yield False, prev
        prev = cur
    if prev is not None:
        yield True, prev


def progress_bar(progress: bool, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", disable=not progress or total < 2, leave=False)
