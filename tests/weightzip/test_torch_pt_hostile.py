"""torch checkpoints that are hostile, broken or from older weightzip releases: the pickle
reader executes nothing, anything it does not understand is stored as bytes (byte-exact, no
warnings), random mutations never break the splitter, and .wz files of the previous
(tensor-exact) torch path still unpack. The ordinary checkpoints: test_torch_pt.py."""
from __future__ import annotations

import io
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from common import needs_zstd, run_python, sha256_file
from wz_helpers import roundtrip

import weightzip
from weightzip import inputs, pickle_scan, torch_zip
from weightzip.dtypes import BY_NAME

torch = pytest.importorskip("torch")
from torch_pt_helpers import optimizer_checkpoint, pack_quietly

# ------------------------------------------------------------------ hostile or broken input

def test_pickle_reader_executes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    root, end = pickle_scan.scan(evil)
    assert isinstance(root, pickle_scan.Call) and (root.func.module, root.func.name) == ("os", "system")
    assert end == len(evil) and not marker.exists()
    src = tmp_path / "evil.pt"  # a torch-shaped archive whose pickle would run a command
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("evil/data.pkl", evil)
        z.writestr("evil/data/0", bytes(64))
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src) and not marker.exists()


@pytest.mark.parametrize("case", ["truncated", "bad pickle", "bad directory", "not a checkpoint zip",
                                  "legacy truncated", "empty"])
def test_broken_checkpoints_are_stored_raw_without_warnings(tmp_path, case):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.randn(32, 32)}, good)
    blob = good.read_bytes()
    if case == "truncated":
        blob = blob[: len(blob) // 2]
    elif case == "bad pickle":
        i = blob.index(b"\x80\x02", blob.index(b"data.pkl"))
        blob = blob[:i + 2] + b"\xff" + blob[i + 3:]
    elif case == "bad directory":
        i = blob.rindex(b"PK\x01\x02")
        blob = blob[:i + 42] + b"\xff\xff\xff\x7f" + blob[i + 46:]  # local header offset
    elif case == "not a checkpoint zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("a/b.txt", "x")
        blob = buf.getvalue()
    elif case == "legacy truncated":
        legacy = tmp_path / "l.pt"
        torch.save({"w": torch.randn(32, 32)}, legacy, _use_new_zipfile_serialization=False)
        blob = legacy.read_bytes()[:-100]
    else:
        blob = b""
    src = tmp_path / "broken.pt"
    src.write_bytes(blob)
    wz = pack_quietly(src, tmp_path / "broken.wz")
    out = weightzip.unpack(wz, tmp_path / "back.pt")
    assert out.read_bytes() == blob
    assert weightzip.verify(wz, src).startswith("OK")


def test_mutated_checkpoints_never_break_the_splitter(tmp_path):
    """Random byte flips anywhere: the layout is None or in-bounds, sorted, non-overlapping."""
    src = tmp_path / "m.pt"
    optimizer_checkpoint(src)
    blob = src.read_bytes()
    rng = np.random.default_rng(0)
    for trial in range(300):
        b = bytearray(blob)
        for pos in rng.integers(0, len(b), rng.integers(1, 8)):
            b[pos] = rng.integers(0, 256)
        if trial % 3 == 0:  # aim at the pickle and the directory, where parsing happens
            lo = blob.rindex(b"PK\x01\x02") if trial % 2 else 64
            b[min(lo + int(rng.integers(0, 200)), len(b) - 1)] ^= 1 << int(rng.integers(0, 8))
        found = inputs.torch_layout(io.BytesIO(bytes(b)), len(b))
        if found is None:
            continue
        pos = 0
        for start, end, name, dtype, shape in found[1]:
            assert pos <= start <= end <= len(b) and isinstance(name, str)
            assert end - start == BY_NAME[dtype].itemsize * int(np.prod(shape))
            pos = end


def test_mutated_pickles_raise_format_error_only():
    data = io.BytesIO()
    torch.save({"w": torch.ones(2), "s": {"x": [1, 2.5, "t", None, True]}}, data)
    with zipfile.ZipFile(data) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    rng = np.random.default_rng(1)
    for _ in range(2000):
        b = bytearray(pkl)
        for pos in rng.integers(0, len(b), rng.integers(1, 4)):
            b[pos] = rng.integers(0, 256)
        try:
            root, _ = pickle_scan.scan(bytes(b))
            torch_zip.storage_refs(root)
        except weightzip.FormatError:
            pass


def test_deep_and_self_referencing_pickles_are_bounded():
    deep = b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"."  # 200k nested lists
    root, _ = pickle_scan.scan(deep)
    assert torch_zip.storage_refs(root) == {}
    loop = b"\x80\x02]q\x00h\x00a."  # a list that contains itself
    root, _ = pickle_scan.scan(loop)
    assert root[0] is root and torch_zip.storage_refs(root) == {}


# ------------------------------------------------------------------ compatibility

def test_old_torch_wz_files_still_unpack(tmp_path):
    """.wz files of the previous (tensor-exact, JSON tree) torch path keep working."""
    from weightzip.container import Writer
    from weightzip.dtypes import BY_NAME
    w_arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    wz = tmp_path / "old.pt.wz"
    with open(wz, "wb") as f:
        w = Writer(f)
        i = w.add_tensor("sd.w", BY_NAME["F32"], (2, 3), iter([memoryview(w_arr.reshape(-1).view(np.uint8))]))
        tree = {"__dict__": [["sd", {"__dict__": [["w", {"__tensor__": i}]], "ordered": True}],
                             ["epoch", {"__value__": 3}]], "ordered": False}
        w.finish([], {"kind": "torch", "tree": tree})
    out = weightzip.unpack(wz, tmp_path / "old.pt")
    back = torch.load(out, weights_only=True)
    assert isinstance(back["sd"], OrderedDict) and back["epoch"] == 3
    assert torch.equal(back["sd"]["w"], torch.from_numpy(w_arr))
    other = tmp_path / "other.pt"  # different bytes, same tensors: old files compare tensors
    torch.save({"sd": OrderedDict(w=torch.from_numpy(w_arr).clone()), "epoch": 3}, other)
    assert "bit-exact" in weightzip.verify(wz, other)


@needs_zstd
def test_pt_path_never_imports_torch(tmp_path):
    src = tmp_path / "c.pt"
    torch.save({"w": torch.randn(10, 10)}, src)
    r = run_python(f"""
        import sys, weightzip
        wz = weightzip.pack({str(src)!r}, {str(tmp_path / 'c.wz')!r})
        weightzip.unpack(wz, {str(tmp_path / 'back.pt')!r})
        print(weightzip.info(wz)["source"], weightzip.verify(wz, {str(src)!r}))
        assert "torch" not in sys.modules, "torch was imported"
    """)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().startswith("torch-zip OK") and r.stderr == b""
    assert (tmp_path / "back.pt").read_bytes() == src.read_bytes()


def test_legacy_magic_bytes():
    assert torch_zip.is_legacy(b"\x80\x02" + torch_zip.LEGACY_HEAD + b"\x80")
    assert not torch_zip.is_legacy(b"\x80\x02" + bytes(14))
