"""The `neurocodec` command line's errors: bad and corrupt inputs, codec lookups, usage errors,
atomic outputs, errors of a real process, and image-reading edge cases. The contract: a
non-zero exit status and exactly one stderr line starting with "neurocodec: error:"; outputs
are written atomically; the input is never modified."""
from __future__ import annotations

import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")
from cli_helpers import TINY_QUALITIES, assert_error, assert_one_line_error, cli, run_module, sha256, smooth_image
from PIL import Image
from tiny_codec import TINY_ID

from neurocodec.cli import main
from neurocodec.runtime.bitstream import NcFile

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
        r = cli(capsys, "decode", tmp_path / name, "--codec", tiny, "-o", tmp_path / "o.png")
        assert_error(r, "not a .nc file")
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


