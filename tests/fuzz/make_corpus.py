"""Regenerate the committed seed corpora under tests/fuzz/corpus/<target>/.

    python tests/fuzz/make_corpus.py [TARGET ...]    # default: all targets

Seeds are small valid files made with the real encoders (tiny tensors, 16x16 images, 0.05 s
of audio), so that fuzzing starts where the parsers accept their input. The csrc targets'
seeds come from make_seeds.cpp (needs clang: tests/fuzz/build.py).
"""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
CPP_TARGETS = ("chunk", "rans", "rans_indexed", "cm", "transform")
PY_TARGETS = ("wz", "nc-image", "nc-audio", "pt")


def _weights(shape, dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 0.03).astype(np.float32).astype(dtype)


def wz_seeds(out: Path) -> None:
    import ml_dtypes
    from safetensors.numpy import save_file

    import weightzip

    frames = {
        "f32": _weights((12, 20), np.float32, 1), "bf16": _weights((9, 17), ml_dtypes.bfloat16, 2),
        "f16": _weights((7, 9), np.float16, 3), "f64": _weights((40,), np.float64, 4),
        "f8": _weights((64,), ml_dtypes.float8_e4m3fn, 5), "i64": np.arange(-50, 50, dtype=np.int64) % 7,
        "bool": np.arange(30) % 3 == 0, "scalar": np.float32(1.5), "empty": np.zeros((0, 3), np.float32),
    }
    for name, a in frames.items():
        for level in ("fast", "default", "max"):
            if level == "default" or name in ("f32", "bf16", "i64"):
                (out / f"frame_{name}_{level}.wz").write_bytes(weightzip.compress(np.asarray(a), level=level))
    (out / "frame_bytes.wz").write_bytes(weightzip.compress(b"the quick brown fox " * 20, level="max"))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        st = {"w": _weights((8, 6), np.float32, 6), "b": _weights((5,), np.float16, 7),
              "steps": np.arange(3, dtype=np.int64)}
        save_file(st, str(d / "m.safetensors"), metadata={"format": "np"})
        np.save(d / "a.npy", _weights((4, 5), np.float32, 8))
        np.save(d / "f.npy", np.asfortranarray(_weights((3, 4), np.float32, 9)))
        np.savez(d / "s.npz", x=np.arange(6, dtype=np.int16), y=_weights((2, 3), np.float32, 10))
        np.savez_compressed(d / "c.npz", x=np.arange(6, dtype=np.int16), y=_weights((2, 3), np.float32, 11))
        (d / "raw.bin").write_bytes(bytes(range(256)) * 2)
        (d / "folder" / "sub").mkdir(parents=True)
        shutil.copy(d / "m.safetensors", d / "folder" / "model.safetensors")
        (d / "folder" / "config.json").write_text('{"hidden": 6}')
        (d / "folder" / "sub" / "x.npy").write_bytes((d / "a.npy").read_bytes())
        for src in ("m.safetensors", "a.npy", "f.npy", "s.npz", "c.npz", "raw.bin", "folder"):
            packed = weightzip.pack(d / src, d / f"{src}.wz")
            (out / f"pack_{src.replace('.', '_')}.wz").write_bytes(packed.read_bytes())
        try:
            import torch
            torch.save({"w": torch.randn(4, 3), "meta": {"step": 3, "names": ["a", "b"]},
                        "h": torch.arange(5).to(torch.bfloat16)}, d / "ck.pt")
            (out / "pack_torch.wz").write_bytes(weightzip.pack(d / "ck.pt", d / "ck.wz").read_bytes())
        except Exception as e:  # the torch checkpoint path is optional for this corpus
            print("torch seed skipped:", e)
        weightzip.save({"x": _weights((6, 6), np.float32, 12), "y": np.arange(4, dtype=np.uint8)}, d / "t.wz")
        (out / "save_tensors.wz").write_bytes((d / "t.wz").read_bytes())
    wz_regressions(out)


# Index edits found by fuzz_wz.py that crashed unpack()/decompress() with other errors than
# FormatError; the reader now refuses them (weightzip/container.py). file -> (seed, edit).
REGRESSIONS = {
    "source_kind_dict": ("pack_raw_bin.wz", lambda ix: (ix.update(source={"kind": {}}),
                                                        ix["files"][0].update(path="."))),
    "source_name_nul": ("pack_raw_bin.wz", lambda ix: ix["source"].update(name="a\x00b")),
    "path_nul": ("pack_folder.wz", lambda ix: ix["files"][0].update(path="nul\x00byte")),
    "path_too_long": ("pack_folder.wz", lambda ix: ix["files"][0].update(path="x" * 300)),
    "path_surrogate": ("pack_folder.wz", lambda ix: ix["files"][0].update(path="\ud800")),
    "npz_name_int": ("pack_c_npz.wz", lambda ix: ix["source"]["arrays"][1].update(name=1)),
    "npz_name_nul": ("pack_c_npz.wz", lambda ix: ix["source"]["arrays"][0].update(name="nul\x00byte")),
    "array_of_blob": ("frame_empty_default.wz", lambda ix: ix["entries"][0].update(kind="blob")),
    "empty_shape_overflow": ("frame_empty_default.wz", lambda ix: ix["entries"][0].update(shape=[0, 1 << 63])),
}


def wz_regressions(out: Path) -> None:
    sys.path.insert(0, str(HERE))
    import wzfmt
    for name, (seed, edit) in REGRESSIONS.items():
        w = wzfmt.parse((out / seed).read_bytes())
        wzfmt.entries_form(w)  # the edits were written for list entries (versions 1-3)
        edit(w.index)
        (out / f"regress_{name}.wz").write_bytes(wzfmt.build(w))


def _image(h: int, w: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 3.0 + seed) * 60 + yy * 5 + 90)[..., None] + rng.normal(0, 8, (h, w, max(c, 1)))
    img = np.clip(base, 0, 255).astype(np.uint8)
    if c == 4:
        img[..., 3] = 255  # opaque: the codecs code RGB (a translucent alpha would warn)
    return img[..., 0] if c == 1 else img


def nc_image_seeds(out: Path) -> None:
    import neurocodec
    for codec in ("hyperprior", "shallow"):
        for (h, w, c), q in [((16, 16, 3), 0), ((16, 16, 3), 5), ((8, 24, 1), 2), ((17, 5, 4), 3), ((1, 1, 3), 1)]:
            img = _image(h, w, c, h * w + q)
            data = neurocodec.encode(img, codec=codec, quality=q)
            (out / f"{codec}_{h}x{w}x{c}_q{q}.nc").write_bytes(data)


def nc_audio_seeds(out: Path) -> None:
    import neurocodec
    t = np.arange(4800) / 48000
    for sr, secs, ch, kbps in [(24000, 0.05, 1, 6.0), (24000, 0.1, 1, 1.5), (16000, 0.05, 1, 9.0),
                               (48000, 0.05, 2, 12.0), (8000, 0.02, 1, 3.0)]:
        n = int(sr * secs)
        x = (0.3 * np.sin(2 * np.pi * 440 * t[:n] * 48000 / sr)).astype(np.float32)
        audio = x if ch == 1 else np.stack([x, -x * 0.5], 1)
        data = neurocodec.encode(audio, sr=sr, kbps=kbps)
        (out / f"audio_{sr}_{n}x{ch}_{kbps:g}k.nc").write_bytes(data)


def pt_seeds(out: Path) -> None:
    import torch
    g = torch.Generator().manual_seed(0)
    objs = {
        "state_dict": {"w": torch.randn(3, 4, generator=g), "b": torch.zeros(4, dtype=torch.float16)},
        "nested": {"model": {"l.w": torch.randn(2, 2, generator=g).to(torch.bfloat16)}, "step": 7,
                   "opt": {"lr": 0.1, "betas": (0.9, 0.99)}, "names": ["a", "b"], "flag": None},
        "shared": (lambda t: {"a": t, "view": t[1:], "ints": torch.arange(6, dtype=torch.int64)})(torch.randn(4)),
        "list": [torch.ones(2, dtype=torch.bool), torch.tensor(3.5, dtype=torch.float64), b"bytes", 1 << 70],
    }
    for name, obj in objs.items():
        buf = io.BytesIO()
        torch.save(obj, buf)
        (out / f"{name}.pt").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    torch.save(objs["state_dict"], buf, _use_new_zipfile_serialization=False)
    (out / "legacy.pt").write_bytes(buf.getvalue())


def repro(out: Path) -> None:
    """Reproducers of findings in code outside container.py/csrc (tests/fuzz/repro/)."""
    import torch
    sys.path.insert(0, str(HERE))
    import ptmut
    buf = io.BytesIO()
    torch.save(torch.zeros(0), buf)  # an empty storage: its spans take no bytes, so none overlap
    members = ptmut._members(buf.getvalue())
    pkl = next(m for m in members if m[0].endswith("/data.pkl"))
    (out / "pt_duplicate_span_names.pt").write_bytes(ptmut._zip([pkl, pkl, *members]))
    import wzfmt

    import weightzip
    w = wzfmt.parse(weightzip.compress(np.float32([1.5])))
    w.index["entries"][0]["shape"] = [1] * 33  # numpy arrays have at most 32 dims
    (out / "wz_tensor_of_33_dims.wz").write_bytes(wzfmt.build(w))


def cpp_seeds(out_root: Path, targets) -> None:
    sys.path.insert(0, str(HERE))
    import build
    exe = build.build()["make_seeds"]
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([str(exe), d], check=True)
        for t in targets:
            shutil.rmtree(out_root / t, ignore_errors=True)
            shutil.copytree(Path(d) / t, out_root / t)


def main(argv: list[str]) -> None:
    targets = argv or [*CPP_TARGETS, *PY_TARGETS]
    makers = {"wz": wz_seeds, "nc-image": nc_image_seeds, "nc-audio": nc_audio_seeds, "pt": pt_seeds}
    cpp = [t for t in targets if t in CPP_TARGETS]
    if cpp:
        cpp_seeds(CORPUS, cpp)
    if not argv:
        (HERE / "repro").mkdir(exist_ok=True)
        repro(HERE / "repro")
    for t in targets:
        if t in makers:
            keep = {p.name: p.read_bytes() for p in (CORPUS / t).glob("v3_*")}  # older versions' seeds
            shutil.rmtree(CORPUS / t, ignore_errors=True)
            (CORPUS / t).mkdir(parents=True)
            makers[t](CORPUS / t)
            for name, data in keep.items():
                (CORPUS / t / name).write_bytes(data)
    for t in targets:
        files = list((CORPUS / t).iterdir())
        print(f"{t}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
