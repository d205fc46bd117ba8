"""Fill .gpu_carry/ (git-ignored) with what the GPU kit needs beside the tracked files, within
the 64 MiB that travel to the GPU machine (bench/gpu/README.md):

    python bench/gpu/prepare_carry.py            # wheels + ../packs/{images,speech,music}_gpu, fitted
    python bench/gpu/prepare_carry.py --check    # only report what would travel now

- .gpu_carry/wheels/: the packages the GPU machine's python3 (3.12, torch 2.11) lacks, as cp312
  manylinux wheels: compressai, soundfile (libsndfile inside) with cffi and pycparser, soxr
  (downloaded with pip download unless present);
- .gpu_carry/packs/{images,speech,music}/{train,val}/: copies of the packs. Every val/ file is
  kept; when the packs do not fit beside the tracked files and the wheels, each pack's train/
  keeps the same share of its bytes, files taken evenly over its sorted list (so every
  photo, speaker and piece of music stays about equally represented). .gpu_carry/carry.json
  records what was kept.
What travels: tracked files + untracked files git does not ignore (+ shared/ in the checkout)
+ .gpu_carry (the `carry` of the run call).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CARRY = REPO / ".gpu_carry"
MiB = 2**20
# name==version, platform tags pip must match exactly (bench/gpu/README.md: why each is needed)
WHEELS = [
    ("compressai==1.2.8", ["manylinux_2_34_x86_64"]),
    ("soundfile==0.14.0", ["manylinux_2_28_x86_64"]),
    ("cffi==2.1.1", ["manylinux_2_17_x86_64"]),
    ("pycparser==3.12", ["any"]),
    ("soxr==1.1.0", ["manylinux_2_28_x86_64"]),
]
PACKS = {"images": "images_gpu", "speech": "speech_gpu", "music": "music_gpu"}


def git_files(*args: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", *args], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / p for p in out.decode().split("\0") if p]


def size(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def tree_size(root: Path) -> int:
    return size(root.rglob("*")) if root.is_dir() else 0


def base_size() -> dict:
    tracked = size(git_files())
    untracked = size(git_files("--others", "--exclude-standard"))
    shared = tree_size(REPO / "shared")
    return {"tracked": tracked, "untracked": untracked, "shared": shared}


def fetch_wheels() -> None:
    d = CARRY / "wheels"
    d.mkdir(parents=True, exist_ok=True)
    for spec, platforms in WHEELS:
        name, version = spec.split("==")
        if list(d.glob(f"{name}-{version}-*.whl")):
            continue
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
               "--python-version", "3.12", "--implementation", "cp", "-d", str(d), spec]
        for p in platforms:
            if p != "any":
                cmd += ["--platform", p]
        print(" ".join(cmd[2:]))
        subprocess.run(cmd, check=True)


def pick(files: list[Path], budget: int) -> list[Path]:
    """Files spread evenly over the sorted list, as many as fit in budget bytes."""
    total = size(files)
    if total <= budget:
        return files
    frac, kept, used = budget / total, [], 0
    for i, p in enumerate(files):
        if int((i + 1) * frac) > int(i * frac) and used + p.stat().st_size <= budget:
            kept.append(p)
            used += p.stat().st_size
    return kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default=str(REPO.parent / "packs" / PACKS["images"]))
    ap.add_argument("--speech", default=str(REPO.parent / "packs" / PACKS["speech"]))
    ap.add_argument("--music", default=str(REPO.parent / "packs" / PACKS["music"]))
    ap.add_argument("--limit-mib", type=float, default=64.0, help="what may travel in all")
    ap.add_argument("--margin-mib", type=float, default=1.0, help="kept free (files that appear before the run)")
    ap.add_argument("--no-wheels", action="store_true", help="do not download missing wheels")
    ap.add_argument("--check", action="store_true", help="change nothing; report the sizes")
    a = ap.parse_args(argv)

    if not a.check and not a.no_wheels:
        fetch_wheels()
    base = base_size()
    wheels = tree_size(CARRY / "wheels")
    room = int((a.limit_mib - a.margin_mib) * MiB) - sum(base.values()) - wheels
    print(f"travels besides .gpu_carry: tracked {base['tracked'] / MiB:.1f} MiB, untracked "
          f"{base['untracked'] / MiB:.1f} MiB, shared/ {base['shared'] / MiB:.1f} MiB; wheels {wheels / MiB:.1f} MiB; "
          f"room for packs {room / MiB:.1f} MiB")
    if a.check:
        packs = tree_size(CARRY / "packs")
        total = sum(base.values()) + tree_size(CARRY)
        print(f".gpu_carry/packs {packs / MiB:.1f} MiB; all that travels {total / MiB:.1f} MiB "
              f"(limit {a.limit_mib:.0f} MiB)")
        return 0 if total <= a.limit_mib * MiB else 1

    srcs = {k: Path(v) for k, v in (("images", a.images), ("speech", a.speech), ("music", a.music))}
    found = {k: p for k, p in srcs.items() if (p / "train").is_dir()}
    for k in srcs.keys() - found.keys():
        print(f"{k}: no pack at {srcs[k]} (train/ missing): not carried")
    val = {k: sorted(f for f in (p / "val").rglob("*") if f.is_file()) for k, p in found.items()}
    train = {k: sorted(f for f in (p / "train").rglob("*") if f.is_file()) for k, p in found.items()}
    val_bytes = sum(size(v) for v in val.values())
    train_bytes = sum(size(v) for v in train.values())
    share = min(1.0, max(0.0, (room - val_bytes) / train_bytes)) if train_bytes else 1.0
    if share <= 0:
        print("no room for the packs", file=sys.stderr)
        return 1
    shutil.rmtree(CARRY / "packs", ignore_errors=True)
    record: dict = {"share_of_train_bytes": round(share, 4), "packs": {}}
    for k, p in found.items():
        kept = pick(train[k], int(share * size(train[k])))
        for split, files in (("train", kept), ("val", val[k])):
            for f in files:
                dst = CARRY / "packs" / k / split / f.relative_to(p / split)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dst)
        record["packs"][k] = {"source": str(p), "train_files": [len(kept), len(train[k])],
                              "train_bytes": [size(kept), size(train[k])], "val_files": len(val[k]),
                              "val_bytes": size(val[k])}
        print(f"{k}: {len(kept)}/{len(train[k])} train files ({size(kept) / MiB:.1f}/{size(train[k]) / MiB:.1f} MiB)"
              f", {len(val[k])} val files ({size(val[k]) / MiB:.1f} MiB) from {p}")
    (CARRY / "carry.json").write_text(json.dumps(record, indent=1) + "\n")
    total = sum(base.values()) + tree_size(CARRY)
    print(f"all that travels: {total / MiB:.1f} MiB of {a.limit_mib:.0f}; .gpu_carry {tree_size(CARRY) / MiB:.1f} MiB")
    return 0 if total <= a.limit_mib * MiB else 1


if __name__ == "__main__":
    sys.exit(main())
