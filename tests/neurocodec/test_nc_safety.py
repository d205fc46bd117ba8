"""Never lose a user's data (neurocodec side): decoding never lands on the file that was
encoded, existing outputs need --force, outputs are checked before the work, temporaries go
on SIGTERM, untrusted checkpoints give one line, bad files raise one error family."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")
sf = pytest.importorskip("soundfile")
from common import REPO  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_codec import tone  # noqa: E402

import neurocodec  # noqa: E402
from neurocodec.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_image_codec) -> str:
    return tiny_image_codec


@pytest.fixture(scope="module")
def tiny_audio(tiny_audio_codec) -> str:
    return tiny_audio_codec


def sha(p) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(result, *needles) -> str:
    rc, out, err = result
    assert rc == 1 and out == "", (rc, out, err)
    assert err.startswith("neurocodec: error: ") and err.count("\n") == 1, err
    for n in needles:
        assert n.lower() in err.lower(), (n, err)
    return err


def picture(path: Path, h: int = 24, w: int = 32) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_encode_then_decode_never_overwrites_the_original_image(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    digest = sha(picture(tmp_path / "p.png"))
    assert cli(capsys, "encode", "p.png", "--codec", tiny)[0] == 0
    rc, out, err = cli(capsys, "decode", "p.nc", "--codec", tiny)
    assert rc == 0, err
    assert sha("p.png") == digest
    assert sorted(os.listdir()) == ["p.decoded.png", "p.nc", "p.png"]
    # a second decode does not replace the first one's output without --force
    one_line(cli(capsys, "decode", "p.nc", "--codec", tiny), "p.decoded.png", "--force")
    assert cli(capsys, "decode", "p.nc", "--codec", tiny, "--force")[0] == 0


def test_encode_then_decode_never_overwrites_the_original_audio(tiny_audio, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sf.write("speech.wav", tone(16000, 0.5), 16000)
    digest = sha("speech.wav")
    assert cli(capsys, "encode", "speech.wav", "--codec", tiny_audio)[0] == 0
    assert cli(capsys, "decode", "speech.nc")[0] == 0
    assert sha("speech.wav") == digest
    assert sorted(os.listdir()) == ["speech.decoded.wav", "speech.nc", "speech.wav"]


def test_existing_nc_needs_force(tiny, tmp_path, capsys):
    src = picture(tmp_path / "p.png")
    (tmp_path / "p.nc").write_bytes(b"the user's file")
    one_line(cli(capsys, "encode", src, "--codec", tiny), "p.nc", "--force")
    assert (tmp_path / "p.nc").read_bytes() == b"the user's file"
    with pytest.raises(FileExistsError):
        neurocodec.encode_file(src, codec=tiny)
    assert cli(capsys, "encode", src, "--codec", tiny, "-f")[0] == 0
    assert (tmp_path / "p.nc").read_bytes()[:3] == b"\x89NC"


def test_outputs_are_checked_before_the_work(tiny, tmp_path, capsys, monkeypatch):
    src = picture(tmp_path / "p.png")
    assert cli(capsys, "encode", src, "--codec", tiny, "-o", tmp_path / "p.nc")[0] == 0
    import neurocodec.api as api

    def must_not_run(*a, **k):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(api, "encode", must_not_run)
    one_line(cli(capsys, "encode", src, "--codec", tiny, "-o", tmp_path / "no" / "such" / "x.nc"), "x.nc")
    (tmp_path / "p2.nc").write_bytes(b"x")
    one_line(cli(capsys, "encode", src, "--codec", tiny, "-o", tmp_path / "p2.nc"), "p2.nc")
    monkeypatch.setattr(type(neurocodec.load_codec(tiny)), "decode_nc", must_not_run)
    one_line(cli(capsys, "decode", tmp_path / "p.nc", "--codec", tiny, "-o", tmp_path / "nodir" / "x.png"), "x.png")
    for bad in ("x.jpg", "x.wav", "x.nc", "x"):  # lossy, or not an image format at all
        one_line(cli(capsys, "decode", tmp_path / "p.nc", "--codec", tiny, "-o", tmp_path / bad), bad)
        assert not (tmp_path / bad).exists()


def _evil_checkpoint(path: Path, marker: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"config": {"model": {}}, "model": Evil()}, path)


def test_untrusted_checkpoints_are_one_line_and_never_run(tmp_path, capsys):
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    _evil_checkpoint(evil, marker)
    one_line(cli(capsys, "export", evil, "--out", tmp_path / "c", "--name", "x", "--id", 5000), "evil.pt")
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(2):
        picture(data / f"{i}.png", 64, 64)
    one_line(cli(capsys, "train", "--codec", "hyperprior", "--data", data, "--out", tmp_path / "run",
                 "--init", evil, "--steps", 1), "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("argv", [
    ["encode", "p.png", "--refine-steps", "-5"], ["encode", "p.png", "--quality", "-1"],
    ["encode", "s.wav", "--kbps", "0"], ["encode", "s.wav", "--kbps", "nan"],
    ["train", "--codec", "hyperprior", "--data", "d", "--threads", "0"],
    ["train", "--codec", "hyperprior", "--data", "d", "--batch", "0"],
    ["export", "c.pt", "--out", "o", "--name", "n", "--id", "0"],
])
def test_argument_ranges_are_usage_errors(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "usage" in capsys.readouterr().err


def test_unknown_codec_id_is_a_format_error(tiny, tmp_path):
    from neurocodec.runtime.bitstream import NcFile

    data = neurocodec.encode(np.zeros((8, 8, 3), np.uint8), codec=tiny)
    nc = NcFile.from_bytes(data)
    nc.codec_id = 4321
    with pytest.raises(neurocodec.NcFormatError, match="4321"):
        neurocodec.decode(nc.to_bytes())


def _decode_caught_writing(tiny_audio: str, tmp_path: Path) -> tuple[subprocess.Popen, list[str], dict]:
    """Start `neurocodec decode` of 4 minutes of audio; return once its temporary output exists."""
    src, nc = tmp_path / "long.wav", tmp_path / "long.nc"
    if not nc.exists():  # a retry reuses them
        sf.write(str(src), tone(16000, 240.0), 16000)
        nc = neurocodec.encode_file(src, codec=tiny_audio)
    env = {k: v for k, v in os.environ.items() if k != "NEUROCODEC_PATH"}
    env.update(PYTHONPATH=str(REPO), NEUROCODEC_PATH=str(Path(tiny_audio).parent))
    argv = [sys.executable, "-m", "neurocodec", "decode", str(nc), "-q"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    t0 = time.time()
    while not list(tmp_path.glob(".*.tmp")):
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < 120, "no temporary output appeared"
        time.sleep(0.01)
    return p, argv, env


def _signalled_while_writing(tiny_audio: str, tmp_path: Path, sig: int) -> tuple[subprocess.Popen, str, list, dict]:
    """Send sig to a decode caught writing its temporary output. The decode may still finish
    (and rename) before the signal lands: then the run is discarded and tried again."""
    for _ in range(5):
        p, argv, env = _decode_caught_writing(tiny_audio, tmp_path)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        if p.returncode != 0:
            return p, err, argv, env
        (tmp_path / "long.decoded.wav").unlink()  # finished first: a complete output, no temporary
    pytest.fail("the decode finished before the signal landed in 5 tries")


def test_sigterm_during_audio_decode_leaves_no_temporary(tiny_audio, tmp_path):
    p, err, _, _ = _signalled_while_writing(tiny_audio, tmp_path, signal.SIGTERM)
    assert p.returncode == 143, err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["long.nc", "long.wav"]


def test_kill_9_leftover_is_removed_by_the_next_decode(tiny_audio, tmp_path):
    p, _, argv, env = _signalled_while_writing(tiny_audio, tmp_path, signal.SIGKILL)
    assert p.returncode == -signal.SIGKILL
    assert len(list(tmp_path.glob(".*.tmp"))) == 1  # SIGKILL cannot be caught...
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["long.decoded.wav", "long.nc", "long.wav"]


def test_full_and_read_only_folders_are_one_line_naming_the_output(tiny, tiny_audio, tmp_path, capsys):
    from common import tmpfs

    src = tmp_path / "speech.wav"
    sf.write(str(src), tone(16000, 20.0), 16000)
    nc = neurocodec.encode_file(src, codec=tiny_audio)
    with tmpfs(tmp_path / "full", "64k") as full:  # 20 s of 16-bit audio is 640 kB
        err = one_line(cli(capsys, "decode", nc, "-q", "-o", full / "s.wav"), str(full / "s.wav"), "no space left")
        assert ".tmp" not in err and list(full.iterdir()) == []
    img_nc = neurocodec.encode_file(picture(tmp_path / "p.png"), codec=tiny)
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as ro:
        for args in (("decode", img_nc, "--codec", tiny, "-o", ro / "p.png"),
                     ("encode", tmp_path / "p.png", "--codec", tiny, "-o", ro / "p.nc")):
            err = one_line(cli(capsys, *args), str(ro))
            assert ".tmp" not in err
