"""Chunked encoding and decoding of long signals: constant memory, no seams.

Both sides work on a grid of frames (hop samples each; the signal is zero-padded to
F = ceil(T / hop) frames, as AudioCodecModel does) and process it in chunks of chunk_frames,
each with overlap_frames of context on both sides (clipped at the signal's ends):

* encoder: iter_chunks() cuts the signal into windows [c*N - O, (c+1)*N + O) frames; encode_fn
  sees the whole window and only the chunk's own N frames of codes are kept. With O at least
  the encoder's receptive field (in frames) the codes are those of encoding the whole signal
  (a window edge at the signal's ends is the same zero padding the whole signal gets).
* decoder: chunk c decodes codes [c*N - O, (c+1)*N + O) and keeps its own samples plus
  fade/2 on each side; consecutive chunks are blended over those fade samples with a raised
  cosine, written as own + (prev - own) * (1 - w) so that identical halves stay bit-exact.

Memory: the encoder holds at most one window of audio plus the blocks read past it; the
decoder holds one window of codes and fade samples of audio. Everything is a generator; codes
(n_q int64 per frame) are what callers accumulate.

encode_fn: float32 [C, 1, W * hop] -> codes [C, n_q, W]; decode_fn: codes [C, n_q, W] ->
[C, 1, W * hop] (C = channels, coded independently as a batch; model_fns() wraps a model).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

CHUNK_FRAMES = 750  # 10 s at 75 frames/s
OVERLAP_FRAMES = 16  # > the default model's receptive field: encoder ±8.8 frames, decoder ±10


@dataclass
class Window:
    x: np.ndarray  # float32 [C, (stop - start) * hop]: frames [start, stop), zero-padded at the end
    start: int  # first frame of the window
    own: slice  # the chunk's own frames, relative to the window
    n_samples: int | None  # total input samples once the reader is exhausted, else None


def _blocks(reader, read_size: int) -> Iterator[np.ndarray]:
    """Float32 [C, n] blocks from an iterable of arrays ([C, n] or mono [n]) or from an object
    with read(n) returning [C, n] blocks (an empty one at the end)."""
    while hasattr(reader, "read"):
        b = np.asarray(reader.read(read_size), np.float32)
        if b.size == 0:
            return
        yield b[None] if b.ndim == 1 else b
    for b in reader:
        b = np.asarray(b, np.float32)
        yield b[None] if b.ndim == 1 else b


def iter_chunks(reader, chunk_frames: int = CHUNK_FRAMES, overlap_frames: int = OVERLAP_FRAMES,
                hop: int = 320) -> Iterator[Window]:
    """Windows of frames [c*N - O, (c+1)*N + O) of the signal reader gives (see the module
    docstring); the generator's return value is the number of samples read."""
    N, O = int(chunk_frames), int(overlap_frames)  # noqa: E741  (the docstring's N and O)
    if N < 1 or O < 0 or hop < 1:
        raise ValueError("need chunk_frames >= 1, overlap_frames >= 0, hop >= 1")
    blocks = _blocks(reader, N * hop)
    buf, buf_start, pending, total, eof, C = None, 0, [], 0, False, None
    c = 0
    while True:
        need = ((c + 1) * N + O) * hop  # samples (exclusive) the full window needs
        while not eof and total < need:
            b = next(blocks, None)
            if b is None:
                eof = True
                break
            if b.ndim != 2 or (C is not None and b.shape[0] != C):
                raise ValueError(f"audio blocks must be [channels, samples], got {b.shape}")
            C = b.shape[0]
            pending.append(b)
            total += b.shape[1]
        if pending:
            buf = np.concatenate(pending if buf is None else [buf, *pending], 1)
            pending.clear()
        F = -(-total // hop) if eof else None
        if F is not None and c * N >= F:
            return total
        start = max(0, c * N - O)
        own_stop, stop = (c + 1) * N, (c + 1) * N + O
        if F is not None:
            own_stop, stop = min(own_stop, F), min(stop, F)
        x = buf[:, start * hop - buf_start: stop * hop - buf_start]
        if x.shape[1] < (stop - start) * hop:  # the signal's last partial frame
            x = np.pad(x, ((0, 0), (0, (stop - start) * hop - x.shape[1])))
        yield Window(x, start, slice(c * N - start, own_stop - start), total if eof else None)
        c += 1
        drop = max(0, c * N - O) * hop - buf_start  # samples no later window needs
        if drop > 0:
            buf, buf_start = buf[:, drop:], buf_start + drop


def encode_stream(reader, encode_fn: Callable, hop: int, chunk_frames: int = CHUNK_FRAMES,
                  overlap_frames: int = OVERLAP_FRAMES) -> Iterator[np.ndarray]:
    """Yields int64 codes [C, n_q, frames] chunk by chunk; the generator's return value
    (StopIteration.value, or `yield from`) is the number of input samples."""
    chunks = iter_chunks(reader, chunk_frames, overlap_frames, hop)
    while True:
        try:
            w = next(chunks)
        except StopIteration as stop:
            return stop.value
        codes = np.asarray(encode_fn(w.x[:, None, :]))
        if codes.ndim != 3 or codes.shape[-1] != w.x.shape[-1] // hop:
            raise ValueError(f"encode_fn returned {codes.shape} for {w.x.shape[-1] // hop} frames")
        yield codes[..., w.own].astype(np.int64)


def encode_all(reader, encode_fn: Callable, hop: int, **kw) -> tuple[np.ndarray, int]:
    """(codes [C, n_q, F], n_samples) of a whole signal, read and encoded chunk by chunk."""
    gen, parts = encode_stream(reader, encode_fn, hop, **kw), []
    while True:
        try:
            parts.append(next(gen))
        except StopIteration as stop:
            n = stop.value or 0
            break
    codes = np.concatenate(parts, -1) if parts else np.zeros((1, 0, 0), np.int64)
    return codes, n


def raised_cosine(n: int) -> np.ndarray:
    """Fade-in weights w[i] = sin²(π (i + ½) / 2n), w + w[::-1] = 1."""
    return (np.sin(np.pi * (np.arange(n) + 0.5) / (2 * n)) ** 2).astype(np.float32)


def decode_stream(codes: Iterable[np.ndarray], decode_fn: Callable, hop: int, n_samples: int,
                  chunk_frames: int = CHUNK_FRAMES, overlap_frames: int = OVERLAP_FRAMES,
                  fade: int | None = None, workers: int = 1) -> Iterator[np.ndarray]:
    """codes: blocks [C, n_q, f] (any sizes) of the ceil(n_samples / hop) frames, in order.
    Yields float32 [C, n] audio, n_samples in all. fade (samples, default one hop, at most
    2 * overlap_frames * hop and chunk_frames * hop) is the cross-fade at chunk boundaries.
    workers > 1 decodes that many chunks at once in threads (decode_fn must be thread-safe);
    the output does not depend on it."""
    N, O = int(chunk_frames), int(overlap_frames)  # noqa: E741  (the docstring's N and O)
    F = -(-int(n_samples) // hop)
    fade = min(hop, 2 * O * hop) if fade is None else int(fade)
    h = fade // 2
    if N < 1 or O < 0 or h > O * hop or 2 * h > N * hop:
        raise ValueError("need chunk_frames >= 1, 0 <= fade <= min(2 * overlap, chunk) * hop")
    starts = list(range(0, F, N))
    if len(starts) > 1 and (F - starts[-1]) * hop < h:  # too short to fade into: merge
        starts.pop()
    it = iter(codes)

    def windows() -> Iterator[tuple[int, int, int, np.ndarray]]:
        cbuf, cstart = None, 0
        for c, a in enumerate(starts):
            b = F if c == len(starts) - 1 else starts[c + 1]
            ws, we = max(0, a - O), min(F, b + O)
            while cbuf is None or cstart + cbuf.shape[-1] < we:
                blk = next(it, None)
                if blk is None:
                    raise ValueError(f"codes end before frame {we} of {F}")
                blk = np.asarray(blk)
                cbuf = blk if cbuf is None else np.concatenate([cbuf, blk], -1)
            yield a, b, ws, cbuf[..., ws - cstart: we - cstart]
            drop = b - O - cstart  # frames no later chunk needs
            if drop > 0:
                cbuf, cstart = cbuf[..., drop:], cstart + drop
        if (cbuf is not None and cstart + cbuf.shape[-1] > F) or any(np.size(x) for x in it):
            raise ValueError(f"more codes than the {F} frames of {n_samples} samples")

    w, tail, emitted = raised_cosine(2 * h), None, 0
    for c, (a, b, ws, y) in enumerate(_ordered_map(decode_fn, windows(), workers)):
        last = c == len(starts) - 1
        y = np.asarray(y, np.float32)
        y = y.reshape(y.shape[0], -1)
        if y.shape[1] != (min(F, b + O) - ws) * hop:
            raise ValueError(f"decode_fn returned {y.shape[1]} samples for {min(F, b + O) - ws} frames")
        lo, hi = a * hop - (h if c else 0), b * hop + (0 if last else h)
        seg = y[:, lo - ws * hop: hi - ws * hop]
        if c and h:
            head = seg[:, : 2 * h]
            seg = np.concatenate([head + (tail - head) * (1 - w), seg[:, 2 * h:]], 1)
        if not last and h:
            seg, tail = seg[:, : -2 * h], seg[:, -2 * h:].copy()
        seg = seg[:, : n_samples - emitted]
        emitted += seg.shape[1]
        yield seg


def _ordered_map(fn: Callable, items: Iterator[tuple], workers: int) -> Iterator[tuple]:
    """(a, b, ws, fn(codes)) in order, with up to `workers` calls in flight (bounded memory)."""
    if workers <= 1:
        for a, b, ws, x in items:
            yield a, b, ws, fn(x)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        queue: deque = deque()
        for a, b, ws, x in items:
            queue.append((a, b, ws, pool.submit(fn, x)))
            if len(queue) >= workers:
                a0, b0, w0, f0 = queue.popleft()
                yield a0, b0, w0, f0.result()
        while queue:
            a0, b0, w0, f0 = queue.popleft()
            yield a0, b0, w0, f0.result()


def model_fns(model, n_q: int | None = None) -> tuple[Callable, Callable]:
    """(encode_fn, decode_fn) on numpy arrays for an AudioCodecModel (no grad, its device)."""
    import torch

    dev = next(model.parameters()).device

    @torch.no_grad()
    def enc(x: np.ndarray) -> np.ndarray:
        return model.encode(torch.from_numpy(np.ascontiguousarray(x)).to(dev), n_q).cpu().numpy()

    @torch.no_grad()
    def dec(codes: np.ndarray) -> np.ndarray:
        return model.decode(torch.from_numpy(np.ascontiguousarray(codes)).to(dev)).cpu().numpy()

    return enc, dec
