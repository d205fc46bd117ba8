"""Image files in and out (neurocodec/image/io.py, writers.py, limits.py): EXIF orientation on
every read path, a warning for every channel or bit that is not coded, lossless writers picked
by the output suffix (and a refusal, before decoding, of lossy or unknown ones), and the one
header check shared by the encoder and the decoder. Small images (48x64) and the tiny random
codec of tests/tiny_codec.py: nothing here loads the shipped codecs."""
from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")
from tiny_codec import TINY_ID
from PIL import Image, features

from neurocodec import api
from neurocodec.runtime.bitstream import NcFile, NcFormatError
from neurocodec.cli import main
from neurocodec.runtime.image import io as nio
from neurocodec.runtime.registry import load_codec

H, W = 48, 64


@pytest.fixture(scope="module")
def tiny(tiny_image_codec) -> str:
    torch.set_num_threads(1)
    return tiny_image_codec


def noise(h: int = H, w: int = W, c: int = 3, seed: int = 0) -> np.ndarray:
    """Random pixels: any misplaced pixel or lossy step shows."""
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return a[:, :, 0] if c == 1 else a


def user_warnings(rec) -> list:
    return [w for w in rec if issubclass(w.category, UserWarning)]


def read_quietly(path) -> tuple[np.ndarray, int, list]:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        rgb, channels = nio.read_image(path)
    return rgb, channels, user_warnings(rec)


# ---- EXIF orientation ----------------------------------------------------------------------------

# How each EXIF orientation (tag 0x0112) turns the stored pixels into the displayed image,
# written from the EXIF 2.3 definitions (where row 0 / column 0 of the stored image go).
SHOWN = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
         5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
         7: lambda a: np.rot90(a, 2).swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}
ORIENT_FORMATS = {"png": ("PNG", {}), "jpg": ("JPEG", {"quality": 90}), "webp": ("WEBP", {"lossless": True}),
                  "tif": ("TIFF", {})}


def save_oriented(a: np.ndarray, path: Path, orientation: int) -> None:
    fmt, opts = ORIENT_FORMATS[path.suffix[1:]]
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, format=fmt, exif=exif, **opts)


@pytest.mark.parametrize("ext", list(ORIENT_FORMATS))
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, ext, orientation):
    stored = noise()
    path = tmp_path / f"o{orientation}.{ext}"
    save_oriented(stored, path, orientation)
    if ext == "jpg":  # lossy: the decoded pixels, as stored (Pillow does not orient JPEGs itself)
        with Image.open(path) as im:
            stored = np.asarray(im.convert("RGB"))
    want = SHOWN[orientation](stored)
    got, channels, warned = read_quietly(path)
    assert channels == 3 and not warned, [str(w.message) for w in warned]
    assert got.shape == want.shape == ((W, H, 3) if orientation >= 5 else (H, W, 3))
    assert np.array_equal(got, want)


def test_exif_orientation_of_a_gray_jpeg(tmp_path):
    stored = noise(c=1)
    path = tmp_path / "g.jpg"
    save_oriented(stored, path, 8)
    with Image.open(path) as im:
        raw = np.asarray(im)
    got, channels, _ = read_quietly(path)
    assert channels == 1 and got.shape == (W, H, 3)
    assert np.array_equal(got[:, :, 0], SHOWN[8](raw)) and np.array_equal(got[:, :, 0], got[:, :, 2])


def test_orientation_on_the_api_and_cli_paths(tiny, tmp_path):
    upright = noise(seed=1)
    stored = np.rot90(upright, 1)  # what a camera held sideways writes with orientation 6
    assert np.array_equal(SHOWN[6](stored), upright)
    path = tmp_path / "phone.png"
    save_oriented(stored, path, 6)
    want = api.encode(upright, codec=tiny, quality=1)
    assert NcFile.from_bytes(want).shape == (H, W, 3)
    assert api.encode(path, codec=tiny, quality=1) == want
    assert api.encode(str(path), codec=tiny, quality=1) == want
    out = tmp_path / "phone.nc"
    assert main(["encode", str(path), "--codec", tiny, "--quality", "1", "-o", str(out)]) == 0
    assert out.read_bytes() == want
    assert api.decode(want, codec=tiny).shape == (H, W, 3)


# ---- warnings for lost information ---------------------------------------------------------------

def png16(path: Path, a: np.ndarray, color_type: int) -> None:
    """A 16-bit PNG (Pillow cannot write 16-bit RGB): color type 0 gray, 2 RGB, 4 LA, 6 RGBA."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    h, w = a.shape[:2]
    rows = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def ramp_alpha(h: int = H, w: int = W) -> np.ndarray:
    return np.broadcast_to(np.linspace(0, 255, w).astype(np.uint8), (h, w))


def palette_image(transparent: bool) -> Image.Image:
    idx = (np.arange(H * W).reshape(H, W) % 7).astype(np.uint8)  # index 0 is used
    im = Image.fromarray(idx, "P")
    im.putpalette(list(range(0, 21 * 12, 12)))
    if transparent:
        im.info["transparency"] = 0
    return im


def make_lossy_input(kind: str, d: Path) -> Path:
    """Files that cannot be coded without losing something."""
    rgb, rng = noise(), np.random.default_rng(3)
    if kind == "rgba":
        Image.fromarray(np.dstack([rgb, ramp_alpha()]), "RGBA").save(p := d / "rgba.png")
    elif kind == "la":
        Image.fromarray(np.dstack([rgb[:, :, 0], ramp_alpha()]), "LA").save(p := d / "la.png")
    elif kind == "palette-png":
        palette_image(True).save(p := d / "pal.png", transparency=0)
    elif kind == "palette-gif":
        palette_image(True).save(p := d / "pal.gif", transparency=0)
    elif kind == "rgb-key":  # RGB with a tRNS colour key that some pixels match
        a = rgb.copy()
        a[:4] = (1, 2, 3)
        Image.fromarray(a).save(p := d / "key.png", transparency=(1, 2, 3))
    elif kind == "cmyk-jpg":
        Image.fromarray(rgb).convert("CMYK").save(p := d / "cmyk.jpg", quality=95)
    elif kind == "cmyk-tif":
        Image.fromarray(rgb).convert("CMYK").save(p := d / "cmyk.tif")
    elif kind == "gray16":
        Image.fromarray(rng.integers(0, 65536, (H, W)).astype(np.uint16)).save(p := d / "g16.png")
    elif kind == "rgb16":
        png16(p := d / "rgb16.png", rng.integers(0, 65536, (H, W, 3)), 2)
    elif kind == "float":
        Image.fromarray(rng.random((H, W)).astype(np.float32), "F").save(p := d / "f.tif")
    elif kind in ("gif-frames", "tif-pages", "apng"):
        frames = [Image.fromarray(noise(seed=i)) for i in range(3)]
        p = d / {"gif-frames": "anim.gif", "tif-pages": "pages.tif", "apng": "anim.png"}[kind]
        frames[0].save(p, save_all=True, append_images=frames[1:])
    else:
        raise AssertionError(kind)
    return p


LOSSY_INPUTS = {  # kind -> (what every warning must say, channels in the header)
    "rgba": ("alpha channel dropped", 4), "la": ("alpha channel dropped", 1),
    "palette-png": ("transparency dropped", 3), "palette-gif": ("transparency dropped", 3),
    "rgb-key": ("transparency dropped", 3), "cmyk-jpg": ("CMYK converted to RGB", 3),
    "cmyk-tif": ("CMYK converted to RGB", 3), "gray16": ("16-bit samples reduced to 8 bits", 1),
    "rgb16": ("16-bit samples reduced to 8 bits", 3), "float": ("float samples reduced to 8 bits", 1),
    "gif-frames": ("3 frames or pages; only the first is coded", 3),
    "tif-pages": ("3 frames or pages; only the first is coded", 3),
    "apng": ("3 frames or pages; only the first is coded", 3),
}


@pytest.mark.parametrize("kind", list(LOSSY_INPUTS))
def test_every_loss_warns_with_the_path(tmp_path, kind):
    path = make_lossy_input(kind, tmp_path)
    text, channels = LOSSY_INPUTS[kind]
    with pytest.warns(UserWarning) as rec:
        rgb, got_channels = nio.read_image(path)
    warned = user_warnings(rec)
    assert len(warned) == 1, [str(w.message) for w in warned]
    msg = str(warned[0].message)
    assert msg.startswith(f"{path}: ") and text in msg and "\n" not in msg, msg
    assert warned[0].filename == __file__  # attributed to the caller, not to neurocodec's insides
    assert got_channels == channels and rgb.shape == (H, W, 3) and rgb.dtype == np.uint8


def test_lost_information_is_what_the_warning_says(tmp_path):
    """The pixels that are coded: RGB of RGBA, gray of LA, the first frame, the top byte."""
    rgb, rng = noise(), np.random.default_rng(5)
    Image.fromarray(np.dstack([rgb, ramp_alpha()]), "RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.dstack([rgb[:, :, 1], ramp_alpha()]), "LA").save(tmp_path / "la.png")
    frames = [Image.fromarray(noise(seed=i)) for i in range(2)]
    frames[0].save(tmp_path / "p.tif", save_all=True, append_images=frames[1:])
    deep = rng.integers(0, 65536, (H, W, 3))
    png16(tmp_path / "d.png", deep, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(nio.read_image(tmp_path / "a.png")[0], rgb)
        assert np.array_equal(nio.read_image(tmp_path / "la.png")[0], np.repeat(rgb[:, :, 1:2], 3, axis=2))
        assert np.array_equal(nio.read_image(tmp_path / "p.tif")[0], noise(seed=0))
        assert np.array_equal(nio.read_image(tmp_path / "d.png")[0], (deep >> 8).astype(np.uint8))


def make_ordinary_input(kind: str, d: Path) -> Path:
    rgb = noise()
    if kind == "rgb-png":
        Image.fromarray(rgb).save(p := d / "rgb.png")
    elif kind == "gray-png":
        Image.fromarray(rgb[:, :, 0]).save(p := d / "g.png")
    elif kind == "rgb-jpg":
        Image.fromarray(rgb).save(p := d / "rgb.jpg")
    elif kind == "gray-jpg":
        Image.fromarray(rgb[:, :, 0]).save(p := d / "g.jpg")
    elif kind == "opaque-rgba":
        Image.fromarray(np.dstack([rgb, np.full((H, W), 255, np.uint8)]), "RGBA").save(p := d / "o.png")
    elif kind == "palette":
        palette_image(False).save(p := d / "pal.png")
    elif kind == "bilevel":
        Image.fromarray(rgb[:, :, 0] > 127).save(p := d / "bw.png")
    elif kind == "bmp":
        Image.fromarray(rgb).save(p := d / "rgb.bmp")
    elif kind == "one-frame-gif":
        palette_image(False).save(p := d / "one.gif")
    else:
        raise AssertionError(kind)
    return p


@pytest.mark.parametrize("kind", ["rgb-png", "gray-png", "rgb-jpg", "gray-jpg", "opaque-rgba", "palette",
                                  "bilevel", "bmp", "one-frame-gif"])
def test_ordinary_images_do_not_warn(tmp_path, kind):
    path = make_ordinary_input(kind, tmp_path)
    rgb, channels, warned = read_quietly(path)
    assert not warned, [str(w.message) for w in warned]
    assert rgb.shape == (H, W, 3) and channels in (1, 3, 4)


def test_api_file_path_warns(tiny, tmp_path):
    path = make_lossy_input("la", tmp_path)
    with pytest.warns(UserWarning, match="alpha channel dropped") as rec:
        data = api.encode(path, codec=tiny, quality=0)
    msgs = [str(w.message) for w in user_warnings(rec)]
    assert len(msgs) == 1 and msgs[0].startswith(f"{path}: "), msgs
    assert user_warnings(rec)[0].filename == __file__
    assert api.decode(data, codec=tiny).shape == (H, W)  # gray+alpha decodes to gray


def test_rgba_arrays_warn_unless_opaque(tiny):
    rgba = np.dstack([noise(), ramp_alpha()])
    with pytest.warns(UserWarning, match="alpha channel dropped") as rec:
        data = api.encode(rgba, codec=tiny, quality=0)
    assert len(user_warnings(rec)) == 1 and user_warnings(rec)[0].filename == __file__
    assert f"{H * W - H:,} of {H * W:,} pixels are not opaque" in str(rec[0].message)
    assert NcFile.from_bytes(data).shape == (H, W, 4)
    opaque = rgba.copy()
    opaque[:, :, 3] = 255
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        api.encode(opaque, codec=tiny, quality=0)
        api.encode(noise(), codec=tiny, quality=0)
        api.encode(noise(c=1), codec=tiny, quality=0)
    assert not user_warnings(rec), [str(w.message) for w in rec]


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
    from neurocodec.runtime.image.codec import ImageCodec

    nc = tmp_path / "a.nc"
    nc.write_bytes(api.encode(noise(), codec=tiny, quality=0))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before checking the output name")

    monkeypatch.setattr(ImageCodec, "decode_nc", no_decoding)
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
