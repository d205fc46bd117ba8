"""The coolchic kind (an overfitted image codec): round trips through the API and the CLI,
decoding without torch and bit-identical in other processes, RD sanity, corrupt files,
`info`, option checks. Tiny images and a test codec folder whose presets run a few dozen
iterations, so the whole file takes seconds."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from common import REPO

import neurocodec
from neurocodec.cli import main
from neurocodec.runtime import registry
from neurocodec.runtime.bitstream import NcFile, NcFormatError
from neurocodec.runtime.coolchic import encode as encode_module
from neurocodec.runtime.coolchic import fit as fit_module
from neurocodec.runtime.coolchic.format import Header

PRESETS = {"fast": {"iterations": 20}, "medium": {"iterations": 150}, "slow": {"iterations": 400}}


def smooth(h: int, w: int, planes: int = 3) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 90 * np.sin(xx / (6 + 2 * c) + yy / (9 + c)) for c in range(planes)], axis=2)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return img[:, :, 0] if planes == 1 else img


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255 ** 2 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> str:
    meta = json.loads((REPO / "codecs" / "coolchic" / "codec.json").read_text())
    meta.update(name="coolchic-test", id=9004, presets=PRESETS)
    d = tmp_path_factory.mktemp("coolchic")
    (d / "codec.json").write_text(json.dumps(meta))
    return str(d)


@pytest.fixture(scope="module")
def rgb_nc(codec_dir) -> tuple[np.ndarray, bytes]:
    torch.set_num_threads(1)
    img = smooth(32, 48)
    return img, neurocodec.encode(img, codec=codec_dir, quality=3, preset="medium")


def test_shipped_codec_needs_no_weights():
    c = neurocodec.load_codec("coolchic")
    assert c.kind == "coolchic" and c.id == 4 and c.qualities == list(range(6))
    assert not any(Path(c.meta["path"]).glob("*.wz"))
    assert "presets fast" in registry.kind_class("coolchic").summary(c.meta)


def test_images_still_go_to_the_image_kind():
    for data in ("a.png", "noext", np.zeros((8, 8, 3), np.uint8)):
        assert registry.kind_for_input(data, {}).kind == "image"
    assert registry.kind_class("coolchic").accepts("a.png", {}) == 1
    assert registry.kind_class("coolchic").accepts(np.zeros(100, np.float32), {"sr": 16000}) == 0
    assert registry.kind_for_input("a.wav", {}).kind == "audio"


def test_api_round_trip_and_info(codec_dir, rgb_nc):
    img, data = rgb_nc
    out = neurocodec.decode(data, codec=codec_dir)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert psnr(out, img) > 17
    info = neurocodec.info(data)
    assert info["bytes"] == len(data) and info["bpp"] == pytest.approx(8 * len(data) / (32 * 48))
    assert info["streams"][1] == info["parameter_bytes"] and info["streams"][2] == info["latent_bytes"]
    assert info["overhead_bytes"] + sum(info["streams"]) == len(data)  # the rate is the file
    assert info["levels"] == 7 and info["decoder_params"] > 100
    assert 0 < info["mac_per_pixel"] == pytest.approx(sum(info["mac_per_pixel_parts"].values()), abs=0.5)


def test_grayscale_is_one_plane(codec_dir):
    img = smooth(16, 16, planes=1)
    data = neurocodec.encode(img, codec=codec_dir, quality=4, preset="fast")
    nc = NcFile.from_bytes(data)
    assert nc.shape == (16, 16, 1) and Header.from_bytes(nc.streams[0], 1).syn[-1][0] == 1
    out = neurocodec.decode(data, codec=codec_dir)
    assert out.shape == (16, 16) and out.dtype == np.uint8


def test_more_iterations_and_higher_quality_help(codec_dir, rgb_nc):
    img, medium = rgb_nc
    fast = neurocodec.encode(img, codec=codec_dir, quality=3, preset="fast")
    slow = neurocodec.encode(img, codec=codec_dir, quality=3, preset="slow")
    p = {k: psnr(neurocodec.decode(d, codec=codec_dir), img) for k, d in (("fast", fast), ("slow", slow))}
    assert p["slow"] > p["fast"] + 1, p
    low = neurocodec.encode(img, codec=codec_dir, quality=0, preset="slow")
    high = neurocodec.encode(img, codec=codec_dir, quality=5, preset="slow")
    assert psnr(neurocodec.decode(high, codec=codec_dir), img) > psnr(neurocodec.decode(low, codec=codec_dir), img)
    assert len(high) > len(low)


def test_time_budget_stops_the_fit(codec_dir):
    c = neurocodec.load_codec(codec_dir)
    c.encode(smooth(16, 16), preset="slow", time_budget=0.1 / 60)  # 0.1 s
    assert c.last_stats["iterations"] < PRESETS["slow"]["iterations"]


_CHILD = """
import hashlib, sys
if sys.argv[1] == "notorch":
    sys.modules["torch"] = None  # any import of torch now fails
import neurocodec
out = neurocodec.decode(open(sys.argv[2], "rb").read(), codec=sys.argv[3])
print(hashlib.sha256(out.tobytes()).hexdigest(), out.shape, "torch" in sys.modules and sys.modules["torch"] is not None)
"""


def test_decoding_needs_no_torch_and_is_bit_identical_across_processes(codec_dir, rgb_nc, tmp_path):
    img, data = rgb_nc
    (tmp_path / "a.nc").write_bytes(data)
    here = hashlib.sha256(neurocodec.decode(data, codec=codec_dir).tobytes()).hexdigest()
    outs = []
    for mode, threads in (("notorch", "1"), ("notorch", "2"), ("torch", "2")):
        env = {"OMP_NUM_THREADS": threads, "PATH": "/usr/bin:/bin"}
        r = subprocess.run([sys.executable, "-c", _CHILD, mode, str(tmp_path / "a.nc"), codec_dir],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.split()[0])
        if mode == "notorch":
            assert r.stdout.split()[-1] == "False"
    assert outs == [here] * 3


def _rewrap(data: bytes, streams: list[bytes]) -> bytes:
    nc = NcFile.from_bytes(data)
    return NcFile(nc.codec_id, nc.quality, nc.shape, streams).to_bytes()


def test_corrupt_and_truncated_files(codec_dir, rgb_nc):
    img, data = rgb_nc
    s = NcFile.from_bytes(data).streams
    bad = [data[:len(data) // 2], data[:10], data[:-1],
           _rewrap(data, s[:2]),  # a stream missing
           _rewrap(data, [s[0][:-1], s[1], s[2]]),  # header cut short
           _rewrap(data, [s[0] + b"\0", s[1], s[2]]),  # trailing header byte
           _rewrap(data, [b"\x02" + s[0][1:], s[1], s[2]]),  # another version
           _rewrap(data, [s[0][:1] + b"\x09" + s[0][2:], s[1], s[2]]),  # 9 levels
           _rewrap(data, [s[0], s[1][:-3], s[2]]),  # parameters cut short
           _rewrap(data, [s[0], s[1], s[2][:-2]]),  # latents cut short
           _rewrap(data, [s[0], s[1], b""])]
    for b in bad:
        with pytest.raises(NcFormatError):
            neurocodec.decode(b, codec=codec_dir)
    rng = np.random.default_rng(0)
    for i in range(30):  # flipped bytes inside the streams: a clean error or some image, never a crash
        k = i % 3
        t = bytearray(s[k])
        t[int(rng.integers(len(t)))] ^= 1 << int(rng.integers(8))
        streams = [bytes(t) if j == k else s[j] for j in range(3)]
        try:
            out = neurocodec.decode(_rewrap(data, streams), codec=codec_dir)
        except NcFormatError:
            continue
        assert out.shape == img.shape and out.dtype == np.uint8


def test_info_of_a_corrupt_header_is_a_format_error(rgb_nc):
    _, data = rgb_nc
    s = NcFile.from_bytes(data).streams
    with pytest.raises(NcFormatError):
        neurocodec.info(_rewrap(data, [s[0][:3], s[1], s[2]]))


def test_options_are_checked_before_any_work(codec_dir, monkeypatch, tmp_path):
    def boom(*a, **k):
        raise AssertionError("fitting started")
    monkeypatch.setattr(encode_module, "encode_image", boom)
    img = smooth(16, 16)
    for opts, msg in (({"preset": "turbo"}, "preset must be one of"), ({"quality": 9}, "quality 9"),
                      ({"time_budget": -1.0}, "time_budget"), ({"time_budget": True}, "time_budget"),
                      ({"kbps": 3}, "kbps is not an option of coolchic")):
        with pytest.raises(ValueError, match=msg):
            neurocodec.encode(img, codec=codec_dir, **opts)
    not_an_image = tmp_path / "x.png"
    not_an_image.write_bytes(b"nope")
    with pytest.raises(ValueError, match="preset must be one of"):  # before the file is read
        neurocodec.encode(not_an_image, codec=codec_dir, preset="turbo")


def test_cli_encode_decode_info(codec_dir, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(smooth(24, 40)).save(tmp_path / "p.png")
    assert main(["encode", str(tmp_path / "p.png"), "--codec", codec_dir, "--quality", "2", "--preset", "fast",
                 "--time-budget", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert "MAC/px" in out and "bpp" in out
    assert main(["decode", str(tmp_path / "p.nc"), "--codec", codec_dir, "-q"]) == 0
    dec = np.asarray(Image.open(tmp_path / "p.decoded.png"))
    assert dec.shape == (24, 40, 3)
    assert np.array_equal(dec, neurocodec.decode((tmp_path / "p.nc").read_bytes(), codec=codec_dir))
    assert main(["info", str(tmp_path / "p.nc")]) == 0
    assert "mac_per_pixel" in capsys.readouterr().out
    assert main(["encode", str(tmp_path / "p.png"), "--codec", codec_dir, "--preset", "turbo", "-f"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("neurocodec: error: ") and "preset" in err and err.count("\n") == 1


def test_synthesis_convolution_is_exact_at_the_format_bounds():
    """decoder.conv runs on float64 BLAS: exact because every partial sum stays below 2^53
    (weights <= 2^12, activations <= 2^30, at most 64 x 9 terms). Compare with int64 sums."""
    from neurocodec.runtime.coolchic import decoder

    rng = np.random.default_rng(1)
    a = rng.integers(-2 ** 30, 2 ** 30 + 1, (64, 5, 7))
    w = rng.integers(-4096, 4097, (64, 64, 3, 3))
    a[:, 2, 3], w[:, :, 1, 1] = 2 ** 30, 4096  # the worst case: every term at its bound
    b = rng.integers(-4096, 4097, 64)
    for k, ww in ((3, w), (1, w[:, :, 1:2, 1:2])):
        r = k // 2
        ap = np.pad(a, ((0, 0), (r, r), (r, r)), mode="edge")
        acc = sum(np.tensordot(ww[:, :, dy, dx], ap[:, dy:dy + 5, dx:dx + 7], axes=(1, 0))
                  for dy in range(k) for dx in range(k))
        want = (acc + (b[:, None, None] << decoder.F_A) + (1 << 6)) >> 7
        assert np.array_equal(decoder.conv(a, ww, b, 7), want)


def test_the_float_upsampler_is_the_decoders():
    """fit.upsample2 (torch, float) computes decoder.upsample2 (integers) up to its rounding."""
    from neurocodec.runtime.coolchic import decoder

    rng = np.random.default_rng(2)
    taps = np.array([-9, 67, 225, -27])  # 2^-8 steps
    for c, h, w, oh, ow in ((1, 1, 1, 1, 2), (3, 5, 7, 9, 13), (2, 4, 6, 8, 12), (6, 3, 1, 5, 2)):
        x = rng.integers(-50, 50, (c, h, w)).astype(np.int64) << decoder.F_A
        want = decoder.upsample2(x, taps, 8, oh, ow)
        got = fit_module.upsample2(torch.from_numpy(x.astype(np.float64))[None],
                                   torch.tensor(taps / 256.0, dtype=torch.float64), oh, ow)[0].numpy()
        assert got.shape == want.shape == (c, oh, ow) and np.abs(got - want).max() <= 0.5


def test_the_core_install_decodes_to_png(codec_dir, rgb_nc, tmp_path):
    """Without torch and Pillow (the core install), `decode_file` still writes the PNG."""
    from PIL import Image

    img, data = rgb_nc
    (tmp_path / "a.nc").write_bytes(data)
    code = ("import sys; sys.modules['torch'] = None; sys.modules['PIL'] = None; import neurocodec; "
            f"neurocodec.decode_file({str(tmp_path / 'a.nc')!r}, codec={codec_dir!r})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    got = np.asarray(Image.open(tmp_path / "a.decoded.png"))
    assert np.array_equal(got, neurocodec.decode(data, codec=codec_dir))
    gray = smooth(5, 7, planes=1)
    from neurocodec.runtime.image.writers import png_bytes

    (tmp_path / "g.png").write_bytes(png_bytes(gray))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), gray)


def test_cli_eval_fits_every_image_at_the_preset(codec_dir, tmp_path, capsys):
    """`neurocodec eval` of a coolchic codec: the image kind's evaluation with each image fitted
    at the preset; whole-file bpp and PSNR per quality, rising together."""
    from PIL import Image

    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(2):
        Image.fromarray(np.roll(smooth(32, 48), 7 * i, axis=1)).save(data / f"i{i}.png")
    out = tmp_path / "ev"
    assert main(["eval", "--codec", codec_dir, "--data", str(data), "--out", str(out), "--preset", "fast",
                 "--qualities", "0,5", "--no-anchors"]) == 0
    res = json.loads((out / "results.json").read_text())
    cur = res["curves"][res["codec"]]
    assert cur["quality"] == [0, 5] and cur["n_images"] == [2, 2]
    assert cur["bpp"][0] < cur["bpp"][1] and cur["psnr"][0] < cur["psnr"][1]
    assert (out / "rd.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["eval", "--codec", codec_dir, "--data", str(data), "--out", str(tmp_path / "e2"),
                 "--preset", "turbo"]) == 1
    assert "preset" in capsys.readouterr().err
    from neurocodec import tools

    with pytest.raises(LookupError, match="no training"):
        tools.for_kind("coolchic").train("coolchic", [str(data)])


def test_cool_chic_5_recipe_fits_and_decodes(tmp_path):
    """recipe "v5" (Gaussian soft-rounding noise, a frozen-latent last phase, the best rounded
    state kept, candidates ranked by it, clipped net gradients, ARM started at a small scale):
    a valid file, more slow than fast, and the last phase leaves the latents untouched."""
    meta = json.loads((REPO / "codecs" / "coolchic" / "codec.json").read_text())
    meta.update(name="coolchic-v5-test", id=9005, presets=PRESETS)
    meta["model"].update(recipe="v5", clip=0.1, arm_init=True)
    (tmp_path / "codec.json").write_text(json.dumps(meta))
    torch.set_num_threads(1)
    img = smooth(32, 48)
    fast = neurocodec.encode(img, codec=str(tmp_path), quality=3, preset="fast")
    slow = neurocodec.encode(img, codec=str(tmp_path), quality=3, preset="slow")
    p_fast = psnr(neurocodec.decode(fast, codec=str(tmp_path)), img)
    p_slow = psnr(neurocodec.decode(slow, codec=str(tmp_path)), img)
    assert p_slow > p_fast + 1, (p_fast, p_slow)
    run = fit_module._Run(32, 48, 3, meta["model"], torch.device("cpu"), 0)
    run.iterations = 100
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
    before = [y.detach().clone() for y in run.model.latents]
    assert run._v5(0.0035, 0.99, False)[0] == "frozen"
    run.step(x, 0.0035, 0.99)
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.latents))
    assert run.model.arm[-1].bias[1].item() == pytest.approx(-4 / np.log(2))


def test_long_fits_compile_and_fall_back_to_eager(codec_dir, monkeypatch):
    """Fits of COMPILE_FROM iterations or more compile their loss on the CPU (NEUROCODEC_COMPILE
    overrides); where compiling fails the fit goes on eagerly, with a warning, to the eager fit's file."""
    calls = []

    def broken_compile(fn, **kw):
        def run(*a, **k):
            calls.append(len(a))
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(fit_module.torch, "compile", broken_compile)
    monkeypatch.setenv("NEUROCODEC_COMPILE", "1")
    torch.set_num_threads(1)
    img = smooth(32, 48)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        nc = neurocodec.encode(img, codec=codec_dir, quality=3, preset="fast")
    monkeypatch.setenv("NEUROCODEC_COMPILE", "0")
    assert calls and nc == neurocodec.encode(img, codec=codec_dir, quality=3, preset="fast")  # as if eager
    r = fit_module._Run(32, 48, 3, json.loads(Path(codec_dir, "codec.json").read_text())["model"],
                        torch.device("cpu"), 0)
    assert r.compiled is None  # eager unless fit() asks
    monkeypatch.delenv("NEUROCODEC_COMPILE")
    assert PRESETS["slow"]["iterations"] < fit_module.COMPILE_FROM  # this file's fits stay eager


@pytest.mark.slow
def test_compiled_loss_is_the_eager_loss(codec_dir):
    """torch.compile of the forward pass and loss (tens of seconds to compile): the same loss as
    eager on rounded latents (no noise), within bf16 rounding, and gradients that train."""
    torch.set_num_threads(1)
    cfg = json.loads(Path(codec_dir, "codec.json").read_text())["model"]
    img = smooth(32, 48)
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
    eager = fit_module._Run(32, 48, 3, cfg, torch.device("cpu"), 0)
    comp = fit_module._Run(32, 48, 3, cfg, torch.device("cpu"), 0)
    comp.use_compile()
    for run in (eager, comp):
        with torch.no_grad():
            for y in run.model.latents:
                y.copy_(torch.linspace(-3, 3, y.numel()).view_as(y))
    le = eager._forward_loss(x, 0.0035, "frozen", 0.1, 0.0)[0].item()
    lc = comp._forward_loss(x, 0.0035, "frozen", 0.1, 0.0)[0].item()
    assert comp.compiled is not None and lc == pytest.approx(le, rel=1e-2)
    first = comp.step(x, 0.0035, 0.2)[0]
    for _ in range(30):
        last = comp.step(x, 0.0035, 0.2)[0]
    assert comp.compiled is not None and last < first
