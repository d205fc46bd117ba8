"""Audio metrics (SI-SDR, mel distance, STOI, PESQ-WB) and the Opus anchor's Ogg accounting."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("soxr")
from neurocodec.tools.audio import metrics
from neurocodec.tools.audio.anchors import (
    codec2_available,
    codec2_roundtrip,
    ogg_packet_bytes,
    opus_available,
    opus_roundtrip,
)


def speechlike(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonics with pauses: enough structure for STOI/PESQ to score."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    x = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sr) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    return (0.2 * x * env + 0.002 * rng.standard_normal(len(t))).astype(np.float32)


def test_si_sdr_properties():
    x = speechlike(16000, 1.0)
    assert metrics.si_sdr(x, 0.5 * x) > 100  # scale-invariant
    noisy = x + 0.1 * np.std(x) * np.random.default_rng(1).standard_normal(len(x))
    assert metrics.si_sdr(x, noisy) == pytest.approx(20, abs=0.5)


def test_mel_distance_orders_degradations():
    x = speechlike(16000, 1.0)
    rng = np.random.default_rng(2)
    small = x + 0.01 * rng.standard_normal(len(x)).astype(np.float32)
    large = x + 0.1 * rng.standard_normal(len(x)).astype(np.float32)
    d0, d1, d2 = (metrics.mel_distance(x, y, 16000) for y in (x, small, large))
    assert d0 == 0 and 0 < d1 < d2


def test_stoi_and_pesq_rank_clean_above_noisy():
    pytest.importorskip("pystoi")
    pytest.importorskip("pesq")
    x = speechlike(16000, 3.0)
    noisy = x + 0.05 * np.random.default_rng(3).standard_normal(len(x)).astype(np.float32)
    assert metrics.stoi(x, x, 16000) > 0.99 > metrics.stoi(x, noisy, 16000)
    clean, bad = metrics.pesq_wb(x, x, 16000), metrics.pesq_wb(x, noisy, 16000)
    assert clean > 4 and bad < clean
    assert math.isnan(metrics.pesq_wb(x[:1000], x[:1000], 16000))  # too short to score


def _page(packets: list[bytes], seq: int) -> bytes:
    lace = b"".join(bytes([255] * (len(p) // 255) + [len(p) % 255]) for p in packets)
    head = b"OggS" + bytes([0, 0]) + struct.pack("<qIII", 0, 1, seq, 0) + bytes([len(lace)])
    return head + lace + b"".join(packets)


def test_ogg_packet_sizes_join_lacing():
    pk = [b"a" * 19, b"b" * 300, b"c" * 255, b"d"]
    assert ogg_packet_bytes(_page(pk[:2], 0) + _page(pk[2:], 1)) == [19, 300, 255, 1]
    with pytest.raises(ValueError):
        ogg_packet_bytes(b"RIFF" + bytes(40))


@pytest.mark.skipif(not opus_available(), reason="opusenc/opusdec not installed")
def test_opus_roundtrip_rates():
    x = speechlike(16000, 4.0)
    y, file_bytes, payload = opus_roundtrip(x, 16000, 6.0)
    assert y.shape == x.shape and file_bytes > payload
    assert 8 * payload / 4.0 / 1000 == pytest.approx(6.0, rel=0.05)


@pytest.mark.skipif(not codec2_available(), reason="c2enc/c2dec (Debian codec2) not installed")
@pytest.mark.parametrize("mode", [3200, 1200])
def test_codec2_roundtrip_rates(mode):
    x = speechlike(16000, 4.0)
    y, nbytes = codec2_roundtrip(x, 16000, mode)
    assert y.shape == x.shape and y.dtype == np.float32
    assert 8 * nbytes / 4.0 == pytest.approx(mode, rel=0.02)  # bare frames: the file is the payload
    # a vocoder: the waveform differs, its level does not
    assert np.isfinite(y).all() and 0.3 < np.sqrt(np.mean(y ** 2) / np.mean(x ** 2)) < 3

