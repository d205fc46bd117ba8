"""Image files out and header checks (neurocodec/runtime/image/io.py, writers.py, limits.py):
lossless writers picked by the output suffix (and a refusal, before decoding, of lossy or
unknown ones), and the one header check shared by the encoder and the decoder. Small images
(48x64) and the tiny random codec of tests/tiny_codec.py: nothing here loads the shipped
codecs. Reading images: test_image_io.py."""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")
from image_io_helpers import H, W, noise
from PIL import Image, features
from tiny_codec import TINY_ID

from neurocodec import api
from neurocodec.cli import main
from neurocodec.runtime.bitstream import NcFile, NcFormatError
from neurocodec.runtime.image import io as nio
from neurocodec.runtime.registry import load_codec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- lossless writers by suffix --------------------------------------------------------------------

WRITERS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".ppm": "PPM", ".pgm": "PPM",
           ".pnm": "PPM", ".webp": "WEBP", ".PNG": "PNG", ".Tif": "TIFF"}


@pytest.mark.parametrize("suffix", list(WRITERS))
@pytest.mark.parametrize("gray", [False, True], ids=["rgb", "gray"])
def test_each_writer_round_trips_exactly(tmp_path, suffix, gray):
    if suffix == ".webp" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    if suffix == ".pgm" and not gray:
        pytest.skip("PGM holds gray only (refused: test_refused_outputs)")
    img = noise(c=1 if gray else 3, seed=7)
    out = tmp_path / f"x{suffix}"
    assert nio.check_image_output(out, img.shape) == WRITERS[suffix]
    assert nio.write_image(out, img) == out
    with Image.open(out) as im:
        assert im.format == WRITERS[suffix]  # the format the suffix names, not PNG bytes
        back = np.asarray(im)
    if gray and suffix == ".webp":  # WebP has no gray: three equal channels
        back = back[:, :, 0] if np.array_equal(back[:, :, 0], back[:, :, 2]) else back
    assert back.dtype == np.uint8 and back.shape == img.shape
    assert np.array_equal(back, img)
    assert os.listdir(tmp_path) == [out.name]  # no temporary sibling left


REFUSED = {"x.jpg": "x.jpg: JPEG is lossy; write .png, .tif, .bmp, .ppm or lossless .webp",
           "x.JPEG": "JPEG is lossy", "x.gif": "256 colours", "x.avif": "lossy", "x.wav": "'.wav' is not an image",
           "x.nc": "'.nc' is not an image", "x.txt": "not an image", "noext": "no suffix"}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_outputs(tmp_path, name):
    out = tmp_path / name
    with pytest.raises(ValueError) as e:
        nio.check_image_output(out)
    assert str(e.value).startswith(str(out)) and REFUSED[name] in str(e.value), str(e.value)
    with pytest.raises(ValueError, match="lossy|not an image|no suffix|256"):
        nio.write_image(out, noise())
    assert not os.listdir(tmp_path)


def test_refused_by_shape(tmp_path):
    with pytest.raises(ValueError, match="PGM holds grayscale only"):
        nio.check_image_output(tmp_path / "x.pgm", (H, W, 3))
    with pytest.raises(ValueError, match="PGM holds grayscale only"):
        nio.write_image(tmp_path / "x.pgm", noise())
    assert nio.check_image_output(tmp_path / "x.pgm", (H, W, 1)) == "PPM"  # an .nc header's shape
    if features.check("webp"):
        with pytest.raises(ValueError, match="16383"):
            nio.check_image_output(tmp_path / "x.webp", (20000, 8, 3))
    for bad in (noise().astype(np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError):
            nio.write_image(tmp_path / "x.png", bad)
    assert not os.listdir(tmp_path)


def test_write_image_overwrite(tmp_path):
    out = tmp_path / "x.png"
    out.write_bytes(b"previous")
    with pytest.raises(FileExistsError):
        nio.write_image(out, noise())
    assert out.read_bytes() == b"previous"
    nio.write_image(out, noise(), overwrite=True)
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im), noise())
    assert nio.write_png is nio.write_image  # the old name still works


def test_cli_refuses_a_lossy_output_before_decoding(tiny, tmp_path, capsys, monkeypatch):
    from neurocodec.runtime.image.loaded import LoadedImageCodec

    nc = tmp_path / "a.nc"
    nc.write_bytes(api.encode(noise(), codec=tiny, quality=0))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before checking the output name")

    monkeypatch.setattr(LoadedImageCodec, "decode_nc", no_decoding)  # the class that holds the model
    for name in ("a.jpg", "a.wav"):
        rc = main(["decode", str(nc), "--codec", tiny, "-o", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert rc == 1 and err.startswith("neurocodec: error: ") and err.count("\n") == 1, err
        assert name in err and ("lossy" in err or "not an image" in err), err
    assert sorted(os.listdir(tmp_path)) == ["a.nc"]


# ---- one validation for encoder and decoder ----------------------------------------------------------

@pytest.mark.parametrize("steps", [-5, -1, 1.5, True, "3", None])
def test_refine_steps_are_validated(tiny, steps):
    codec = load_codec(tiny)
    with pytest.raises(ValueError, match="refine_steps must be a whole number >= 0"):
        codec.encode(noise(), quality=0, refine_steps=steps)
    if steps is None:  # the API's None means "not given": the default, no refinement
        assert api.encode(noise(), codec=tiny, refine_steps=steps) == api.encode(noise(), codec=tiny)
    else:
        with pytest.raises(ValueError, match="refine_steps"):
            api.encode(noise(), codec=tiny, refine_steps=steps)
    with pytest.raises(ValueError, match="refine_steps"):
        codec.check_encode_args(None, steps)


def test_cli_refuses_negative_refine_steps(tiny, tmp_path, capsys):
    Image.fromarray(noise()).save(tmp_path / "a.png")
    try:  # refused as an error (status 1) or by argparse (usage, status 2): never coded
        rc = main(["encode", str(tmp_path / "a.png"), "--codec", tiny, "--refine-steps", "-5",
                   "-o", str(tmp_path / "a.nc")])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc in (1, 2) and "refine" in err and "-5" in err, err
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


@pytest.mark.parametrize("quality", [3, 99, -1, 1.5, True, "1", 256])
def test_quality_is_validated(tiny, quality):
    codec = load_codec(tiny)  # qualities 0, 1, 2
    with pytest.raises(ValueError, match="quality"):
        codec.encode(noise(), quality=quality)
    with pytest.raises(ValueError, match="quality"):
        codec.check_encode_args(quality, 0)
    assert codec.check_encode_args(None, 0) == (codec.default_quality, 0)
    assert codec.check_encode_args(np.int64(2), 3) == (2, 3)


def nc_bytes(shape, quality: int = 1, streams=None) -> bytes:
    """A .nc whose checksums are valid: only the codec's own checks stand in the way."""
    return NcFile(TINY_ID, quality, tuple(shape), streams or [b"\x00" * 8, b"\x00" * 8]).to_bytes()


# header -> an array of that shape (a zero-copy view), None where no array has it
BAD_HEADERS = {
    "empty": ((0, 5, 3), np.zeros((0, 5, 3), np.uint8)),
    "2 channels": ((5, 5, 2), np.zeros((5, 5, 2), np.uint8)),
    "5 channels": ((5, 5, 5), np.zeros((5, 5, 5), np.uint8)),
    "over 2^25 px": ((4097, 8193, 3), np.broadcast_to(np.uint8(0), (4097, 8193, 3))),
    "too elongated": ((1, 1 << 24, 3), np.broadcast_to(np.uint8(0), (1, 1 << 24))),
    "2-D header": ((5, 5), None),
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
def test_encoder_refuses_what_the_decoder_refuses(tiny, case):
    shape, arr = BAD_HEADERS[case]
    with pytest.raises(NcFormatError, match="corrupt") as e:
        api.decode(nc_bytes(shape), codec=tiny)
    assert isinstance(e.value, ValueError)
    if arr is not None:
        with pytest.raises(ValueError):
            api.encode(arr, codec=tiny, quality=1)


def test_decoder_refuses_bad_quality_and_stream_count(tiny):
    with pytest.raises(NcFormatError, match="quality 3"):
        api.decode(nc_bytes((H, W, 3), quality=3), codec=tiny)
    with pytest.raises(NcFormatError):
        api.decode(nc_bytes((H, W, 3), streams=[b"a", b"b", b"c"]), codec=tiny)


def test_bad_streams_raise_nc_format_errors(tiny):
    """Valid checksums, undecodable streams: the decoder's error is the .nc family's, not the
    entropy coder's."""
    good = NcFile.from_bytes(api.encode(noise(), codec=tiny, quality=1))
    cases = [[b"", b""], [b"\x00" * 8, b"\xff" * 8], good.streams[::-1], [good.streams[0], good.streams[1][:-4]],
             [good.streams[0] + b"\x00\x00\x00\x00", good.streams[1]]]
    for streams in cases:
        with pytest.raises(NcFormatError):
            api.decode(NcFile(TINY_ID, 1, (H, W, 3), streams).to_bytes(), codec=tiny)


def test_the_limit_matches_the_model_stride():
    from neurocodec.runtime.image.limits import PAD
    from neurocodec.runtime.image.models import ImageCodecModel

    assert PAD == ImageCodecModel.stride
