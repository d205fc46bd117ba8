"""The `neurocodec` command line (encode / decode / info / list), run in-process through
``neurocodec.cli.main`` and, for a few cases, as ``python -m neurocodec``.

Encode and decode use a tiny randomly initialised codec exported to a temp folder
(``--codec FOLDER``), so nothing here loads the shipped codecs' weights. The codec's
reconstructions are noise, so only sizes, modes, headers and error behaviour are checked.

The error contract: a non-zero exit status and exactly one stderr line starting with
"neurocodec: error:"; outputs are written atomically; the input is never modified."""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")
from tiny_codec import TINY_ID, TINY_LMBDAS
from PIL import Image, features

from neurocodec.runtime.bitstream import NcFile
from neurocodec.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY_QUALITIES = len(TINY_LMBDAS)  # 3 -> default quality 1


@pytest.fixture(scope="module")
def tiny(tiny_image_codec) -> str:
    """A tiny random hyperprior codec folder (tests/tiny_codec.py), TINY_QUALITIES qualities."""
    return tiny_image_codec


def smooth_image(h: int, w: int, mode: str = "RGB") -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([128 + 90 * np.sin(xx / (9 + 3 * c) + yy / (13 + 2 * c)) for c in range(3)], axis=2)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    if mode == "L":
        return Image.fromarray(rgb[:, :, 0], "L")
    if mode == "RGBA":
        alpha = (255 * xx / max(w - 1, 1)).astype(np.uint8)[:, :, None]
        return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")
    return Image.fromarray(rgb, "RGB")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_error(result, *needles) -> str:
    """Status 1, nothing on stdout, one 'neurocodec: error:' line mentioning every needle."""
    rc, out, err = result
    assert rc == 1, (rc, out, err)
    assert out == "", out
    assert err.startswith("neurocodec: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    for n in needles:
        assert n.lower() in err.lower(), (n, err)
    return err


def run_module(*args, cwd, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "NEUROCODEC_PATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "neurocodec", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300, check=False)


def assert_one_line_error(r: subprocess.CompletedProcess, *needles) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurocodec: error:"), r.stderr
    for n in needles:
        assert n.lower() in r.stderr.lower(), (n, r.stderr)


@pytest.fixture(scope="module")
def nc_file(tiny, tmp_path_factory) -> Path:
    """A valid .nc of a 37x19 RGB image (quality 2), written by the CLI."""
    d = tmp_path_factory.mktemp("nc")
    smooth_image(19, 37).save(d / "src.png")
    assert main(["encode", str(d / "src.png"), "--codec", tiny, "--quality", "2", "-o", str(d / "src.nc")]) == 0
    return d / "src.nc"


# ---- encode / decode / info round trips ---------------------------------------------------

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
CASES = [("png", "RGB", 37, 19), ("jpg", "RGB", 64, 48), ("webp", "RGB", 33, 20), ("png", "RGB", 1, 1),
         ("png", "L", 19, 37), ("jpg", "L", 16, 9), ("png", "RGBA", 21, 13), ("webp", "RGBA", 20, 17)]


@pytest.mark.parametrize("ext,mode,w,h", CASES, ids=[f"{e}-{m}-{w}x{h}" for e, m, w, h in CASES])
def test_encode_decode_info(tiny, tmp_path, capsys, ext, mode, w, h):
    if ext == "webp" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    src = tmp_path / f"img.{ext}"
    smooth_image(h, w, mode).save(src, format=FORMATS[ext])
    channels = 1 if mode == "L" else 3  # the header describes what decodes: RGBA -> RGB

    rc, out, err = cli(capsys, "encode", src, "--codec", tiny, "-o", tmp_path / "img.nc")
    assert rc == 0, err
    nc = tmp_path / "img.nc"
    size = nc.stat().st_size
    assert out == f"{nc}: {size} bytes, {8 * size / (w * h):.4f} bpp\n"
    if mode == "RGBA":
        assert err.count("\n") == 1 and err.startswith("neurocodec: warning:") and "alpha" in err, err
    else:
        assert err == ""

    before = sha256(nc)
    rc, out, err = cli(capsys, "decode", nc, "--codec", tiny, "-o", tmp_path / "back.png")
    assert rc == 0 and err == "", err
    assert out == f"{tmp_path / 'back.png'}: {w}x{h}\n"
    assert sha256(nc) == before  # the input is never modified
    with Image.open(tmp_path / "back.png") as im:
        assert im.format == "PNG"
        assert im.size == (w, h)
        assert im.mode == ("L" if mode == "L" else "RGB")  # grayscale stays 1 channel, alpha dropped

    rc, out, err = cli(capsys, "info", nc, "--json")
    assert rc == 0 and err == "", err
    info = json.loads(out)
    assert info["codec_id"] == TINY_ID and info["version"] == 1
    assert info["quality"] == TINY_QUALITIES // 2  # the codec's default
    assert info["shape"] == [h, w, channels]
    assert info["bytes"] == size
    assert 0 < info["overhead_bytes"] <= 32
    assert info["overhead_bytes"] + sum(info["streams"]) == size
    assert info["bpp"] == pytest.approx(8 * size / (w * h))

    rc, out, err = cli(capsys, "info", nc)
    assert rc == 0 and err == "", err
    fields = dict(re.match(r"\s*(\w+): (.*)$", line).groups() for line in out.splitlines())
    assert fields["codec_id"] == str(TINY_ID)
    assert fields["quality"] == str(TINY_QUALITIES // 2)
    assert fields["shape"] == str([h, w, channels])
    assert fields["bytes"] == str(size)
    assert sha256(nc) == before


def test_quality_is_written_to_the_header(tiny, tmp_path, capsys):
    smooth_image(24, 40).save(tmp_path / "a.png")
    sizes = []
    for q in range(TINY_QUALITIES):
        nc = tmp_path / f"q{q}.nc"
        assert cli(capsys, "encode", tmp_path / "a.png", "--codec", tiny, "--quality", q, "-o", nc)[0] == 0
        rc, out, _ = cli(capsys, "info", nc, "--json")
        assert rc == 0 and json.loads(out)["quality"] == q
        sizes.append(nc.stat().st_size)
    # Same input and quality -> the same bytes.
    assert cli(capsys, "encode", tmp_path / "a.png", "--codec", tiny, "--quality", 0, "-o", tmp_path / "again.nc")[0] == 0
    assert (tmp_path / "again.nc").read_bytes() == (tmp_path / "q0.nc").read_bytes()


def test_default_output_names(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    smooth_image(10, 12).save("x.png")
    rc, out, err = cli(capsys, "encode", "x.png", "--codec", tiny)
    assert rc == 0, err
    assert Path("x.nc").is_file() and out.startswith("x.nc: ")
    # A name without a suffix gets one.
    Path("noext").write_bytes(Path("x.png").read_bytes())
    assert cli(capsys, "encode", "noext", "--codec", tiny)[0] == 0
    assert Path("noext.nc").read_bytes() == Path("x.nc").read_bytes()

    Path("d").mkdir()
    os.replace("x.nc", "d/x.nc")
    rc, out, err = cli(capsys, "decode", str(Path("d", "x.nc")), "--codec", tiny)
    assert rc == 0, err
    assert out == f"{Path('d', 'x.decoded.png')}: 12x10\n"  # never the encoded file's own name
    with Image.open("d/x.decoded.png") as im:
        assert im.size == (12, 10)
    assert sorted(os.listdir("d")) == ["x.decoded.png", "x.nc"]


def test_output_never_replaces_the_input(tiny, tmp_path, capsys, nc_file):
    # A .nc named *.png, decoded onto itself (even with --force).
    fake = tmp_path / "fake.png"
    fake.write_bytes(nc_file.read_bytes())
    before = sha256(fake)
    assert_error(cli(capsys, "decode", fake, "--codec", tiny, "-o", fake), "overwrite")
    assert_error(cli(capsys, "decode", fake, "--codec", tiny, "-o", fake, "--force"), "overwrite")
    assert sha256(fake) == before
    # An image named *.nc, likewise for encode.
    img = tmp_path / "pic.nc"
    smooth_image(8, 8).save(img, format="PNG")
    before = sha256(img)
    assert_error(cli(capsys, "encode", img, "--codec", tiny), "overwrite")
    assert_error(cli(capsys, "encode", img, "--codec", tiny, "--force"), "overwrite")
    assert sha256(img) == before
    assert sorted(os.listdir(tmp_path)) == ["fake.png", "pic.nc"]


# ---- errors ----------------------------------------------------------------------------------

def test_encode_rejects_non_images(tiny, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello, not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")
    smooth_image(32, 32).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])  # header only
    (tmp_path / "folder.png").mkdir()
    for name in ("notes.txt", "empty.png", "cut.png", "folder.png"):
        assert_error(cli(capsys, "encode", tmp_path / name, "--codec", tiny), name)
        assert not (tmp_path / name).with_suffix(".nc").exists()
    assert_error(cli(capsys, "encode", tmp_path / "missing.png", "--codec", tiny), "missing.png", "no such file")
    assert not list(tmp_path.glob("*.nc")) and not list(tmp_path.glob(".*"))


def test_missing_input_for_decode_and_info(tiny, tmp_path, capsys):
    for cmd in (["decode", tmp_path / "gone.nc", "--codec", tiny], ["info", tmp_path / "gone.nc"]):
        assert_error(cli(capsys, *cmd), "gone.nc", "no such file")
    assert os.listdir(tmp_path) == []


def test_truncated_files(tiny, tmp_path, capsys, nc_file):
    data = nc_file.read_bytes()
    bad = tmp_path / "t.nc"
    for n in range(len(data)):
        bad.write_bytes(data[:n])
        for cmd in (["decode", bad, "--codec", tiny, "-o", tmp_path / "o.png"], ["info", bad]):
            err = assert_error(cli(capsys, *cmd))
            if n:
                assert re.search("truncated|corrupt", err), (n, err)
    assert sorted(os.listdir(tmp_path)) == ["t.nc"]


def test_bit_flips_anywhere_are_detected(tiny, tmp_path, capsys, nc_file):
    data = nc_file.read_bytes()
    header_len = len(data) - sum(json.loads(_info_json(capsys, nc_file))["streams"])
    assert 8 < header_len < len(data)
    bad = tmp_path / "f.nc"
    for pos in range(len(data)):  # every byte: magic, version, id, quality, flags, shape, checksums, payload
        for bit in (pos % 8, 7 - pos % 8):
            b = bytearray(data)
            b[pos] ^= 1 << bit
            bad.write_bytes(bytes(b))
            before = sha256(bad)
            assert_error(cli(capsys, "decode", bad, "--codec", tiny, "-o", tmp_path / "o.png"))
            assert_error(cli(capsys, "info", bad))
            assert sha256(bad) == before
    assert sorted(os.listdir(tmp_path)) == ["f.nc"]


def _info_json(capsys, path) -> str:
    rc, out, err = cli(capsys, "info", path, "--json")
    assert rc == 0, err
    return out


def test_other_formats_are_not_nc(tiny, tmp_path, capsys):
    smooth_image(8, 8).save(tmp_path / "img.png")
    (tmp_path / "t.txt").write_text("text\n")
    (tmp_path / "empty.nc").write_bytes(b"")
    for name in ("img.png", "t.txt", "empty.nc"):
        assert_error(cli(capsys, "decode", tmp_path / name, "--codec", tiny, "-o", tmp_path / "o.png"), "not a .nc file")
        assert_error(cli(capsys, "info", tmp_path / name), "not a .nc file")
    assert not (tmp_path / "o.png").exists()


def test_newer_format_version(tiny, tmp_path, capsys, nc_file):
    data = nc_file.read_bytes()
    newer = tmp_path / "v9.nc"
    newer.write_bytes(data[:3] + bytes([9]) + data[4:])
    assert_error(cli(capsys, "decode", newer, "--codec", tiny, "-o", tmp_path / "o.png"), "newer", "9")
    assert_error(cli(capsys, "decode", newer, "-o", tmp_path / "o.png"), "newer")
    assert_error(cli(capsys, "info", newer), "newer")


def test_unknown_codec_id(tiny, tmp_path, capsys, nc_file):
    nc = NcFile.from_bytes(nc_file.read_bytes())
    nc.codec_id = 777
    f = tmp_path / "777.nc"
    f.write_bytes(nc.to_bytes())
    assert_error(cli(capsys, "decode", f, "--codec", tiny, "-o", tmp_path / "o.png"), "777")
    assert_error(cli(capsys, "decode", f, "-o", tmp_path / "o.png"), "777")
    assert not (tmp_path / "o.png").exists()
    # info needs no codec: it reports the id and no name.
    info = json.loads(_info_json(capsys, f))
    assert info["codec_id"] == 777 and info["codec"] is None
    # The tiny codec is not on the search path either: a fresh process decoding without --codec
    # names its id. (In-process, a codec loaded from a folder stays known by id: see registry.)
    assert_one_line_error(run_module("decode", nc_file, "-o", tmp_path / "o.png", cwd=tmp_path), str(TINY_ID))


def test_unknown_codec_name(tiny, tmp_path, capsys, nc_file):
    smooth_image(8, 8).save(tmp_path / "a.png")
    assert_error(cli(capsys, "encode", tmp_path / "a.png", "--codec", "no-such-codec"), "no-such-codec")
    assert_error(cli(capsys, "decode", nc_file, "--codec", "no-such-codec", "-o", tmp_path / "o.png"),
                 "no-such-codec")
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


@pytest.mark.parametrize("q", [TINY_QUALITIES, 99])
def test_quality_out_of_range(tiny, tmp_path, capsys, q):
    smooth_image(8, 8, "RGBA").save(tmp_path / "a.png")  # RGBA: no alpha warning before the error
    assert_error(cli(capsys, "encode", tmp_path / "a.png", "--codec", tiny, "--quality", q), "quality")
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_negative_quality_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["encode", "a.png", "--quality", "-1"])
    assert e.value.code == 2


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["encode"], ["encode", "a.png", "--quality", "high"], ["frobnicate"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert "usage" in capsys.readouterr().err


# ---- atomic outputs ----------------------------------------------------------------------------

def test_failed_decode_leaves_existing_output(tiny, tmp_path, capsys, nc_file, monkeypatch):
    out = tmp_path / "out.png"
    out.write_bytes(b"previous contents")
    bad = tmp_path / "bad.nc"
    bad.write_bytes(nc_file.read_bytes()[:-3])
    assert_error(cli(capsys, "decode", bad, "--codec", tiny, "-o", out, "-f"))
    assert out.read_bytes() == b"previous contents"

    # The PNG writer dies half way: the temp file goes, the old output stays.
    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    good = tmp_path / "good.nc"
    good.write_bytes(nc_file.read_bytes())
    before = sha256(good)
    with monkeypatch.context() as m:
        m.setattr(Image.Image, "save", broken_save)
        assert_error(cli(capsys, "decode", good, "--codec", tiny, "-o", out, "-f"), "no space")
    assert out.read_bytes() == b"previous contents"
    assert sha256(good) == before
    assert sorted(os.listdir(tmp_path)) == ["bad.nc", "good.nc", "out.png"]  # no .out.png.*.tmp

    # Output is a folder: the rename fails, nothing is left behind.
    (tmp_path / "dir.png").mkdir()
    assert cli(capsys, "decode", good, "--codec", tiny, "-o", tmp_path / "dir.png")[0] == 0  # into it
    assert os.listdir(tmp_path / "dir.png") == ["good.decoded.png"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    assert sha256(good) == before


def test_failed_encode_leaves_existing_output(tiny, tmp_path, capsys, monkeypatch):
    from weightzip import api as wz_api

    smooth_image(16, 16).save(tmp_path / "a.png")
    out = tmp_path / "a.nc"
    out.write_bytes(b"previous contents")
    assert_error(cli(capsys, "encode", tmp_path / "a.png", "--codec", tiny, "--quality", 50, "-o", out, "-f"))

    def broken_replace(src, dst):
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(wz_api.os, "replace", broken_replace)  # the shared atomic writer
        assert_error(cli(capsys, "encode", tmp_path / "a.png", "--codec", tiny, "-o", out, "-f"), "input/output")
    assert out.read_bytes() == b"previous contents"
    assert sorted(os.listdir(tmp_path)) == ["a.nc", "a.png"]


# ---- list ----------------------------------------------------------------------------------------

def test_list_shipped(capsys):
    """Reads codec.json files only: no weights are loaded."""
    rc, out, err = cli(capsys, "list")
    assert rc == 0 and err == "", err
    rc, js, err = cli(capsys, "list", "--json")
    assert rc == 0 and err == "", err
    entries = json.loads(js)
    assert isinstance(entries, list)
    for e in entries:
        assert set(e) == {"name", "id", "kind", "arch", "path"}
        assert (Path(e["path"]) / "codec.json").is_file()
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    lines = out.splitlines()
    if not entries:
        assert lines == ["no codecs found"]
        return
    assert len(lines) == len(entries)
    for line, e in zip(lines, entries):
        assert line.split()[0] == e["name"] and f"id={e['id']}" in line
    for kind in {e["kind"] for e in entries}:  # at most one default codec per kind
        assert sum("(default)" in line for line, e in zip(lines, entries) if e["kind"] == kind) <= 1
    for name in ("hyperprior", "shallow"):
        if (REPO / "codecs" / name / "codec.json").is_file():
            assert name in [e["name"] for e in entries]
            assert any(line.split()[0] == name for line in lines)


# ---- as a real process ---------------------------------------------------------------------------

def test_process_decode_truncated(tmp_path, nc_file):
    (tmp_path / "t.nc").write_bytes(nc_file.read_bytes()[:10])
    r = run_module("decode", "t.nc", cwd=tmp_path)
    assert_one_line_error(r, "truncated")
    assert r.stdout == "" and sorted(os.listdir(tmp_path)) == ["t.nc"]


def test_process_encode_not_an_image(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    r = run_module("encode", "empty.png", cwd=tmp_path)
    assert_one_line_error(r, "empty.png")
    assert sorted(os.listdir(tmp_path)) == ["empty.png"]


def test_process_codec_errors_are_one_line(tiny, tmp_path):
    """Loads torch and the codec: no library warning may join the error line on stderr."""
    smooth_image(8, 8).save(tmp_path / "a.png")
    r = run_module("encode", "a.png", "--codec", tiny, "--quality", TINY_QUALITIES, cwd=tmp_path)
    assert_one_line_error(r, "quality")
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_process_list_sees_neurocodec_path(tiny, tmp_path):
    r = run_module("list", "--json", cwd=tmp_path, env_extra={"NEUROCODEC_PATH": str(Path(tiny).parent)})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    entries = {e["name"]: e for e in json.loads(r.stdout)}
    assert entries["tiny-test"]["id"] == TINY_ID
    assert Path(entries["tiny-test"]["path"]).resolve() == Path(tiny).resolve()


# ---- image reading edge cases ------------------------------------------------------------------

def test_decompression_bomb_is_one_line(tiny, tmp_path, capsys):
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    # A 40-byte PNG header claiming 20000x20000 pixels: PIL refuses it at open.
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    assert_error(cli(capsys, "encode", tmp_path / "bomb.png", "--codec", tiny), "bomb.png")


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    from neurocodec.runtime.image.io import read_image

    ramp = np.linspace(0, 65535, 64 * 16).reshape(16, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    with pytest.warns(UserWarning, match="16-bit samples reduced to 8 bits"):
        rgb, channels = read_image(tmp_path / "g16.png")
    assert channels == 1
    assert np.abs(rgb[:, :, 0].astype(int) - (ramp >> 8)).max() <= 1


# ---- eval and train ------------------------------------------------------------------------------

def test_eval_writes_csv_json_and_plot(tiny, tmp_path, capsys):
    data = tmp_path / "imgs"
    data.mkdir()
    smooth_image(160, 176).save(data / "a.png")
    smooth_image(170, 168, "L").save(data / "b.png")
    rc, _out, err = cli(capsys, "eval", "--codec", tiny, "--data", data, "--out", tmp_path / "ev", "--no-anchors")
    assert rc == 0, err
    rows = (tmp_path / "ev" / "per_image.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * TINY_QUALITIES  # header + images x qualities
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    curve = next(iter(res["curves"].values()))
    assert len(curve["bpp"]) == TINY_QUALITIES and all(b > 0 for b in curve["bpp"])
    assert (tmp_path / "ev" / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_checkpoints_and_resumes(tmp_path, capsys):
    data = tmp_path / "train"
    data.mkdir()
    for i in range(3):
        smooth_image(80 + 8 * i, 96).save(data / f"{i}.png")
    args = ["train", "--codec", "shallow", "--data", data, "--out", tmp_path / "run", "--crop", "64",
            "--batch", "2", "--N", "16", "--M", "24", "--lmbda", "0.01,0.05", "--threads", "1"]
    assert cli(capsys, *args, "--steps", "3")[0] == 0
    import torch as _torch

    state = _torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["config"]["model"]["arch"] == "shallow"
    assert state["config"]["model"]["lmbdas"] == [0.01, 0.05]
    assert cli(capsys, *args, "--steps", "5")[0] == 0  # resumes: 2 more steps, not 5
    state = _torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 5
    assert "resumed at step 3" in (tmp_path / "run" / "train.log").read_text()
