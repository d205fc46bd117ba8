"""The registry and the Codec contract, directly: kinds found by name, routing of inputs,
model architectures, codec folders and ids, codec.json checks, and the one-line message when
the codecs extra is missing."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import neurocodec
from neurocodec.runtime import registry
from neurocodec.runtime.bitstream import NcFile, NcFormatError
from neurocodec.runtime.codec import Codec, MissingDependency, check_meta, resolve


def test_every_kind_resolves_to_its_codec_class():
    for kind in registry.KINDS:
        cls = registry.kind_class(kind)
        assert issubclass(cls, Codec) and cls.kind == kind
        assert cls.implementation and cls.archs and cls.output_suffix
        if cls.tools:  # a kind's tools, when it has some, are where it says
            assert importlib.util.find_spec(cls.tools) is not None, cls.tools
        impl = resolve(cls.implementation)
        assert issubclass(impl, cls) and not getattr(impl, "__abstractmethods__", None), impl


def test_unknown_kind_and_wrong_class():
    with pytest.raises(registry.CodecNotFound, match="unknown codec kind 'video'"):
        registry.kind_class("video")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_kind("image", "somewhere:Else")


@pytest.mark.parametrize("data, opts, kind", [
    ("a.png", {}, "image"), ("a.JPG", {}, "image"), ("a.wav", {}, "audio"), ("b.flac", {}, "audio"),
    (np.zeros((4, 4, 3), np.uint8), {}, "image"), (np.zeros(100, np.float32), {"sr": 16000}, "audio"),
    ("no-suffix", {}, "image"),  # Pillow reads files by their content
])
def test_inputs_are_routed_to_the_kind_that_takes_them(data, opts, kind):
    assert registry.kind_for_input(data, opts).kind == kind


def test_options_are_checked_against_the_kind():
    image, audio = registry.kind_class("image"), registry.kind_class("audio")
    assert image.check_options({"quality": 2, "refine_steps": None}) == {"quality": 2}
    with pytest.raises(ValueError, match="kbps is not an option of image codecs"):
        image.check_options({"kbps": 6})
    with pytest.raises(ValueError, match="quality is not an option of audio codecs"):
        audio.check_options({"quality": 1})
    with pytest.raises(ValueError, match="kbps is not an option of image codecs"):
        neurocodec.encode(np.zeros((8, 8, 3), np.uint8), kbps=3)


def test_a_codec_of_another_kind_is_refused(tiny_image_codec):
    with pytest.raises(ValueError, match="is an image codec: it does not code this input \\(it takes a uint8 image"):
        neurocodec.encode(np.zeros(1600, np.float32), sr=16000, codec=tiny_image_codec)


def test_architectures():
    assert {"hyperprior", "shallow", "audio-rvq"} <= set(registry.model_names())
    assert registry.kind_of_arch("shallow").kind == "image"
    assert registry.kind_of_arch("audio-rvq").kind == "audio"
    with pytest.raises(registry.CodecNotFound, match="unknown model architecture 'nope'"):
        registry.kind_of_arch("nope")
    with pytest.raises(registry.CodecNotFound, match="unknown model 'nope'"):
        registry.build_model("nope")


def test_register_model_refuses_a_second_builder():
    registry.register_model("test-only-arch")(lambda cfg: cfg)
    assert registry.build_model("test-only-arch", {"a": 1}) == {"a": 1}
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_model("test-only-arch")(lambda cfg: cfg)


def test_lookups_need_no_torch():
    code = ("import sys; from neurocodec.runtime import registry as r; r.model_names(); r.list_codecs(); "
            "[r.kind_class(k).summary({}) for k in r.KINDS]; "
            "print(sorted(m for m in ('torch', 'compressai', 'PIL', 'soundfile') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_codecs_by_name_folder_and_id(tiny_image_codec):
    shipped = registry.list_codecs()
    assert [m["id"] for m in shipped] == sorted(m["id"] for m in shipped)
    meta = registry.codec_meta(tiny_image_codec)  # a folder
    assert meta["name"] == "tiny-test" and meta["path"] == tiny_image_codec
    with pytest.raises(registry.CodecNotFound, match="unknown codec 'nope' \\(available: "):
        registry.codec_meta("nope")
    with pytest.raises(registry.UnknownCodecId) as e:
        registry.meta_by_id(65000)
    assert isinstance(e.value, NcFormatError) and "codec id 65000" in str(e.value)
    for m in shipped:
        assert registry.meta_by_id(m["id"])["name"] == m["name"]
        if m.get("default"):
            assert registry.default_codec(m["kind"]) == m["name"]


def test_neurocodec_path_adds_folders(tiny_image_codec, tmp_path, monkeypatch):
    shutil.copytree(tiny_image_codec, tmp_path / "mine")
    monkeypatch.setenv("NEUROCODEC_PATH", str(tmp_path))
    registry._scan.cache_clear()
    try:
        assert registry.codec_meta("tiny-test")["path"] == str(tmp_path / "mine")
    finally:
        monkeypatch.delenv("NEUROCODEC_PATH")
        registry._scan.cache_clear()


@pytest.mark.parametrize("change, message", [
    ({"format_version": 2}, "newer than this neurocodec reads"),
    ({"format_version": 0}, "bad format_version"),
    ({"id": 0}, "outside 1..65535"),
    ({"id": "7"}, "lacks a valid 'id'"),
    ({"kind": None}, "lacks a valid 'kind'"),
])
def test_codec_json_is_checked(change, message):
    meta = {"name": "x", "id": 7, "kind": "image", "format_version": 1, **change}
    with pytest.raises(ValueError, match=message):
        check_meta(meta)


def test_f_gain_is_checked_when_a_codec_loads(tiny_image_codec, tmp_path):
    folder = shutil.copytree(tiny_image_codec, tmp_path / "other")
    meta = json.loads((folder / "codec.json").read_text())
    assert meta["f_gain"] == 12
    meta.update(f_gain=10, id=950)
    (folder / "codec.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="10 fractional bits; this neurocodec uses 12"):
        registry.kind_class("image").from_dir(folder)


def test_info_describes_without_a_model(tiny_image_codec):
    data = neurocodec.encode(np.full((16, 24, 3), 128, np.uint8), codec=tiny_image_codec, quality=0)
    d = neurocodec.info(data)
    assert d["shape"] == [16, 24, 3] and d["bpp"] == 8 * len(data) / (16 * 24) and d["codec"] == "tiny-test"
    unknown = NcFile(64999, 0, (2, 2, 3), [b"x"]).to_bytes()
    assert "bpp" not in neurocodec.info(unknown) and neurocodec.info(unknown)["codec"] is None


def test_missing_codecs_extra_is_one_clear_line(tmp_path):
    """Without torch (the codecs extra), loading a codec says what to install."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import neurocodec\n"
            "try:\n    neurocodec.load_codec('hyperprior')\n"
            "except neurocodec.MissingDependency as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [
        "image codecs need(s) the 'codecs' extra, which is not installed (no module 'torch'): "
        "pip install 'neurocodec[codecs]'"]
    assert issubclass(MissingDependency, ImportError)
    src = tmp_path / "a.png"
    src.write_bytes(b"")  # never read: the codec fails to load first
    cli = ("import sys; sys.modules['torch'] = None\nfrom neurocodec.cli import main\n"
           f"sys.exit(main(['encode', {str(src)!r}, '-q']))")
    r = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "pip install 'neurocodec[codecs]'" in r.stderr
