"""The `neurocodec` command line: encode / decode / info round trips, list, eval, train, run in-process through
``neurocodec.cli.main`` and, for a few cases, as ``python -m neurocodec``.

Encode and decode use a tiny randomly initialised codec exported to a temp folder
(``--codec FOLDER``), so nothing here loads the shipped codecs' weights. The codec's
reconstructions are noise, so only sizes, modes, headers and error behaviour are checked.

The error contract: a non-zero exit status and exactly one stderr line starting with
"neurocodec: error:"; outputs are written atomically; the input is never modified."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")
from cli_helpers import TINY_QUALITIES, assert_error, cli, sha256, smooth_image
from common import REPO
from PIL import Image, features
from tiny_codec import TINY_ID

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
    again = tmp_path / "again.nc"
    assert cli(capsys, "encode", tmp_path / "a.png", "--codec", tiny, "--quality", 0, "-o", again)[0] == 0
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
