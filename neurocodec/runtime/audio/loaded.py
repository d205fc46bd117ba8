"""The audio codec's implementation: the RVQ model, its index priors, and rate control, coding
audio to .nc files and back in chunks (constant memory for any length). codec.py holds the kind
class (options, describing files).

File layout (.nc, docs/nc_format.md): shape = (sample rate, samples, channels) of the input;
quality = nominal kbps * 10 (informational); streams:
  0      the parameters (params.py): T24 (samples at the model rate), per channel e (e/1024 RVQ
         stages per frame on average: rate control, index_model.stages_per_frame), then the
         input's sample format and a gain per channel (absent in this release's first files)
  1..C   the entropy-coded RVQ indices of each channel (index_model.IndexPriors)

Level: the decoder's output is multiplied per channel by a gain the encoder measured (the
input's RMS over the decoded output's, both at the input's rate, 0.25 dB steps). The shipped
model's decoder is systematically quiet (-3 to -4 dB on speech: it never learned the phase,
so its waveform L1 loss taught it to shrink loud passages); the gain restores the level
whatever the model, at one byte per channel, counted in the rate budget.

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

Memory (decoder.py): proportional to the output, not to the header's claim; the in-memory API
refuses outputs over decoder.MAX_ARRAY_BYTES (DecodeTooLargeError).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import weightzip
from neurocodec.runtime.audio.checks import (
    MAX_CHANNELS,
    MAX_SECONDS,
    AudioFormatError,
    AudioInputError,
    DecodeTooLargeError,
    check_kbps,
    check_signal,
    signal_problem,
)
from neurocodec.runtime.audio.codec import AudioCodec
from neurocodec.runtime.audio.decoder import (
    DECODE_CHUNK,
    DECODE_WORKERS,
    MAX_ARRAY_BYTES,
    CodeStore,
    check_array_size,
    decode_codes,
    progress_bar,
    split,
    synthesize,
)
from neurocodec.runtime.audio.index_model import IndexPriors, stage_mask
from neurocodec.runtime.audio.io import (
    DEFAULT_SUBTYPE,
    SUBTYPE_CODES,
    PowerMeter,
    StreamResampler,
    check_finite,
    subtype_of_array,
)
from neurocodec.runtime.audio.models import AudioModelConfig
from neurocodec.runtime.audio.params import AudioParams, gain_code, parse_params
from neurocodec.runtime.audio.ratecontrol import fit_stages
from neurocodec.runtime.audio.stream import CHUNK_FRAMES, encode_stream
from neurocodec.runtime.bitstream import NcFile
from neurocodec.runtime.registry import build_model
from neurocodec.runtime.torch_threads import one_intra_op_thread

__all__ = ["DECODE_CHUNK", "DECODE_WORKERS", "MAX_ARRAY_BYTES", "MAX_CHANNELS", "MAX_SECONDS", "AudioHeader",
           "DecodeTooLargeError", "LoadedAudioCodec"]


def as_channels_first(audio) -> np.ndarray:
    """[T] (mono) or [T, C] (soundfile's layout) -> float32 [C, T] in [-1, 1] for PCM."""
    x = np.asarray(audio)
    if x.dtype.kind not in "fiu" or x.ndim not in (1, 2):
        raise AudioInputError(f"audio must be a [samples] or [samples, channels] array, got {x.dtype} {x.shape}")
    if x.dtype.kind in "iu":  # PCM integers -> [-1, 1); unsigned PCM (8-bit WAV) is offset
        half = float(2 ** (8 * x.dtype.itemsize - 1))
        x = (x.astype(np.float64) - half if x.dtype.kind == "u" else x) / half
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


@dataclass
class AudioHeader:
    """The checked header of an audio .nc file."""
    sr: int
    n_samples: int
    channels: int
    params: AudioParams

    @property
    def subtype(self) -> str:
        return self.params.subtype


class LoadedAudioCodec(AudioCodec):
    """An audio codec with its model loaded (AudioCodec.from_dir / neurocodec.load_codec)."""

    def __init__(self, meta: dict, tensors: dict[str, torch.Tensor]):
        super().__init__(meta)
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
    def load(cls, path: Path, meta: dict) -> LoadedAudioCodec:
        return cls(meta, weightzip.load(path / meta.get("weights", "weights.wz"), framework="torch"))

    @property
    def kbps_range(self) -> tuple[float, float]:
        return self.cfg.kbps(1), self.cfg.kbps(self.n_max)

    def check_input(self, sr, n_samples: int, channels: int, kbps: float | None = None,
                    what: str = "audio") -> tuple[int, float]:
        """Everything the decoder will check of the header, checked before any work:
        (sr as int, kbps); AudioInputError otherwise."""
        sr = check_signal(sr, n_samples, channels, what)
        lo, hi = self.kbps_range
        return sr, check_kbps(self.default_kbps if kbps is None else kbps, lo, hi, channels, self.name)

    # -- encoder ------------------------------------------------------------------
    def _encode_fn(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.encode(torch.from_numpy(x)).numpy().astype(np.int16)  # [C, n_max, W]

    def encode_blocks(self, blocks, sr: int, n_samples: int, channels: int, kbps: float | None = None,
                      progress: bool = False, *, subtype: str = DEFAULT_SUBTYPE,
                      meter: PowerMeter | None = None) -> bytes:
        """blocks: float32 [C, n] at the model rate (e.g. io.read_blocks) of a signal that has
        n_samples at rate sr -> .nc bytes. subtype: the input's sample format (io.SUBTYPES);
        meter: the input's power at rate sr once the blocks are read (default: measured on
        the blocks, at the model rate)."""
        sr, kbps = self.check_input(sr, n_samples, channels, kbps)
        if subtype not in SUBTYPE_CODES:
            raise AudioInputError(f"unknown sample format {subtype!r} (one of {', '.join(SUBTYPE_CODES)})")
        if meter is None:
            meter = PowerMeter(channels)
            blocks = _metered(blocks, meter)
        F_est = -(-int(n_samples * self.sr / sr) // self.hop)
        n_enc = -(-F_est // CHUNK_FRAMES)  # then a decoding pass measures the gains
        bar = progress_bar(progress and n_enc > 1, n_enc + -(-F_est // DECODE_CHUNK), "encode")
        gen, parts = encode_stream(_not_empty(blocks, channels), self._encode_fn, self.hop), []
        while True:
            try:
                parts.append(next(gen))
                bar.update(1)
            except StopIteration as stop:
                T24 = int(stop.value or 0)
                break
        codes = np.concatenate(parts, -1)  # [C, n_max, F]
        budget = int(kbps * 1000 / 8 * n_samples / sr)  # bytes, the whole file
        shape = (sr, n_samples, channels)
        es, streams = self.rate_control(codes, budget, AudioParams(T24, [0] * channels, subtype), shape)
        sent = np.stack([np.where(stage_mask(e, codes.shape[-1], self.n_max), codes[c], -1) for c, e in enumerate(es)])
        out = PowerMeter(channels)
        for y in self._synth(split(sent, DECODE_CHUNK), channels, T24, sr, n_samples, None, sr, clip=False, bar=bar):
            out.add(y)
        bar.close()
        gains = [gain_code(i, o) for i, o in zip(meter.mean_square(), out.mean_square())]
        params = AudioParams(T24, es, subtype, gains)
        nc = NcFile(self.id, min(255, round(kbps * 10)), shape, [params.to_bytes(), *streams])
        try:  # what the decoder checks, on what is about to be written
            self.header(nc)
        except AudioFormatError as e:
            raise AudioInputError(f"audio cannot be coded ({e})") from None
        return nc.to_bytes()

    def rate_control(self, codes: np.ndarray, budget: int, params: AudioParams, shape: tuple
                     ) -> tuple[list[int], list[bytes]]:
        """Per channel, the largest e (stages * 1024 per frame) whose indices fit the budget."""
        C = codes.shape[0]
        e_max = 1024 * self.n_max
        p = AudioParams(params.T24, [e_max] * C, params.subtype, [0] * C).to_bytes()  # the largest
        head = NcFile(self.id, 0, shape, [p] + [bytes(budget // C)] * C).overhead
        per_ch = (budget - head - len(p)) // C
        es, streams = [], []
        for c in range(C):
            e, data = self._fit(codes[c], per_ch)
            es.append(e)
            streams.append(data)
        return es, streams

    def _fit(self, codes: np.ndarray, budget: int) -> tuple[int, bytes]:
        """Largest e whose coded indices fit budget bytes (1024 if none does)."""
        return fit_stages(self.priors, codes, budget, self.n_max)

    def encode(self, audio, sr: int | None = None, kbps: float | None = None, progress: bool = False,  # type: ignore[override]
               subtype: str | None = None) -> bytes:
        """audio [T] or [T, C] (float in [-1, 1] or PCM integers) at rate sr -> .nc bytes.
        subtype: the sample format a decoded file gets (default: the array's, e.g. float32 ->
        FLOAT, int16 -> PCM_16; io.SUBTYPES)."""
        if sr is None:
            raise AudioInputError("an audio array needs its sample rate (sr=)")
        x = as_channels_first(audio)  # [C, T]
        sr, kbps = self.check_input(sr, x.shape[1], len(x), kbps)
        subtype = subtype or subtype_of_array(np.asarray(audio).dtype)
        meter = PowerMeter(len(x))
        rs, step = StreamResampler(sr, self.sr, len(x)), 1 << 16

        def blocks() -> Iterator[np.ndarray]:
            for i in range(0, x.shape[1], step):
                b = x[:, i:i + step]
                meter.add(b)
                y = rs(b, last=i + step >= x.shape[1])
                if y.shape[1]:
                    yield y

        return self.encode_blocks(blocks(), sr, x.shape[1], len(x), kbps, progress, subtype=subtype, meter=meter)

    # -- decoder ------------------------------------------------------------------
    def header(self, nc: NcFile) -> AudioHeader:
        """The checked header; AudioFormatError (an NcFormatError) for anything this codec
        cannot decode."""
        if nc.codec_id != self.id:
            raise AudioFormatError(f"file was written by codec id {nc.codec_id}, not {self.name!r} ({self.id})")
        if len(nc.shape) != 3 or not nc.streams:
            raise AudioFormatError("corrupt .nc file (unexpected header for an audio codec)")
        sr, n, C = nc.shape
        problem = signal_problem(sr, n, C)
        if problem or len(nc.streams) != C + 1:
            raise AudioFormatError(f"corrupt .nc header (audio {sr} Hz, {n} samples, {C} channels: "
                                   f"{problem or f'{len(nc.streams)} streams'})")
        p = parse_params(nc.streams[0], C)
        expect = n * self.sr / sr
        if abs(p.T24 - expect) > 2 + expect * 1e-6 or not all(1024 <= e <= 1024 * self.n_max for e in p.es):
            raise AudioFormatError("corrupt .nc audio parameters")
        F = -(-p.T24 // self.hop)
        for c, e in enumerate(p.es):  # before anything is allocated: no short stream claims a day
            need = self.priors.min_stream_bytes(self.n_max, F, e)
            if len(nc.streams[1 + c]) < need:
                raise AudioFormatError(f"corrupt .nc audio indices (channel {c}: {len(nc.streams[1 + c])} bytes "
                                       f"cannot hold the {F} frames the header claims, which need {need} or more)")
        return AudioHeader(sr, n, C, p)

    def parse(self, nc: NcFile) -> tuple[int, int, int, int, list[int]]:
        """Checked header fields: (sr, n_samples, channels, T24, e per channel)."""
        h = self.header(nc)
        return h.sr, h.n_samples, h.channels, h.params.T24, h.params.es

    def stage_stats(self, nc: NcFile) -> dict:
        """Codes sent, their fixed-length packing size and their entropy-coded size (bytes)."""
        T24, es = self.parse(nc)[3:]
        F = -(-T24 // self.hop)
        sent = sum(F * e // 1024 for e in es)  # the sum of stage_mask(e, F, n_max), without building it
        bits = (self.cfg.codebook_size - 1).bit_length()
        return {"codes": sent, "fixed_bytes": -(-sent * bits // 8),
                "index_bytes": sum(len(s) for s in nc.streams[1:]), "stages": [e / 1024 for e in es]}

    def _codes(self, nc: NcFile, h: AudioHeader, spill_dir=None) -> CodeStore:
        """Every channel's RVQ indices (-1 where not sent), decoded one channel at a time."""
        F = -(-h.params.T24 // self.hop)
        return decode_codes(self.priors, nc.streams[1:], h.params.es, F, self.n_max, self.cfg.codebook_size,
                            spill_dir)

    def decode_codes(self, nc: NcFile) -> tuple[np.ndarray, int, int, int]:
        """(codes int16 [C, n_max, F], sr, n_samples, T24): all in memory, for tools."""
        h = self.header(nc)
        store = self._codes(nc, h)
        try:
            return store.window(0, store.F), h.sr, h.n_samples, h.params.T24
        finally:
            store.close()

    def _decode_fn(self, codes: np.ndarray) -> np.ndarray:
        # One chunk, in a worker thread or the caller's: the one-thread section covers this
        # call only, so nothing is held while a decoding generator is suspended.
        with one_intra_op_thread(), torch.inference_mode():
            x = torch.from_numpy(np.asarray(codes, np.int64))
            return self.model.decode(x).numpy()  # [C, 1, W * hop]

    def _synth(self, blocks, channels: int, T24: int, sr: int, n: int, gains: np.ndarray | None, out_sr: int,
               clip: bool = True, bar=None) -> Iterator[np.ndarray]:
        """decoder.synthesize() with this codec's model."""
        return synthesize(self._decode_fn, self.sr, self.hop, blocks, channels, T24, sr, n, gains, out_sr,
                          clip, bar)

    def decode_blocks(self, nc: NcFile, progress: bool = False, out_sr: int | None = None,
                      spill_dir=None) -> Iterator[np.ndarray]:
        """Yields float32 [C, n] blocks at out_sr (default: the input's rate), exactly the
        input's duration in all, at the input's level. Codes beyond decoder.CODE_MEMORY go to
        a temporary file in spill_dir (default: the system's)."""
        h = self.header(nc)
        store = self._codes(nc, h, spill_dir)
        bar = progress_bar(progress, -(-store.F // DECODE_CHUNK), "decode")
        try:
            yield from self._synth(store.blocks(DECODE_CHUNK), h.channels, h.params.T24, h.sr, h.n_samples,
                                   h.params.gain_factors(), h.sr if out_sr is None else int(out_sr), bar=bar)
        finally:  # also when the consumer stops early: the temporary code file goes now
            bar.close()
            store.close()

    def decode_nc(self, nc: NcFile, progress: bool = False, max_bytes: int = MAX_ARRAY_BYTES
                  ) -> tuple[np.ndarray, int]:
        """-> (float32 [T] for mono or [T, C], sample rate). DecodeTooLargeError (a
        ValueError, not an NcFormatError), before decoding anything, if that array would
        exceed max_bytes: decode such files to disk (decode_to_file)."""
        h = self.header(nc)
        check_array_size(h.n_samples, h.channels, h.sr, max_bytes)
        out = np.empty((h.n_samples,) if h.channels == 1 else (h.n_samples, h.channels), np.float32)
        rows, pos = out.reshape(h.n_samples, h.channels), 0
        for y in self.decode_blocks(nc, progress):
            rows[pos:pos + y.shape[1]] = y.T
            pos += y.shape[1]
        assert pos == h.n_samples
        return out, h.sr

    # -- files -------------------------------------------------------------------------
    def encode_file(self, path, progress: bool = False, kbps: float | None = None) -> bytes:  # type: ignore[override]
        """Audio file (any rate/channels soundfile reads) -> .nc bytes, read in constant
        memory. Everything the decoder checks is checked before the file is read."""
        from neurocodec.runtime.audio.io import info, read_blocks, subtype_of_file

        sr, n, channels = info(path)
        sr, kbps = self.check_input(sr, n, channels, kbps, what=str(path))
        meter = PowerMeter(channels)
        return self.encode_blocks(read_blocks(path, self.sr, meter), sr, n, channels, kbps, progress,
                                  subtype=subtype_of_file(path), meter=meter)

    def decode_to_file(self, nc: NcFile, out, progress: bool = False, overwrite: bool = False  # type: ignore[override]
                       ) -> tuple[int, int, int]:
        """Decode to a WAV or FLAC file, in the input's sample format where the container has
        it (io.out_format), block by block through a temporary file. Returns (sample rate,
        samples, channels). ValueError for another suffix and AudioFormatError for a bad file
        before any output exists; OSError naming out when it cannot be written."""
        from neurocodec.runtime.audio.io import check_output_path, out_format, write_blocks

        check_output_path(out)
        h = self.header(nc)
        fmt, subtype = out_format(out, h.subtype)
        # codes that do not fit in memory wait beside the output, which needs far more room
        write_blocks(out, self.decode_blocks(nc, progress, spill_dir=Path(out).parent), h.sr, h.channels, fmt,
                     subtype, overwrite)
        return h.sr, h.n_samples, h.channels


def _metered(blocks, meter: PowerMeter) -> Iterator[np.ndarray]:
    for b in blocks:
        b = np.asarray(b, np.float32)
        b = b[None] if b.ndim == 1 else b
        meter.add(b)
        yield b


def _not_empty(blocks, channels: int) -> Iterator[np.ndarray]:
    """The blocks, or one zero sample if they hold none: a few samples at 768 kHz are less
    than one at the model's rate, and T24 = 1 is within the decoder's tolerance of them."""
    n = 0
    for b in blocks:
        n += np.shape(b)[-1]
        yield b
    if not n:
        yield np.zeros((channels, 1), np.float32)
