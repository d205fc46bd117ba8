"""torch checkpoints packed byte-exact without unpickling (weightzip/torch_zip.py): every
storage is a tensor entry coded by its dtype and named by the first tensor using it, the
rest of the file is bytes, and unpack restores the file sha256-identical. Checkpoints are
generated in tmp_path; the ResNet-56 test uses ../shared/data when present. Hostile and
broken checkpoints, and older .wz files: test_torch_pt_hostile.py."""
from __future__ import annotations

import os
import warnings
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from common import needs_zstd, sha256_file
from wz_helpers import roundtrip

import weightzip
from weightzip import zipscan

torch = pytest.importorskip("torch")
from torch_pt_helpers import RESNET, optimizer_checkpoint, pack_quietly, rewrite_archive, tensors_of

# ------------------------------------------------------------------ regressions

def test_cuda_tagged_optimizer_checkpoint_is_byte_exact(tmp_path):
    src = tmp_path / "optimizer.pt"
    optimizer_checkpoint(src, cuda=True)
    with zipfile.ZipFile(src) as z:
        pkl = z.read("optimizer/data.pkl")
    assert b"cuda:0" in pkl and b"X\x03\x00\x00\x00cpu" not in pkl
    back = torch.load(src, map_location="cpu", weights_only=True)  # a genuine checkpoint
    assert back["optimizer"]["state"][0]["exp_avg"].shape == (64, 32)
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    assert weightzip.info(wz)["source"] == "torch-zip"
    t = tensors_of(wz)
    assert t["model.0.weight"]["dtype"] == "F32" and t["model.0.weight"]["shape"] == [64, 32]
    assert t["optimizer.state.0.exp_avg_sq"]["shape"] == [64, 32]
    assert t["optimizer.state.0.step"]["dtype"] == "F32" and t["optimizer.state.0.step"]["shape"] == []
    # verify compares bytes: the CPU-tagged file holds the same tensors but other bytes
    with pytest.raises(weightzip.ChecksumError):
        weightzip.verify(wz, tmp_path / "cpu_optimizer.pt")


def test_pt_inside_a_folder_is_coded_like_the_standalone_file(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    optimizer_checkpoint(folder / "optimizer.pt")
    (folder / "config.json").write_text('{"lr": 0.001}')
    alone = pack_quietly(folder / "optimizer.pt", tmp_path / "alone.wz")
    packed, out = roundtrip(folder, tmp_path, name="folder")
    assert sha256_file(out / "optimizer.pt") == sha256_file(folder / "optimizer.pt")
    with weightzip.open(packed) as wf:
        fd = next(fd for fd in wf.reader.files if fd["path"] == "optimizer.pt")
        kinds = [wf.reader.entries[i].kind for i in fd["parts"]]
    assert fd["as"] == "torch-zip"
    assert kinds.count("tensor") == 4 + 3 * 4  # 4 parameters, Adam's step/exp_avg/exp_avg_sq each
    # the same coding: the folder costs at most its config file and a few index bytes more
    assert packed.stat().st_size <= alone.stat().st_size + 200
    assert alone.stat().st_size < 0.95 * (folder / "optimizer.pt").stat().st_size


@needs_zstd
@pytest.mark.data
def test_resnet56_standalone_and_in_a_folder(tmp_path):
    if not RESNET.exists():
        pytest.skip(f"{RESNET} not present")
    size = RESNET.stat().st_size
    wz, out = roundtrip(RESNET, tmp_path)
    assert sha256_file(out) == sha256_file(RESNET)
    t = tensors_of(wz)
    assert len(t) == 350 and t["conv1.weight"]["shape"] == [16, 3, 3, 3]
    folder = tmp_path / "ckpt"
    folder.mkdir()
    os.symlink(RESNET, folder / RESNET.name)
    fwz, fout = roundtrip(folder, tmp_path, name="f")
    ratio, fratio = wz.stat().st_size / size, fwz.stat().st_size / size
    assert ratio < 0.83 and abs(fratio - ratio) < 0.001, (ratio, fratio)  # raw bytes were 93.9 %


# ------------------------------------------------------------------ content variety

@pytest.mark.filterwarnings("ignore")  # torch's notes on quantization and complex32 while saving
def test_odd_dtypes_map_to_their_coders(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g)
    sd = OrderedDict(
        f32=x, f64=x.double(), f16=x.half(), bf16=x.bfloat16(), c64=torch.complex(x, -x),
        c128=torch.complex(x.double(), x.double()), b=x > 0, u8=(x * 9).to(torch.uint8),
        i8=(x * 9).to(torch.int8), i16=(x * 99).to(torch.int16), i32=(x * 99).to(torch.int32),
        i64=(x * 99).to(torch.int64), u16=(x.abs() * 99).to(torch.uint16),
        u32=(x.abs() * 99).to(torch.uint32), u64=(x.abs() * 99).to(torch.uint64),
        e4m3=x.to(torch.float8_e4m3fn), e5m2=x.to(torch.float8_e5m2),
        e4m3fnuz=x.to(torch.float8_e4m3fnuz), q8=torch.quantize_per_tensor(x, 0.1, 3, torch.quint8),
        qi32=torch.quantize_per_tensor(x, 0.1, 0, torch.qint32))
    sd["c32"] = torch.complex(x.half(), x.half())
    src = tmp_path / "dtypes.pt"
    torch.save(sd, src)
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    want = {"f32": ("F32", [6, 4]), "f64": ("F64", [6, 4]), "f16": ("F16", [6, 4]),
            "bf16": ("BF16", [6, 4]), "c64": ("F32", [48]), "c128": ("F64", [48]), "c32": ("F16", [48]),
            "b": ("BOOL", [6, 4]), "u8": ("U8", [6, 4]), "i8": ("I8", [6, 4]), "i16": ("I16", [6, 4]),
            "i32": ("I32", [6, 4]), "i64": ("I64", [6, 4]), "u16": ("U16", [6, 4]),
            "u32": ("U32", [6, 4]), "u64": ("U64", [6, 4]), "e4m3": ("F8_E4M3", [6, 4]),
            "e5m2": ("F8_E5M2", [6, 4]), "e4m3fnuz": ("U8", [6, 4]), "q8": ("U8", [6, 4]),
            "qi32": ("I32", [6, 4])}
    t = tensors_of(wz)
    assert {k: (v["dtype"], v["shape"]) for k, v in t.items()} == want
    got = weightzip.load(wz)  # full, contiguous tensors come back with their real shape
    assert np.array_equal(got["f32"], x.numpy()) and np.array_equal(got["u16"], sd["u16"].numpy())


def test_shared_empty_and_parameter_storages(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = OrderedDict(col=base[:, 1], full=base, t=base.t(), tail=base[2:], empty=torch.zeros(0, 4),
                     p=torch.nn.Parameter(torch.ones(3, 2)), scalar=torch.tensor(2.5))
    src = tmp_path / "pytorch_model.bin"
    torch.save(sd, src)
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    t = tensors_of(wz)
    # one entry per storage, named by a tensor that covers it whole (else by its first user)
    assert set(t) == {"full", "empty", "p", "scalar"}
    assert t["full"]["shape"] == [4, 6] and t["empty"]["shape"] == [0, 4] and t["scalar"]["shape"] == []
    back = torch.load(out, weights_only=True)
    assert back["t"].untyped_storage().data_ptr() == back["full"].untyped_storage().data_ptr()


def test_nested_state_and_module_state_dict(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    obj = {"state_dict": net.state_dict(), "epoch": 5, "name": "run-1",
           "nested": {"a": [torch.ones(2), (torch.zeros(3), {7: torch.eye(2)})]}}
    src = tmp_path / "nested.pth"
    torch.save(obj, src)
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    assert {"state_dict.0.weight", "state_dict.1.num_batches_tracked", "nested.a.0", "nested.a.1.0",
            "nested.a.1.1.7"} <= set(tensors_of(wz))
    back = torch.load(out, weights_only=True)
    assert back["state_dict"]._metadata == obj["state_dict"]._metadata


def test_extra_members_and_deflated_member(tmp_path):
    src = tmp_path / "extra.pt"
    torch.save({"w": torch.randn(64, 64)}, src)
    with zipfile.ZipFile(src, "a") as z:  # appending rewrites the central directory
        z.writestr("extra/notes.txt", "hello " * 100, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("extra/data/999", bytes(range(256)))  # looks like a storage, referenced by nothing
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    assert set(tensors_of(wz)) == {"w"}


def test_big_endian_storages_are_kept_as_bytes(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.randn(8, 8), "b": torch.ones(5, dtype=torch.bool)}, plain)
    src = tmp_path / "big.pt"
    rewrite_archive(plain, src, lambda n, d: b"big" if n == "byteorder" else d)
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    t = tensors_of(wz)
    assert t["w"]["dtype"] == "U8" and t["w"]["shape"] == [256] and t["b"]["dtype"] == "BOOL"


def test_legacy_format_is_split_too(tmp_path):
    src = tmp_path / "legacy.pt"
    sd = OrderedDict(w=torch.randn(20, 30), i=torch.arange(7), h=torch.randn(5).half())
    torch.save(sd, src, _use_new_zipfile_serialization=False)
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    assert weightzip.info(wz)["source"] == "torch-legacy"
    t = tensors_of(wz)
    assert (t["w"]["dtype"], t["w"]["shape"]) == ("F32", [20, 30])
    assert (t["i"]["dtype"], t["h"]["dtype"]) == ("I64", "F16")


def test_torchscript_archive(tmp_path):
    src = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notes
        m = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU()))
        torch.jit.save(m, src)
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    t = tensors_of(wz)
    assert t["0.weight"]["shape"] == [8, 16] and t["0.bias"]["dtype"] == "F32"


def test_traced_module_constants(tmp_path):
    """torch.jit.trace bakes captured tensors into constants.pkl / constants/<key>."""
    c = torch.randn(50, 8)

    class M(torch.nn.Module):
        def forward(self, x):
            return x @ c
    src = tmp_path / "traced.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notes
        torch.jit.save(torch.jit.trace(M(), torch.randn(3, 50)), src)
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    t = tensors_of(wz)
    assert t["constants.0"]["shape"] == [50, 8] and t["constants.0"]["dtype"] == "F32"


def test_zip64_archive(tmp_path, monkeypatch):
    """Checkpoints over 4 GB use zip64 records; a small limit makes zipfile write them here."""
    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.randn(100, 10), "b": torch.randn(50)}, plain)
    src = tmp_path / "z64.pt"
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 100)
    with zipfile.ZipFile(plain) as zi, zipfile.ZipFile(src, "w") as zo:
        for info in zi.infolist():
            zo.writestr(info.filename, zi.read(info))
    monkeypatch.undo()
    blob = src.read_bytes()
    assert b"PK\x06\x06" in blob and b"PK\x06\x07" in blob  # zip64 end records
    with open(src, "rb") as f:
        ms = zipscan.members(f, len(blob))
    assert [m.name for m in ms] == zipfile.ZipFile(src).namelist()
    wz, out = roundtrip(src, tmp_path)
    assert sha256_file(out) == sha256_file(src)
    assert tensors_of(wz)["a"]["shape"] == [100, 10]


@pytest.mark.slow
def test_zip64_checkpoint_written_by_torch(tmp_path):
    """A real > 4 GiB torch.save file: members past 4 GiB are found through zip64 records."""
    src = tmp_path / "huge.pt"
    big = torch.zeros((4 << 30) + 4096, dtype=torch.uint8)
    torch.save({"big": big, "after": torch.arange(100, dtype=torch.float32)}, src)
    del big
    with open(src, "rb") as f:
        ms = zipscan.members(f, src.stat().st_size)
        assert max(zipscan.data_start(f, src.stat().st_size, m) for m in ms) > 1 << 32
    wz = pack_quietly(src, tmp_path / "huge.wz")
    t = tensors_of(wz)
    assert t["after"]["dtype"] == "F32" and t["after"]["shape"] == [100] and t["big"]["dtype"] == "U8"
    assert weightzip.verify(wz, src).startswith("OK")  # sha256 of the restored stream
    with weightzip.open(wz) as wf:  # decodes only this tensor
        np.testing.assert_array_equal(wf.get_tensor("after"), np.arange(100, dtype=np.float32))
