"""The audio kind: what routing, `list`, `info` and output checks need, without torch. The
model lives in the implementation (loaded.py: LoadedAudioCodec)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from neurocodec.runtime.audio.checks import AudioFormatError
from neurocodec.runtime.audio.io import AUDIO_SUFFIXES, check_output_path
from neurocodec.runtime.bitstream import NcFile
from neurocodec.runtime.codec import Codec, Option, float_list
from weightzip.clitools import positive_float


class AudioCodec(Codec):
    """Audio: float or PCM arrays [T] or [T, C] with their sample rate (sr=), or audio files;
    decoded to (float32 array, sample rate) and WAV/FLAC files."""

    kind = "audio"
    implementation = "neurocodec.runtime.audio.loaded:LoadedAudioCodec"
    tools = "neurocodec.tools.audio.commands"
    archs = ("audio-rvq",)
    input_suffixes = AUDIO_SUFFIXES
    output_suffix = ".wav"
    input_hint = "an audio array with its sample rate (sr=) or an audio file"
    format_error = AudioFormatError
    options = {
        "encode": (Option("sr", int, "audio arrays: their sample rate", cli=False),
                   Option("kbps", positive_float, "audio: nominal bitrate of the whole file, headers included "
                          "(default 6)")),
        "train": (Option("weights", float_list, "audio: comma-separated sampling share per --data folder"),),
        "export": (Option("default_kbps", positive_float, "audio: default nominal bitrate"),
                   Option("prior_data", str, "audio: folders whose codes fit the index priors "
                          "(default: the training folders)", nargs="+")),
        "eval": (Option("kbps", float_list, "audio: comma-separated nominal rates (default 1.5,3,6)"),),
    }

    @classmethod
    def accepts(cls, data: Any, opts: dict[str, Any]) -> int:
        if opts.get("sr") is not None:
            return 2
        if isinstance(data, (str, os.PathLike)):
            return 2 if Path(data).suffix.lower() in AUDIO_SUFFIXES else 0
        return 0

    @classmethod
    def describe(cls, nc: NcFile, meta: dict, nbytes: int) -> dict:
        out = super().describe(nc, meta, nbytes)
        if len(nc.shape) == 3 and nc.shape[0] and nc.shape[1]:
            seconds = nc.shape[1] / nc.shape[0]
            out.update(kind="audio", seconds=round(seconds, 4), nominal_kbps=nc.quality / 10,
                       kbps=round(8 * nbytes / seconds / 1000, 4))
        return out

    @classmethod
    def encoded_summary(cls, info: dict) -> str:
        return f"{info['bytes']} bytes, {info['kbps']:.3f} kbps over {info['seconds']:.2f} s"

    @classmethod
    def decoded_summary(cls, info: dict) -> str:
        sr, _, ch = info["shape"]
        return f"{info['seconds']:.2f} s, {sr} Hz, {ch} channel(s)"

    @classmethod
    def summary(cls, meta: dict) -> str:
        cfg = meta.get("model", {})
        frames_per_s = cfg.get("sample_rate", 24000) / (cfg.get("patch", 1) * math.prod(cfg.get("strides", [320])))
        per = frames_per_s * (cfg.get("codebook_size", 1024) - 1).bit_length() / 1000  # kbps per codebook
        return f"{per:g}..{per * cfg.get('n_codebooks', 1):g} kbps, default {meta.get('default_kbps')}"

    @classmethod
    def check_output(cls, out: Path, nc: NcFile) -> None:
        check_output_path(out)

    @property
    def default_kbps(self) -> float:
        return float(self.meta.get("default_kbps", 6.0))
