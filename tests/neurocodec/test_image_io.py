"""Image files in (neurocodec/runtime/image/io.py): EXIF orientation on every read path, and a
warning for every channel or bit that is not coded. Small images (48x64) and the tiny random
codec of tests/tiny_codec.py: nothing here loads the shipped codecs. Writers and the shared
header check: test_image_io_write.py."""
from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")
from image_io_helpers import H, W, noise, read_quietly, user_warnings
from PIL import Image, features

from neurocodec import api
from neurocodec.cli import main
from neurocodec.runtime.bitstream import NcFile
from neurocodec.runtime.image import io as nio

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
