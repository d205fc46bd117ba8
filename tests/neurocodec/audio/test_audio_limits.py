"""The audio decoder's memory follows what it produces, not what a header claims; the in-memory
API refuses outputs it cannot hold; a suspended decode blocks no other decode.

"Day" files are crafted with the tiny codec (tests/tiny_codec.py): valid headers claiming 24 h
(at most 16 channels at 768 kHz, the caps of neurocodec/audio/checks.py) over index streams
that really hold a day of codes, each the most probable symbol of its table (the cheapest
valid stream: 0.8 MB a channel)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")
soxr = pytest.importorskip("soxr")
from tiny_codec import tone

import neurocodec
from neurocodec.runtime.audio import decoder
from neurocodec.runtime.audio.checks import MAX_SECONDS, AudioFormatError, DecodeTooLargeError
from neurocodec.runtime.audio.index_model import IndexPriors, stage_mask
from neurocodec.runtime.audio.loaded import LoadedAudioCodec as AudioCodec
from neurocodec.runtime.audio.params import AudioParams, parse_params
from neurocodec.runtime.bitstream import NcFile, NcFormatError
from neurocodec.runtime.registry import load_codec
from neurocodec.runtime.torch_threads import one_intra_op_thread
from weightzip.core import FormatError, encode_indexed
from weightzip.core import write_varint as _varint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def day_file(codec: AudioCodec, channels: int, sr: int, seconds: int = MAX_SECONDS) -> bytes:
    """A valid .nc file of `seconds` of audio: every stage sent, one segment per frame (L = 1,
    so the decoder's largest rANS call: the whole channel), the same stream in each channel."""
    p, nq = codec.priors, codec.n_max
    n = seconds * sr
    T24 = n * codec.sr // sr
    F = -(-T24 // codec.hop)
    idx = np.arange(nq, dtype=np.int32) * p.n_ctx  # START tables
    sym = np.diff(p.cdfs[idx], axis=1).argmax(1).astype(np.int32)
    stream = _varint(1) + encode_indexed(np.tile(sym, F), np.tile(idx, F), *p.to_tables())
    params = AudioParams(T24, [1024 * nq] * channels, "PCM_16", [0] * channels).to_bytes()
    return NcFile(codec.id, 10, (sr, n, channels), [params] + [stream] * channels).to_bytes()


def lying_file(tiny: str, channels: int, sr: int) -> bytes:
    """A 2 s clip's streams under a header that claims a day (checksums valid)."""
    nc = NcFile.from_bytes(neurocodec.encode(tone(16000, 2.0, channels).reshape(-1, channels), 16000,
                                             codec=tiny, kbps=1.5 * channels))
    p = parse_params(nc.streams[0], channels)
    n = MAX_SECONDS * sr
    params = AudioParams(n * 24000 // sr, p.es, p.subtype, p.gains).to_bytes()
    return NcFile(nc.codec_id, nc.quality, (sr, n, channels), [params, *nc.streams[1:]]).to_bytes()


def greedy_codes(p: IndexPriors, n_q: int, F: int) -> np.ndarray:
    """The cheapest codes under the priors: each the most probable after its predecessor."""
    freq = np.diff(p.cdfs, axis=1)[:, :-1]
    codes = np.empty((n_q, F), np.int64)
    for k in range(n_q):
        v = freq[k * p.n_ctx].argmax()
        for t in range(F):
            codes[k, t] = v = freq[k * p.n_ctx + (p.class_map[k, v] if t else 0)].argmax()
    return codes


# -------------------------------------------------------------------- index streams


def test_decoding_by_stage_count_matches_the_mask(codec):
    """decode_frames(e=...) builds no [n_q, F] mask and stores int16, with the same codes."""
    rng = np.random.default_rng(0)
    p, K, n = codec.priors, codec.cfg.codebook_size, codec.n_max
    for F, e, L in [(333, 1024, None), (333, 1100, 3), (1, 2560, 1), (400, 3071, 1), (257, 4096, 256), (90, 1537, 90)]:
        codes = rng.integers(0, K, (n, F))
        mask = stage_mask(e, F, n)
        data = p.encode(codes, L, mask)
        got = p.decode_frames(data, n, F, e=e, dtype=np.int16)
        assert got.dtype == np.int16 and got.shape == (F, n)
        assert np.array_equal(got.T, np.where(mask, codes, -1)), (F, e, L)
        assert np.array_equal(p.decode(data, n, F, mask), got.T)
        assert len(data) >= p.min_stream_bytes(n, F, e)


def test_codes_a_narrow_type_cannot_hold_are_format_errors(codec):
    p, n = codec.priors, codec.n_max
    codes = np.zeros((n, 50), np.int64)
    codes[1, 7] = 40000  # an escape-coded value outside int16
    data = p.encode(codes, 5)
    assert p.decode(data, n, 50)[1, 7] == 40000  # int64 by default, as before
    with pytest.raises(FormatError, match="int16"):
        p.decode_frames(data, n, 50, dtype=np.int16)


@pytest.mark.parametrize("name", ["tiny", "shipped"])
def test_min_stream_bytes_is_a_lower_bound_even_for_the_cheapest_codes(codec, name):
    if name == "shipped":
        from neurocodec.runtime.registry import CodecNotFound

        try:
            codec = load_codec("audio-rvq")
        except CodecNotFound:
            pytest.skip("the shipped audio codec is not installed")
    p, n, F = codec.priors, codec.n_max, 3000
    codes = greedy_codes(p, n, F)
    for e in (1024, 1500, 1024 * n):
        need = p.min_stream_bytes(n, F, e)
        assert need > 0
        for L in (1, 2, 16, 256, F):
            assert len(p.encode(codes, L, stage_mask(e, F, n))) >= need, (e, L)


def test_a_short_stream_claiming_a_day_is_refused_before_decoding(tiny, codec, monkeypatch):
    data = lying_file(tiny, 16, 768000)
    monkeypatch.setattr(IndexPriors, "decode_frames", lambda *a, **k: pytest.fail("decoded a lying stream"))
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(AudioFormatError, match="cannot hold the 6480000 frames"):
            neurocodec.decode(data, codec=tiny)
        with pytest.raises(NcFormatError):
            codec.decode_to_file(NcFile.from_bytes(data), Path("/nonexistent-dir/o.wav"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20 and time.perf_counter() - t < 5, (peak, time.perf_counter() - t)


# -------------------------------------------------------------------- memory of a day


CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from neurocodec.runtime.bitstream import NcFile
    from neurocodec.runtime.registry import load_codec

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) << 10

    codec = load_codec(sys.argv[1])
    nc = NcFile.from_bytes(open(sys.argv[2], "rb").read())
    base = status("VmHWM")
    budget = int(sys.argv[4])
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + 2 * budget,) * 2)  # fail, never swap
    blocks = codec.decode_blocks(nc, spill_dir=sys.argv[3])
    n = 0
    for i, y in enumerate(blocks):  # the codes of every channel, then two chunks of output
        assert y.shape[0] == nc.shape[2] and np.isfinite(y).all() and np.abs(y).max() <= 1
        n += y.shape[1]
        if n > 2 * 250 * 320 * nc.shape[0] // 24000:
            break
    blocks.close()
    print(status("VmHWM") - base, budget)
""")


def test_a_day_of_16_channels_at_768_khz_decodes_in_bounded_memory(tiny, codec, tmp_path):
    """The caps' largest claim, in a valid 12 MB file: 104 M codes. The decoder used to build
    every channel's codes up front as int64 plus temporaries (+6.3 GB); now one channel at a
    time as int16, the rest spilled to disk (+0.3 GB)."""
    src = tmp_path / "day.nc"
    src.write_bytes(day_file(codec, 16, 768000))
    assert src.stat().st_size < 16 << 20
    budget = 700 << 20  # over the loaded codec's peak RSS
    r = subprocess.run([sys.executable, "-c", CHILD, tiny, str(src), str(tmp_path), str(budget)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    grew, _ = map(int, r.stdout.split())
    assert grew < budget, f"peak RSS grew by {grew >> 20} MiB"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.nc"]  # the spilled codes are gone


def test_spilled_codes_decode_to_the_same_samples(tiny, codec, tmp_path, monkeypatch):
    data = neurocodec.encode(tone(22050, 9.0, 3, seed=2), 22050, codec=tiny, kbps=4)
    y, _ = neurocodec.decode(data)
    codes = codec.decode_codes(NcFile.from_bytes(data))[0]
    assert codes.dtype == np.int16 and codes.shape[:2] == (3, codec.n_max)
    monkeypatch.setattr(decoder, "CODE_MEMORY", 0)  # every file spills
    y2, _ = neurocodec.decode(data)
    assert np.array_equal(y, y2)
    assert np.array_equal(codec.decode_codes(NcFile.from_bytes(data))[0], codes)
    out = tmp_path / "o.wav"
    codec.decode_to_file(NcFile.from_bytes(data), out)
    assert [p.name for p in tmp_path.iterdir()] == ["o.wav"] and sf.info(str(out)).frames == len(y)


def test_resampling_in_pieces_is_bit_exact(tiny, monkeypatch):
    """High rates x many channels are resampled a piece of a chunk at a time (a chunk at
    768 kHz x 16 is 164 MB): soxr's stream output does not depend on the cut."""
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((100000, 3))).astype(np.float32)
    for sr in (768000, 44100, 1000):
        outs = []
        for step in (100000, 8192, 777):
            rs = soxr.ResampleStream(24000, sr, 3, dtype="float32", quality="VHQ")
            outs.append(np.concatenate([rs.resample_chunk(x[i:i + step], last=i + step >= len(x))
                                        for i in range(0, len(x), step)]))
        assert all(np.array_equal(outs[0], o) for o in outs[1:]), sr
    data = neurocodec.encode(tone(48000, 4.0, 2, seed=1), 48000, codec=tiny, kbps=3)
    ys = []
    for piece in (1 << 40, 1 << 20, 5000):  # whole chunks (the first release), default, small
        monkeypatch.setattr(decoder, "RESAMPLE_OUT", piece)
        ys.append(neurocodec.decode(data)[0])
    assert np.array_equal(ys[0], ys[1]) and np.array_equal(ys[0], ys[2])


# -------------------------------------------------------------------- the in-memory API


def test_in_memory_decode_refuses_large_outputs_before_allocating(tiny, codec, monkeypatch):
    data = day_file(codec, 1, 24000)  # valid, 0.8 MB: 24 h mono is 8 GB of float32
    codec.header(NcFile.from_bytes(data))  # nothing wrong with the file
    monkeypatch.setattr(decoder, "decode_codes", lambda *a, **k: pytest.fail("decoded before the size check"))
    tracemalloc.start()
    try:
        with pytest.raises(DecodeTooLargeError) as e:
            neurocodec.decode(data, codec=tiny)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    assert isinstance(e.value, ValueError) and not isinstance(e.value, NcFormatError)
    msg = str(e.value)
    assert "24:00:00" in msg and "neurocodec.decode_file" in msg and "neurocodec decode" in msg, msg


def test_the_in_memory_limit_is_exact(tiny, codec):
    nc = NcFile.from_bytes(neurocodec.encode(tone(16000, 1.0, 2), 16000, codec=tiny, kbps=3))
    size = 4 * 16000 * 2
    y, sr = codec.decode_nc(nc, max_bytes=size)
    assert y.shape == (16000, 2) and y.dtype == np.float32 and y.flags.c_contiguous
    with pytest.raises(DecodeTooLargeError, match="decode_file"):
        codec.decode_nc(nc, max_bytes=size - 1)
    assert decoder.MAX_ARRAY_BYTES == 2 << 30


# -------------------------------------------------------------------- threads


def test_a_half_consumed_decode_does_not_block_another(tiny, codec):
    """The one-thread section covers each chunk's model call, never a yield: a decoding
    generator left suspended holds nothing a decode in another thread waits for."""
    data = neurocodec.encode(tone(16000, 12.0, seed=5), 16000, codec=tiny)  # 4 chunks
    ref, _ = neurocodec.decode(data)
    n_threads = torch.get_num_threads()
    gen = codec.decode_blocks(NcFile.from_bytes(data))
    first = next(gen)
    got = {}
    t = threading.Thread(target=lambda: got.update(y=neurocodec.decode(data)[0]), daemon=True)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "a suspended decode blocked another thread's decode"
    assert np.array_equal(got["y"], ref)
    rest = np.concatenate([first, *gen], 1)[0]
    assert np.array_equal(rest, ref)  # the suspended decode resumes with the same samples
    assert torch.get_num_threads() == n_threads


def test_one_thread_sections_overlap_and_restore_the_count():
    n = torch.get_num_threads()
    inside, release, seen = threading.Barrier(2, timeout=30), threading.Event(), []

    def section():
        with one_intra_op_thread():
            seen.append(torch.get_num_threads())
            inside.wait()  # both threads inside at once: neither waits for the other
            release.wait(30)

    threads = [threading.Thread(target=section) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join(30)
    assert seen == [1, 1] and not inside.broken
    with one_intra_op_thread():
        with one_intra_op_thread():  # nested in one thread
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == n
