"""Decoded audio is faithful to the input's level and sample format; the encoder refuses what
the decoder would refuse; bad files and failed writes raise the documented errors.

The tiny random codec (tests/tiny_codec.py) decodes to noise at an arbitrary level, so the
level tests show the encoder's gain doing its work whatever the model; the data-marked test
checks the shipped codec on real speech and music."""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")
from common import REPO
from tiny_codec import tone

import neurocodec
from neurocodec.cli import main
from neurocodec.runtime.audio import io as aio
from neurocodec.runtime.audio.checks import AudioFormatError, AudioInputError
from neurocodec.runtime.audio.loaded import LoadedAudioCodec as AudioCodec
from neurocodec.runtime.audio.params import MUTE, REVISION, parse_params
from neurocodec.runtime.bitstream import NcFile, NcFormatError
from neurocodec.runtime.registry import load_codec
from weightzip.core import write_varint as _varint

pytestmark = pytest.mark.usefixtures("one_torch_thread")
AUDIO_DATA = REPO.parent / "shared" / "data" / "audio"
RELEASE1 = REPO / "tests" / "golden" / "audio_rvq_release1.nc"  # written by the first audio release


def level_db(x: np.ndarray) -> np.ndarray:
    """RMS level per channel (dBFS) of [T] or [T, C]."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return 10 * np.log10(np.mean(x ** 2, 0))


def with_params(data: bytes, params: bytes) -> bytes:
    """The same file with another parameter stream (checksums made valid)."""
    nc = NcFile.from_bytes(data)
    return NcFile(nc.codec_id, nc.quality, nc.shape, [params, *nc.streams[1:]]).to_bytes()


def release1_params(data: bytes) -> bytes:
    """The parameter stream the first release wrote: T24 and the e's, no revision block."""
    nc = NcFile.from_bytes(data)
    p = parse_params(nc.streams[0], nc.shape[2])
    return _varint(p.T24) + b"".join(_varint(e) for e in p.es)


# -------------------------------------------------------------------- level


@pytest.mark.parametrize("sr,levels", [(16000, (-6.0,)), (16000, (-40.0,)), (44100, (-12.0, -30.0)), (8000, (-20.0,))])
def test_decoded_level_matches_the_input(tiny, sr, levels):
    """Per channel, within 0.5 dB RMS, for loud and quiet inputs, at any rate."""
    x = tone(sr, 2.5, len(levels), seed=4).reshape(-1, len(levels))
    x = x / np.sqrt(np.mean(x ** 2, 0)) * 10 ** (np.array(levels) / 20)
    y, _ = neurocodec.decode(neurocodec.encode(x.astype(np.float32), sr, codec=tiny, kbps=1.5 * len(levels)))
    assert np.abs(level_db(y) - level_db(x)).max() < 0.5, (level_db(y), level_db(x))


def test_the_gain_is_what_restores_the_level(tiny):
    """Without its gain (a release-1 file of the same codes) the tiny codec is far off."""
    x = tone(16000, 2.0) * 0.05  # -35 dBFS
    data = neurocodec.encode(x, 16000, codec=tiny)
    y, _ = neurocodec.decode(data)
    y0, _ = neurocodec.decode(with_params(data, release1_params(data)))
    g = parse_params(NcFile.from_bytes(data).streams[0], 1).gain_factors()[0]
    assert abs(level_db(y0) - level_db(x))[0] > 3 and abs(level_db(y) - level_db(x))[0] < 0.5
    np.testing.assert_allclose(y, np.clip(y0 * g, -1, 1), atol=1e-5)


def test_digital_silence_decodes_to_digital_silence(tiny):
    data = neurocodec.encode(np.zeros((8000, 2), np.float32), 16000, codec=tiny, kbps=3)
    assert parse_params(NcFile.from_bytes(data).streams[0], 2).gains == [MUTE, MUTE]
    y, _ = neurocodec.decode(data)
    assert y.shape == (8000, 2) and not y.any()


@pytest.mark.parametrize("kbps", [0.5, 1.0, 1.8])
def test_side_information_stays_within_the_budget(tiny, kbps):
    x = tone(16000, 3.0, 2)
    data = neurocodec.encode(x, 16000, codec=tiny, kbps=2 * kbps)
    assert len(data) <= int(2 * kbps * 1000 / 8 * 3.0)


@pytest.mark.data
def test_shipped_codec_keeps_the_level_of_real_speech_and_music():
    """Within 0.5 dB RMS per file and on average, at 6 kbps (a quarter of the speech test
    set and the music test set; `bench` numbers: docs/nc_format.md)."""
    from neurocodec.runtime.registry import CodecNotFound

    try:
        load_codec("audio-rvq")
    except CodecNotFound:
        pytest.skip("the shipped audio codec is not installed")
    files = sorted((AUDIO_DATA / "speech" / "test").glob("*.flac"))[::4] + \
        sorted((AUDIO_DATA / "music" / "test").glob("*.flac"))
    if not files:
        pytest.skip("../shared/data/audio is absent")
    diffs = []
    for p in files:
        x, sr = sf.read(str(p), dtype="float32")
        y, _ = neurocodec.decode(neurocodec.encode(x, sr, codec="audio-rvq", kbps=6))
        diffs.append(float(np.mean(level_db(y) - level_db(x))))
    assert max(map(abs, diffs)) < 0.5 and abs(np.mean(diffs)) < 0.5, dict(zip([p.name for p in files], diffs))


# -------------------------------------------------------------------- sample format


@pytest.mark.parametrize("src_fmt,src_sub,out,want", [
    ("WAV", "PCM_16", ".wav", "PCM_16"), ("WAV", "PCM_24", ".wav", "PCM_24"), ("WAV", "PCM_32", ".wav", "PCM_32"),
    ("WAV", "FLOAT", ".wav", "FLOAT"), ("WAV", "DOUBLE", ".wav", "DOUBLE"), ("WAV", "PCM_U8", ".wav", "PCM_U8"),
    ("FLAC", "PCM_24", ".flac", "PCM_24"), ("FLAC", "PCM_S8", ".flac", "PCM_S8"),
    # containers without the source's format: the closest one they have
    ("WAV", "FLOAT", ".flac", "PCM_24"), ("WAV", "DOUBLE", ".flac", "PCM_24"), ("WAV", "PCM_32", ".flac", "PCM_24"),
    ("WAV", "PCM_U8", ".flac", "PCM_S8"), ("FLAC", "PCM_S8", ".wav", "PCM_U8"), ("FLAC", "PCM_24", ".wav", "PCM_24"),
])
def test_decoded_files_keep_the_sample_format(codec, tmp_path, src_fmt, src_sub, out, want):
    x = tone(22050, 0.9, 2)
    src = tmp_path / f"in.{src_fmt.lower()}"
    sf.write(str(src), x, 22050, format=src_fmt, subtype=src_sub)
    nc = NcFile.from_bytes(codec.encode_file(src, kbps=3))
    dst = tmp_path / f"out{out}"
    assert codec.decode_to_file(nc, dst) == (22050, len(x), 2)
    i = sf.info(str(dst))
    assert (i.subtype, i.samplerate, i.channels, i.frames) == (want, 22050, 2, len(x))


@pytest.mark.parametrize("dtype,want", [(np.float32, "FLOAT"), (np.float64, "DOUBLE"), (np.int16, "PCM_16"),
                                        (np.int32, "PCM_32"), (np.uint8, "PCM_U8"), (np.int8, "PCM_S8")])
def test_arrays_record_their_sample_format(tiny, codec, tmp_path, dtype, want):
    x = tone(16000, 0.5)
    if np.dtype(dtype).kind in "iu":
        bits = 8 * np.dtype(dtype).itemsize
        x = np.round(x * 2 ** (bits - 1)) + (2 ** (bits - 1) if np.dtype(dtype).kind == "u" else 0)
    data = neurocodec.encode(x.astype(dtype), 16000, codec=tiny)
    y, sr = neurocodec.decode(data)  # the array API is unchanged: float32
    assert y.dtype == np.float32 and sr == 16000 and y.shape == x.shape
    codec.decode_to_file(NcFile.from_bytes(data), tmp_path / "o.wav")
    assert sf.info(str(tmp_path / "o.wav")).subtype == ("PCM_U8" if want == "PCM_S8" else want)


def test_unsigned_pcm_is_centred(tiny):
    """8-bit WAV data is unsigned around 128: the same signal as its signed version."""
    s8 = np.round(tone(16000, 1.0) * 127).astype(np.int8)
    a = NcFile.from_bytes(neurocodec.encode(s8, 16000, codec=tiny))
    b = NcFile.from_bytes(neurocodec.encode((s8.astype(np.int16) + 128).astype(np.uint8), 16000, codec=tiny))
    assert a.streams[1:] == b.streams[1:]


def test_cli_keeps_a_24_bit_wav(tiny, tmp_path, capsys):
    src = tmp_path / "in.wav"
    sf.write(str(src), tone(48000, 0.7, 2), 48000, subtype="PCM_24")
    assert main(["encode", str(src), "-o", str(tmp_path / "x.nc"), "--codec", tiny, "--kbps", "3"]) == 0
    assert main(["decode", str(tmp_path / "x.nc"), "-o", str(tmp_path / "y.wav")]) == 0
    i = sf.info(str(tmp_path / "y.wav"))
    assert (i.subtype, i.samplerate, i.channels, i.frames) == ("PCM_24", 48000, 2, int(48000 * 0.7))
    capsys.readouterr()


# -------------------------------------------------------------------- release-1 files


def test_release1_file_of_the_shipped_codec_still_decodes(tmp_path):
    """A file the first audio release wrote (stereo chirp, 16 kHz, 1.5 s, 6 kbps): same
    length, rate and level as that release decoded it (-24.21 / -28.41 dBFS), 16-bit PCM."""
    from neurocodec.runtime.registry import CodecNotFound

    try:
        codec = load_codec("audio-rvq")
    except CodecNotFound:
        pytest.skip("the shipped audio codec is not installed")
    data = RELEASE1.read_bytes()
    y, sr = neurocodec.decode(data)
    assert sr == 16000 and y.shape == (24000, 2)
    np.testing.assert_allclose(level_db(y), [-24.211, -28.410], atol=0.02)
    out = tmp_path / "r1.flac"
    codec.decode_to_file(NcFile.from_bytes(data), out)
    assert sf.info(str(out)).subtype == "PCM_16"


def test_release1_layout_decodes_as_16_bit_at_unity_gain(tiny, codec, tmp_path):
    src = tmp_path / "f.wav"
    sf.write(str(src), tone(16000, 1.0), 16000, subtype="FLOAT")
    data = neurocodec.encode(src, codec=tiny)
    old = with_params(data, release1_params(data))
    h = codec.header(NcFile.from_bytes(old))
    assert h.subtype == "PCM_16" and h.params.gains is None and h.params.gain_factors().tolist() == [1.0]
    codec.decode_to_file(NcFile.from_bytes(old), tmp_path / "o.wav")
    assert sf.info(str(tmp_path / "o.wav")).subtype == "PCM_16"


# -------------------------------------------------------------------- bad files


def test_bad_parameter_blocks_are_format_errors(tiny):
    data = neurocodec.encode(tone(16000, 1.0), 16000, codec=tiny)
    base = release1_params(data)
    cases = {
        "newer": base + _varint(REVISION + 1) + b"\x01\x00",
        "revision 0": base + _varint(0) + b"\x01\x00",
        "subtype 0": base + _varint(REVISION) + b"\x00\x00",
        "subtype 99": base + _varint(REVISION) + b"\x63\x00",
        "no gain": base + _varint(REVISION) + b"\x01",
        "two gains": base + _varint(REVISION) + b"\x01\x00\x00",
        "truncated": base + b"\x81",
    }
    for what, params in cases.items():
        with pytest.raises(AudioFormatError) as e:
            neurocodec.decode(with_params(data, params))
        assert isinstance(e.value, NcFormatError), what
        if what == "newer":
            assert "newer" in str(e.value) and "upgrade" in str(e.value)


def test_corrupt_index_streams_are_format_errors(tiny):
    data = neurocodec.encode(tone(16000, 2.0), 16000, codec=tiny)
    nc = NcFile.from_bytes(data)
    rng = np.random.default_rng(0)
    for trial in range(40):
        s = bytearray(nc.streams[1])
        if trial % 2:
            s = s[: rng.integers(0, len(s))]
        else:
            s[rng.integers(0, len(s))] ^= 1 << int(rng.integers(0, 8))
        bad = NcFile(nc.codec_id, nc.quality, nc.shape, [nc.streams[0], bytes(s)]).to_bytes()
        try:
            neurocodec.decode(bad)
        except ValueError as e:
            assert isinstance(e, NcFormatError), (trial, type(e), e)


# -------------------------------------------------------------------- the encoder checks first


@pytest.mark.parametrize("sr", [999, 1, 800000])
def test_unsupported_rates_are_refused_on_every_path(tiny, tmp_path, capsys, sr):
    src = tmp_path / f"r{sr}.wav"
    x = tone(1000, 0.2)
    sf.write(str(src), x, sr)
    out = tmp_path / "r.nc"
    rc = main(["encode", str(src), "-o", str(out), "--codec", tiny])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("neurocodec: error: ") and err.count("\n") == 1, err
    assert "sample rate" in err and not out.exists() and not list(tmp_path.glob(".*"))
    for call in (lambda: neurocodec.encode(src, codec=tiny), lambda: neurocodec.encode(x, sr, codec=tiny),
                 lambda: load_codec(tiny).encode_file(src)):
        with pytest.raises(AudioInputError, match="sample rate"):
            call()


@pytest.mark.parametrize("sr", [1000, 768000])
@pytest.mark.parametrize("n", [1, 7, 333])
def test_edge_rates_and_tiny_lengths_round_trip(tiny, sr, n):
    x = (0.1 * np.random.default_rng(n).standard_normal((n, 2))).astype(np.float32)
    y, sr2 = neurocodec.decode(neurocodec.encode(x, sr, codec=tiny, kbps=3))
    assert sr2 == sr and y.shape == x.shape


def test_every_encoder_refusal_is_an_audio_input_error(tiny, tmp_path):
    for bad in (dict(audio=np.zeros((100, 17), np.float32), sr=16000),
                dict(audio=np.zeros(0, np.float32), sr=16000),
                dict(audio=np.zeros(100, np.float32), sr=16000, kbps=0.1),
                dict(audio=np.zeros(100, np.float32), sr=16000.5)):
        with pytest.raises(AudioInputError):
            neurocodec.encode(bad["audio"], bad["sr"], codec=tiny, kbps=bad.get("kbps"))


# -------------------------------------------------------------------- outputs


@pytest.mark.parametrize("name", ["x.mp3", "x.WAV.txt", "noext"])
def test_check_output_path_refuses_other_suffixes(name):
    with pytest.raises(ValueError, match=r"\.wav or \.flac"):
        aio.check_output_path(name)
    assert aio.check_output_path("a/b.FLAC") == "FLAC" and aio.check_output_path("c.wav") == "WAV"


def test_decode_to_file_refuses_a_bad_suffix_before_decoding(codec, tmp_path, monkeypatch):
    nc = NcFile.from_bytes(neurocodec.encode(tone(16000, 0.5), 16000, codec=codec.meta["path"]))
    monkeypatch.setattr(AudioCodec, "header", lambda *a: pytest.fail("decoded before checking the suffix"))
    with pytest.raises(ValueError, match="wav or"):
        codec.decode_to_file(nc, tmp_path / "o.ogg")


def test_decode_to_file_overwrite(codec, tmp_path):
    nc = NcFile.from_bytes(neurocodec.encode(tone(16000, 0.5), 16000, codec=codec.meta["path"]))
    out = tmp_path / "o.wav"
    out.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        codec.decode_to_file(nc, out)
    assert out.read_bytes() == b"keep"
    codec.decode_to_file(nc, out, overwrite=True)
    assert sf.info(str(out)).frames == 8000


@pytest.mark.parametrize("free,want", [(0, errno.ENOSPC), (1 << 40, errno.EIO)])
def test_failed_writes_name_the_output_and_the_reason(codec, tmp_path, monkeypatch, free, want):
    """libsndfile says only "System error."; the error names out (not the temporary file)
    and says why, and nothing is left behind."""
    import shutil

    nc = NcFile.from_bytes(neurocodec.encode(tone(16000, 0.5), 16000, codec=codec.meta["path"]))

    def failing_write(self, data):
        raise sf.LibsndfileError(2, "Error writing: ")  # SF_ERR_SYSTEM

    monkeypatch.setattr(sf.SoundFile, "write", failing_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 41, (1 << 41) - free, free))
    out = tmp_path / "o.wav"
    with pytest.raises(OSError) as e:
        codec.decode_to_file(nc, out)
    assert e.value.errno == want and e.value.filename == str(out), e.value
    if want == errno.ENOSPC:
        assert "no space left on device" in str(e.value)
    assert os.listdir(tmp_path) == []
