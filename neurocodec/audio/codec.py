"""A shipped audio codec: the RVQ model, its index priors, and rate control, coding audio to
.nc files and back in chunks (constant memory for any length).

File layout (.nc, docs/nc_format.md): shape = (sample rate, samples, channels) of the input;
quality = nominal kbps * 10 (informational); streams:
  0      varint T24 (samples at the model rate), then per channel the varint e: e/1024 RVQ
         stages per frame on average (rate control; index_model.stages_per_frame)
  1..C   the entropy-coded RVQ indices of each channel (index_model.IndexPriors)

Channels are coded independently with the mono model and share the nominal rate equally
(kbps is the whole file's rate, as opusenc's --bitrate); input at other rates is resampled to
the model's 24 kHz with soxr and back on decoding.

Rate control: the nominal rate is a budget for the whole file, header included. The encoder
computes all n_codebooks stages once, then picks per channel the largest e whose
entropy-coded indices fit the budget, so the savings of entropy coding buy extra stages
instead of leaving the file below its nominal rate.

Determinism: entropy decoding is exact; the float32 decoder runs chunk by chunk, each chunk on
one intra-op thread (two chunks at a time in worker threads), so a file decodes to the same
samples in any process and at any torch thread count.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..bitstream import NcFile, NcFormatError, _read_varint, _varint
from ..registry import build_model, register_kind
from ..torch_utils import one_intra_op_thread
from .index_model import SEG_LENS, IndexPriors, stage_mask
from .io import AudioInputError, StreamResampler, check_finite
from .models import AudioModelConfig
from .stream import CHUNK_FRAMES, decode_stream, encode_stream

MAX_CHANNELS = 16
# Decoding runs in chunks of DECODE_CHUNK frames (3.3 s; 16 frames of context each side, a
# one-hop cross-fade), DECODE_WORKERS at a time, each on one intra-op thread: the samples
# depend on the chunking (part of the format) but not on the number of workers or threads.
DECODE_CHUNK = 250
DECODE_WORKERS = 2
STREAM_BYTES = 5  # size model: a rANS stream's flush and its length varint
MAX_SECONDS = 24 * 3600  # a day of audio: bounds what a header may ask the decoder to produce


def as_channels_first(audio) -> np.ndarray:
    """[T] (mono) or [T, C] (soundfile's layout) -> float32 [C, T]."""
    x = np.asarray(audio)
    if x.dtype.kind not in "fiu" or x.ndim not in (1, 2):
        raise AudioInputError(f"audio must be a [samples] or [samples, channels] array, got {x.dtype} {x.shape}")
    if x.dtype.kind in "iu":  # PCM integers -> [-1, 1)
        x = x.astype(np.float32) / float(2 ** (8 * x.dtype.itemsize - 1))
    x = np.ascontiguousarray((x[:, None] if x.ndim == 1 else x).T, np.float32)
    if not 1 <= len(x) <= MAX_CHANNELS:
        raise AudioInputError(f"audio has {len(x)} channels (1..{MAX_CHANNELS} supported)")
    return check_finite(x)


def fold_weight_norm(model: torch.nn.Module) -> None:
    """Replace weight-norm parametrizations by their plain weights: the same values, without
    recomputing g * v / |v| on every call."""
    from torch.nn.utils import parametrize

    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


@register_kind("audio")
class AudioCodec:
    kind = "audio"

    def __init__(self, meta: dict, tensors: dict[str, torch.Tensor]):
        self.meta = meta
        self.name, self.id = meta["name"], int(meta["id"])
        self.cfg = AudioModelConfig.from_dict(meta["model"])
        model = build_model(meta.get("arch", "audio-rvq"), self.cfg.to_dict())
        state = {k[6:]: v.float() if v.is_floating_point() else v for k, v in tensors.items()
                 if k.startswith("model.")}
        model.load_state_dict(state)
        fold_weight_norm(model)
        self.model = model.eval().requires_grad_(False)
        self.priors = IndexPriors(tensors["priors.class_map"].numpy(), tensors["priors.cdfs"].numpy())
        self.sr, self.hop, self.n_max = self.cfg.sample_rate, self.cfg.hop_length, self.cfg.n_codebooks

    @classmethod
    def from_dir(cls, path: Path, meta: dict | None = None) -> AudioCodec:
        import weightzip

        meta = meta or json.loads((path / "codec.json").read_text())
        return cls(meta, weightzip.load(path / meta.get("weights", "weights.wz"), framework="torch"))

    @property
    def kbps_range(self) -> tuple[float, float]:
        return self.cfg.kbps(1), self.cfg.kbps(self.n_max)

    @property
    def default_kbps(self) -> float:
        return float(self.meta.get("default_kbps", 6.0))

    # -- encoder ------------------------------------------------------------------
    def _encode_fn(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.encode(torch.from_numpy(x)).numpy().astype(np.int16)  # [C, n_max, W]

    def encode_blocks(self, blocks, sr: int, n_samples: int, channels: int, kbps: float | None = None,
                      progress: bool = False) -> bytes:
        """blocks: float32 [C, n] at the model rate (e.g. io.read_blocks) of a signal that has
        n_samples at rate sr -> .nc bytes."""
        kbps = self.default_kbps if kbps is None else float(kbps)
        lo, hi = self.kbps_range
        if not lo * channels <= kbps <= hi * channels:
            raise ValueError(f"kbps must be in [{lo * channels:g}, {hi * channels:g}] for "
                             f"{channels} channel(s) with codec {self.name!r}")
        if n_samples < 1 or sr < 1:
            raise AudioInputError("audio has no samples")
        if n_samples > MAX_SECONDS * sr:
            raise AudioInputError("audio is longer than a day")
        F_est = -(-int(n_samples * self.sr / sr) // self.hop)
        bar = _bar(progress, -(-F_est // CHUNK_FRAMES), "encode")
        gen, parts = encode_stream(blocks, self._encode_fn, self.hop), []
        while True:
            try:
                parts.append(next(gen))
                bar.update(1)
            except StopIteration as stop:
                T24 = int(stop.value or 0)
                break
        bar.close()
        if not T24:
            raise AudioInputError("audio has no samples")
        codes = np.concatenate(parts, -1)  # [C, n_max, F]
        budget = int(kbps * 1000 / 8 * n_samples / sr)  # bytes, the whole file
        es, streams = self.rate_control(codes, budget, T24, (sr, n_samples, channels))
        params = _varint(T24) + b"".join(_varint(e) for e in es)
        return NcFile(self.id, min(255, round(kbps * 10)), (sr, n_samples, channels), [params, *streams]).to_bytes()

    def rate_control(self, codes: np.ndarray, budget: int, T24: int, shape: tuple) -> tuple[list[int], list[bytes]]:
        """Per channel, the largest e (stages * 1024 per frame) whose indices fit the budget."""
        C = codes.shape[0]
        e_max = 1024 * self.n_max
        head = NcFile(self.id, 0, shape, [_varint(T24) + _varint(e_max) * C] + [bytes(budget // C)] * C).overhead
        per_ch = (budget - head - len(_varint(T24)) - C * len(_varint(e_max))) // C
        es, streams = [], []
        for c in range(C):
            e, data = self._fit(codes[c], per_ch)
            es.append(e)
            streams.append(data)
        return es, streams

    def _fit(self, codes: np.ndarray, budget: int) -> tuple[int, bytes]:
        """Largest e whose coded indices fit budget bytes (1024 if none does).

        Exact coding is costly (one rANS call per stream), so the search runs on a size model:
        the ideal bits with the segment length L, plus STREAM_BYTES per stream; L is chosen
        once by the same model. One to a few exact codings then correct the model's error."""
        F = codes.shape[-1]

        def mask(e: int) -> np.ndarray:
            return stage_mask(e, F, self.n_max)

        def model(e: int, L: int) -> float:
            return self.priors.ideal_bits(codes, L, mask(e)) / 8 + STREAM_BYTES * L

        def search(lo: int, hi: int, fits) -> int:  # largest e in [lo, hi] that fits (lo if none)
            if fits(hi):
                return hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
            return lo

        e_max, lens = 1024 * self.n_max, [L for L in SEG_LENS if L <= F]
        e = search(1024, e_max, lambda e: self.priors.ideal_bits(codes, None, mask(e)) / 8 <= budget)
        L = min(lens, key=lambda L: model(e, L))
        e = search(1024, e_max, lambda e: model(e, L) <= budget)
        data = self.priors.encode(codes, L, mask(e))
        for _ in range(4):  # correct the model by the measured error, never above the budget
            err = len(data) - model(e, L)
            e2 = search(1024, e_max, lambda x, err=err: model(x, L) + err <= budget)
            if e2 == e:
                break
            d2 = self.priors.encode(codes, L, mask(e2))
            if len(d2) > budget and len(data) <= budget:
                break
            e, data = e2, d2
        while len(data) > budget and e > 1024:
            e = max(1024, e - 16)
            data = self.priors.encode(codes, L, mask(e))
        return e, data

    def encode(self, audio, sr: int, kbps: float | None = None, progress: bool = False) -> bytes:
        """audio [T] or [T, C] (float in [-1, 1] or PCM integers) at rate sr -> .nc bytes."""
        x = as_channels_first(audio)  # [C, T]
        if int(sr) < 1000 or int(sr) > 768000:
            raise AudioInputError(f"sample rate {sr} is not supported")
        rs = StreamResampler(int(sr), self.sr, len(x))
        step = 1 << 16

        def blocks() -> Iterator[np.ndarray]:
            for i in range(0, x.shape[1], step):
                y = rs(x[:, i:i + step], last=i + step >= x.shape[1])
                if y.shape[1]:
                    yield y

        return self.encode_blocks(blocks(), int(sr), x.shape[1], len(x), kbps, progress)

    # -- decoder ------------------------------------------------------------------
    def parse(self, nc: NcFile) -> tuple[int, int, int, int, list[int]]:
        """Checked header fields: (sr, n_samples, channels, T24, e per channel)."""
        if nc.codec_id != self.id:
            raise NcFormatError(f"file was written by codec id {nc.codec_id}, not {self.name!r} ({self.id})")
        if len(nc.shape) != 3 or not nc.streams:
            raise NcFormatError("corrupt .nc file (unexpected header for an audio codec)")
        sr, n, C = nc.shape
        if not (1000 <= sr <= 768000 and 1 <= n <= MAX_SECONDS * sr and 1 <= C <= MAX_CHANNELS) \
                or len(nc.streams) != C + 1:
            raise NcFormatError(f"corrupt .nc header (audio {sr} Hz, {n} samples, {C} channels)")
        try:
            T24, pos = _read_varint(nc.streams[0], 0)
            es = []
            for _ in range(C):
                e, pos = _read_varint(nc.streams[0], pos)
                es.append(e)
        except NcFormatError:
            raise NcFormatError("corrupt .nc audio parameters") from None
        expect = n * self.sr / sr
        if pos != len(nc.streams[0]) or abs(T24 - expect) > 2 + expect * 1e-6 or \
                not all(1024 <= e <= 1024 * self.n_max for e in es):
            raise NcFormatError("corrupt .nc audio parameters")
        return sr, n, C, T24, es

    def stage_stats(self, nc: NcFile) -> dict:
        """Codes sent, their fixed-length packing size and their entropy-coded size (bytes)."""
        T24, es = self.parse(nc)[3:]
        F = -(-T24 // self.hop)
        sent = int(sum(stage_mask(e, F, self.n_max).sum() for e in es))
        bits = (self.cfg.codebook_size - 1).bit_length()
        return {"codes": sent, "fixed_bytes": -(-sent * bits // 8),
                "index_bytes": sum(len(s) for s in nc.streams[1:]), "stages": [e / 1024 for e in es]}

    def decode_codes(self, nc: NcFile) -> tuple[np.ndarray, int, int, int]:
        sr, n, C, T24, es = self.parse(nc)
        F = -(-T24 // self.hop)
        codes = np.stack([self.priors.decode(nc.streams[1 + c], self.n_max, F, stage_mask(es[c], F, self.n_max))
                          for c in range(C)])  # [C, n_max, F], -1 = not sent
        if codes.max(initial=-1) >= self.cfg.codebook_size or codes.min(initial=-1) < -1:
            raise NcFormatError("corrupt .nc audio indices")
        return codes, sr, n, T24

    def _decode_fn(self, codes: np.ndarray) -> np.ndarray:
        # Called under one_intra_op_thread() (decode_blocks); set again because with OpenMP the
        # intra-op thread count is a per-thread setting and this may run in a worker thread.
        torch.set_num_threads(1)
        with torch.inference_mode():
            return self.model.decode(torch.from_numpy(codes)).numpy()  # [C, 1, W * hop]

    def decode_blocks(self, nc: NcFile, progress: bool = False, out_sr: int | None = None) -> Iterator[np.ndarray]:
        """Yields float32 [C, n] blocks at out_sr (default: the input's rate), exactly the
        input's duration in all."""
        codes, sr, n, T24 = self.decode_codes(nc)
        out_sr = sr if out_sr is None else int(out_sr)
        total = n if out_sr == sr else round(n * out_sr / sr)
        rs, emitted = StreamResampler(self.sr, out_sr, len(codes)), 0
        bar = _bar(progress, -(-codes.shape[-1] // DECODE_CHUNK), "decode")
        with one_intra_op_thread():
            chunks = decode_stream(_split(codes, DECODE_CHUNK), self._decode_fn, self.hop, T24,
                                   chunk_frames=DECODE_CHUNK, workers=DECODE_WORKERS)
            for last, y in _flag_last(chunks):
                bar.update(1)
                y = rs(np.clip(y, -1, 1), last=last)[:, : total - emitted]
                emitted += y.shape[1]
                if y.shape[1]:
                    yield y
        bar.close()
        if emitted < total:  # the resampler's rounding: at most a sample or two
            yield np.zeros((len(codes), total - emitted), np.float32)

    def decode_nc(self, nc: NcFile, progress: bool = False) -> tuple[np.ndarray, int]:
        """-> (float32 [T] for mono or [T, C], sample rate)."""
        y = np.concatenate(list(self.decode_blocks(nc, progress)), 1)  # [C, T]
        return (y[0] if len(y) == 1 else np.ascontiguousarray(y.T)), nc.shape[0]

    def decode(self, data: bytes) -> tuple[np.ndarray, int]:
        return self.decode_nc(NcFile.from_bytes(data))


def _split(codes: np.ndarray, n: int) -> Iterator[np.ndarray]:
    for i in range(0, codes.shape[-1], n):
        yield codes[..., i:i + n]


def _flag_last(it) -> Iterator[tuple[bool, np.ndarray]]:
    prev = next(it, None)
    for cur in it:
        yield False, prev
        prev = cur
    if prev is not None:
        yield True, prev


def _bar(progress: bool, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", disable=not progress or total < 2, leave=False)



def encode_file(codec: AudioCodec, path, kbps: float | None = None, progress: bool = False) -> bytes:
    """Audio file (any rate/channels soundfile reads) -> .nc bytes, read in constant memory."""
    from .io import info, read_blocks

    sr, n, channels = info(path)
    if n < 1:
        raise AudioInputError(f"{path}: no samples")
    if channels > MAX_CHANNELS:
        raise AudioInputError(f"{path}: {channels} channels (1..{MAX_CHANNELS} supported)")
    return codec.encode_blocks(read_blocks(path, codec.sr), sr, n, channels, kbps, progress)


def decode_to_file(codec: AudioCodec, nc: NcFile, out, progress: bool = False) -> tuple[int, int, int]:
    """Decode to a WAV or FLAC file (16-bit PCM) block by block, through a temporary file.
    Returns (sample rate, samples, channels)."""
    import soundfile as sf

    from weightzip.api import atomic_path

    from .io import out_format

    fmt, subtype = out_format(out)
    sr, n, C, _, _ = codec.parse(nc)
    with atomic_path(Path(out)) as tmp, \
            sf.SoundFile(str(tmp), "w", samplerate=sr, channels=C, format=fmt, subtype=subtype) as f:
        for y in codec.decode_blocks(nc, progress):
            f.write(np.ascontiguousarray(y.T))
    return sr, n, C
