"""Classical audio anchors, run as the system's command-line tools.

* Opus (libopus via opus-tools' opusenc/opusdec): hard CBR at a given bitrate, decoded back at
  the input's rate. Sizes are reported twice: the whole Ogg file, and the Opus packets alone
  (the Ogg/OpusHead/OpusTags overhead is ~1 kB however short the clip).
* Codec2 (Debian's `codec2` package, c2enc/c2dec): 8 kHz speech codec; the input is resampled
  to 8 kHz 16-bit, coded in a mode (3200, 1200... bits/s), decoded and resampled back. Its
  files are bare frames (no header), so file and payload bytes are the same."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np


def opus_available() -> bool:
    return bool(shutil.which("opusenc") and shutil.which("opusdec"))


def opus_version() -> str:
    try:
        out = subprocess.run(["opusenc", "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return "unavailable"
    return out.splitlines()[0].strip() if out else "unknown"


def ogg_packet_bytes(data: bytes) -> list[int]:
    """Sizes of the packets of an Ogg stream (pages parsed, lacing joined)."""
    sizes, cur, pos = [], 0, 0
    while pos + 27 <= len(data):
        if data[pos:pos + 4] != b"OggS":
            raise ValueError("not an Ogg stream")
        nseg = data[pos + 26]
        lace = data[pos + 27: pos + 27 + nseg]
        for v in lace:
            cur += v
            if v < 255:
                sizes.append(cur)
                cur = 0
        pos += 27 + nseg + sum(lace)
    return sizes


def opus_roundtrip(x: np.ndarray, sr: int, kbps: float) -> tuple[np.ndarray, int, int]:
    """x float mono [T] at sr -> (decoded [T] float32, Ogg file bytes, Opus packet bytes)."""
    import soundfile as sf

    with tempfile.TemporaryDirectory() as d:
        src, enc, dec = Path(d, "in.wav"), Path(d, "x.opus"), Path(d, "out.wav")
        sf.write(str(src), np.clip(x, -1, 1), sr, subtype="PCM_16")
        subprocess.run(["opusenc", "--quiet", "--bitrate", f"{kbps:g}", "--hard-cbr", str(src), str(enc)],
                       check=True, capture_output=True, timeout=300)
        subprocess.run(["opusdec", "--quiet", "--rate", str(sr), str(enc), str(dec)],
                       check=True, capture_output=True, timeout=300)
        y, _ = sf.read(str(dec), dtype="float32", always_2d=True)
        data = enc.read_bytes()
    y = y[:, 0]
    y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    return y, len(data), sum(ogg_packet_bytes(data)[2:])  # packets 0, 1: OpusHead, OpusTags


def codec2_available() -> bool:
    return bool(shutil.which("c2enc") and shutil.which("c2dec"))


def codec2_roundtrip(x: np.ndarray, sr: int, mode: int) -> tuple[np.ndarray, int]:
    """x float mono [T] at sr -> (decoded [T] float32 at sr, coded bytes) with Codec2 `mode`."""
    import soxr

    pcm = np.clip(soxr.resample(x.astype(np.float32), sr, 8000) if sr != 8000 else x, -1, 1)
    pcm16 = np.round(pcm * 32767).astype("<i2")
    with tempfile.TemporaryDirectory() as d:
        src, enc, dec = Path(d, "in.raw"), Path(d, "x.bit"), Path(d, "out.raw")
        src.write_bytes(pcm16.tobytes())
        subprocess.run(["c2enc", str(mode), str(src), str(enc)], check=True, capture_output=True, timeout=300)
        subprocess.run(["c2dec", str(mode), str(enc), str(dec)], check=True, capture_output=True, timeout=300)
        y8 = np.frombuffer(dec.read_bytes(), "<i2").astype(np.float32) / 32768
        nbytes = enc.stat().st_size
    y = soxr.resample(y8, 8000, sr) if sr != 8000 else y8
    y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    return y.astype(np.float32), nbytes

