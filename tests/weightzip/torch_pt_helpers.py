"""Helpers of the torch checkpoint tests (test_torch_pt*.py): pack without warnings, read a
.wz's entries, and make genuine torch checkpoints (CUDA-tagged ones without a GPU)."""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch
from common import SHARED_DATA

import weightzip

RESNET = SHARED_DATA / "weights" / "resnet56_cifar100" / "ResNet56_CIF100.pt"


def pack_quietly(src: Path, dst: Path, **kw) -> Path:
    """pack() with every warning turned into an error: the .pt path must not spill any."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return weightzip.pack(src, dst, **kw)


def entries(wz: Path) -> list[dict]:
    return weightzip.info(wz)["entries"]


def tensors_of(wz: Path) -> dict[str, dict]:
    return {e["name"]: e for e in entries(wz) if e["kind"] == "tensor"}


def rewrite_archive(src: Path, dst: Path, edit=lambda name, data: data) -> None:
    """Re-emit a torch zip with torch's own writer (64-byte alignment, data descriptors),
    passing each record through edit(name, bytes) first: a genuine torch file whose
    contents we chose, made without a GPU and without unpickling anything."""
    with zipfile.ZipFile(src) as z:
        records = [(i.filename.split("/", 1)[1], z.read(i)) for i in z.infolist()]
    w = torch._C.PyTorchFileWriter(str(dst))
    for name, data in records:
        if name not in ("version", ".data/serialization_id"):  # the writer adds these itself
            data = edit(name, data)
            w.write_record(name, data, len(data))
    w.write_end_of_file()
    del w


def to_cuda_tags(name: str, data: bytes) -> bytes:
    if name != "data.pkl":
        return data
    cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"  # BINUNICODE 'cpu'
    assert cpu in data
    return data.replace(cpu, cuda)


def optimizer_checkpoint(path: Path, cuda: bool = False) -> dict:
    """{'model', 'optimizer' (Adam state after 3 steps), 'epoch'} of a small MLP."""
    g = torch.Generator().manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        for p in mlp.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        mlp(torch.randn(16, 32, generator=g)).square().mean().backward()
        opt.step()
    obj = {"model": mlp.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}
    if cuda:
        plain = path.with_name("cpu_" + path.name)
        torch.save(obj, plain)
        rewrite_archive(plain, path, to_cuda_tags)
    else:
        torch.save(obj, path)
    return obj
