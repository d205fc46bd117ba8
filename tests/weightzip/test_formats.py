"""Real input formats, generated in tmp_path: safetensors, HF folders and arbitrary files.
pack -> unpack must restore them byte for byte and never touch the input. (torch checkpoints
and numpy files: test_formats_torch_numpy.py.)"""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from common import needs_zstd, raw, run_python, sha256_bytes, sha256_file, tree_hashes
from wz_helpers import LEVELS, handmade_safetensors, roundtrip, torch_tensors

import weightzip

# ------------------------------------------------------------------ safetensors

@needs_zstd
@pytest.mark.parametrize("level", LEVELS)
def test_safetensors_from_library(tmp_path, level):
    import torch
    from safetensors.torch import save_file
    src = tmp_path / "model.safetensors"
    t = torch_tensors()
    save_file(t, str(src), metadata={"format": "pt", "note": "é ünicode"})
    wz, out = roundtrip(src, tmp_path, level)
    assert sha256_file(out) == sha256_file(src)
    assert wz.stat().st_size < src.stat().st_size
    with weightzip.open(wz, framework="torch") as f:
        assert set(f.keys()) == set(t)
        assert f.metadata() == {"format": "pt", "note": "é ünicode"}
        for k, v in t.items():
            got = f.get_tensor(k)
            assert got.dtype == v.dtype and got.shape == v.shape
            assert torch.equal(got.reshape(-1).view(torch.uint8), v.reshape(-1).view(torch.uint8))
    inf = weightzip.info(wz)
    assert inf["source"] == "safetensors"
    assert {e["name"] for e in inf["entries"] if e["kind"] == "tensor"} == set(t)


@pytest.mark.parametrize("level", LEVELS)
def test_safetensors_with_gaps_and_trailing_bytes(tmp_path, level):
    src = tmp_path / "odd.safetensors"
    tensors = handmade_safetensors(src)
    wz, out = roundtrip(src, tmp_path, level)
    assert out.read_bytes() == src.read_bytes()
    loaded = weightzip.load(wz)
    for k, a in tensors.items():
        assert loaded[k].dtype == a.dtype and raw(loaded[k]) == raw(a)


def test_large_tensor_streams_in_slabs(tmp_path):
    """A 40 MiB tensor is read, coded and written in 32 MiB slabs: the seams must vanish, and
    threads / progress bars must not change a byte of the output."""
    from safetensors.numpy import save_file
    rng = np.random.default_rng(5)
    big = (rng.standard_normal(20 * (1 << 20) + 3) * 0.01).astype(np.float16)  # 40 MiB + 6 B
    src = tmp_path / "big.safetensors"
    save_file({"big": big, "small": np.arange(10, dtype=np.int32)}, str(src))
    wz1 = weightzip.pack(src, tmp_path / "t1.wz", level="fast", threads=1)
    wz2 = weightzip.pack(src, tmp_path / "t2.wz", level="fast", threads=2, progress=True)
    assert sha256_file(wz1) == sha256_file(wz2)
    out = weightzip.unpack(wz2, tmp_path / "back.safetensors", threads=2, progress=False)
    assert sha256_file(out) == sha256_file(src)
    with weightzip.open(wz1) as f:
        assert raw(f.get_tensor("big")) == raw(big)


def test_default_output_names_and_overwrite(tmp_path):
    src = tmp_path / "m.safetensors"
    handmade_safetensors(src)
    wz = weightzip.pack(src)
    assert wz == tmp_path / "m.safetensors.wz" and wz.exists()
    with pytest.raises(FileExistsError):
        weightzip.pack(src, overwrite=False)
    with pytest.raises(ValueError):
        weightzip.pack(src, src)  # would overwrite its own input
    src.rename(tmp_path / "orig.safetensors")
    out = weightzip.unpack(wz)
    assert out == tmp_path / "m.safetensors"
    assert out.read_bytes() == (tmp_path / "orig.safetensors").read_bytes()
    with pytest.raises(FileExistsError):
        weightzip.unpack(wz, overwrite=False)


# ------------------------------------------------------------------ HF folders

def make_hf_folder(root):
    from safetensors.torch import save_file
    t = torch_tensors()
    names = list(t)
    shards = {"model-00001-of-00002.safetensors": names[:4], "model-00002-of-00002.safetensors": names[4:]}
    root.mkdir()
    weight_map = {}
    for fname, keys in shards.items():
        save_file({k: t[k] for k in keys}, str(root / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in keys})
    index = {"metadata": {"total_size": 1}, "weight_map": weight_map}
    (root / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (root / "config.json").write_text(json.dumps({"architectures": ["Tiny"], "hidden_size": 16}))
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\nc\n")
    (root / "tokenizer" / "deeper").mkdir()
    (root / "tokenizer" / "deeper" / "merges.bin").write_bytes(os.urandom(3000))
    (root / "tokenizer" / "deeper" / "empty").write_bytes(b"")
    (root / ".hidden").write_text("kept")
    return root


@pytest.mark.parametrize("level", ["fast", "default"])
def test_hf_folder_restores_identical_tree(tmp_path, level):
    src = make_hf_folder(tmp_path / "hf")
    wz, out = roundtrip(src, tmp_path, level)
    assert out.is_dir()
    assert tree_hashes(out) == tree_hashes(src)
    inf = weightzip.info(wz)
    assert inf["source"] == "folder"
    assert sorted(inf["files"]) == sorted(tree_hashes(src))
    # shards are split into tensors, not stored opaque, and load() sees all of them
    assert len([e for e in inf["entries"] if e["kind"] == "tensor"]) == len(torch_tensors())
    import torch
    loaded = weightzip.load(wz, framework="torch")
    for k, v in torch_tensors().items():
        assert loaded[k].dtype == v.dtype, k
        assert torch.equal(loaded[k].reshape(-1).view(torch.uint8), v.reshape(-1).view(torch.uint8)), k
    # no temporary files left beside the outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "out", "out.wz"]


def test_verify_detects_a_different_original(tmp_path):
    src = make_hf_folder(tmp_path / "hf")
    wz = weightzip.pack(src, tmp_path / "hf.wz")
    (src / "extra.txt").write_text("new file")
    with pytest.raises(weightzip.ChecksumError):
        weightzip.verify(wz, src)
    (src / "extra.txt").unlink()
    cfg = src / "config.json"
    cfg.write_bytes(cfg.read_bytes().replace(b"16", b"17"))
    with pytest.raises(weightzip.ChecksumError):
        weightzip.verify(wz, src)
    st = tmp_path / "one.safetensors"
    handmade_safetensors(st)
    wz1 = weightzip.pack(st)
    st.write_bytes(st.read_bytes()[:-1] + b"!")
    with pytest.raises(weightzip.ChecksumError):
        weightzip.verify(wz1, st)


def test_folder_unpack_into_existing_folder_keeps_other_files(tmp_path):
    src = make_hf_folder(tmp_path / "hf")
    wz = weightzip.pack(src, tmp_path / "hf.wz")
    out = tmp_path / "hf_out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's file")
    weightzip.unpack(wz, out)
    got = tree_hashes(out)
    assert got.pop("mine.txt") == sha256_bytes(b"the user's file")
    assert got == tree_hashes(src)


def test_folder_with_symlinked_subfolder(tmp_path):
    src = make_hf_folder(tmp_path / "hf")
    shared = tmp_path / "shared_tok"
    shared.mkdir()
    (shared / "spm.model").write_bytes(b"sentencepiece" * 10)
    (src / "linked").symlink_to(shared, target_is_directory=True)
    wz = weightzip.pack(src, tmp_path / "hf.wz")
    out = weightzip.unpack(wz, tmp_path / "restored")
    assert tree_hashes(out) == tree_hashes(src)  # tree_hashes follows the link: linked/spm.model


def test_pack_folder_into_itself(tmp_path):
    src = tmp_path / "f"
    src.mkdir()
    (src / "a.txt").write_text("hello")
    before = tree_hashes(src)
    with pytest.raises(ValueError, match="inside the input folder"):
        weightzip.pack(src, src / "inside.wz")
    assert tree_hashes(src) == before  # nothing written, not even a temporary file


def test_pack_current_directory(tmp_path, monkeypatch):
    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    monkeypatch.chdir(src)
    wz = weightzip.pack(".")
    out = weightzip.unpack(wz, tmp_path / "restored")
    assert tree_hashes(out) == tree_hashes(src)


# ------------------------------------------------------------------ anything else

@pytest.mark.parametrize("kind", ["random.dat", "notes.txt", "empty.safetensors", "garbage.safetensors",
                                  "short.safetensors", "broken.npy", "notzip.npz"])
def test_arbitrary_files_byte_exact(tmp_path, kind):
    data = {"random.dat": os.urandom(200_003), "notes.txt": ("héllo wörld\n" * 5000).encode(),
            "empty.safetensors": b"", "garbage.safetensors": os.urandom(5000),
            "short.safetensors": struct.pack("<Q", 10**9) + b"{}",
            "broken.npy": b"\x93NUMPY\x01\x00" + b"x" * 100, "notzip.npz": b"PK\x03\x04" + os.urandom(100)}[kind]
    src = tmp_path / kind
    src.write_bytes(data)
    _, out = roundtrip(src, tmp_path)
    assert out.read_bytes() == data


def test_safetensors_with_torch_suffix(tmp_path):
    src = tmp_path / "pytorch_model.bin"  # some tools write safetensors under .bin names
    handmade_safetensors(src)
    wz, out = roundtrip(src, tmp_path)
    assert out.read_bytes() == src.read_bytes() and weightzip.info(wz)["source"] == "safetensors"


def test_random_bin_file_byte_exact(tmp_path):
    src = tmp_path / "vocab.bin"
    src.write_bytes(os.urandom(5000))
    _, out = roundtrip(src, tmp_path)
    assert out.read_bytes() == src.read_bytes()


def test_import_does_not_import_torch(tmp_path):
    src = tmp_path / "m.safetensors"
    handmade_safetensors(src)
    code = f"""
        import sys, numpy as np
        import weightzip
        assert 'torch' not in sys.modules, 'import weightzip imported torch'
        p = {str(src)!r}
        wz = weightzip.pack(p, p + '.wz')
        weightzip.unpack(wz, p + '.out')
        weightzip.load(wz); weightzip.info(wz); weightzip.verify(wz, p)
        weightzip.decompress(weightzip.compress(np.ones(5, np.float32)))
        print('torch' in sys.modules)
    """
    r = run_python(code, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().strip() == "False", "a numpy/safetensors-only workflow imported torch"


def test_safetensors_of_more_than_32_dims_is_kept_byte_exact(tmp_path):
    """numpy cannot hold it: the tensor is stored as bytes, the file still comes back exact."""
    import json as _json
    hdr = _json.dumps({"t": {"dtype": "F32", "shape": [1] * 33, "data_offsets": [0, 4]}}).encode()
    src = tmp_path / "d33.safetensors"
    src.write_bytes(len(hdr).to_bytes(8, "little") + hdr + b"\x00\x00\x80\x3f")
    wz = weightzip.pack(src, tmp_path / "d33.wz")
    assert "t" not in weightzip.open(wz).keys()
    out = weightzip.unpack(wz, tmp_path / "back.safetensors")
    assert out.read_bytes() == src.read_bytes()
