"""bench/data/prepare.py on 3 photos: 256x256 crops, byte-identical reruns, a validation split
that holds out whole photos, a manifest that matches the files, and --max-bytes subsets.

Needs the image snapshots under ../.mirror (see ../shared/data/SOURCES.md); skipped without
them (as on CI). About a second."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "data" / "prepare.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_data_prepare", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up
    spec.loader.exec_module(mod)
    return mod


prepare = _load()
Image = pytest.importorskip("PIL.Image")
_missing = [s.repo for s in prepare.IMAGE_SOURCES
            if not (prepare.DEFAULT_MIRROR / s.repo.replace("/", "+") / "repo").is_dir()]
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"no snapshots of {', '.join(_missing)} in ../.mirror")

ARGS = ["images", "--sample", "3", "--val-fraction", "0.34"]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def packs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("packs")
    for name in ("a", "b"):
        prepare.main([*ARGS, "--out", str(base / name)])
    return base / "a", base / "b"


def test_crops_and_manifest(packs) -> None:
    out = packs[0]
    files = _tree(out)
    man = json.loads(files.pop("manifest.json"))
    assert sorted(files) == sorted(e["file"] for e in man["files"])
    assert len(files) == 3 * 2  # 3 photos (all big enough), 2 crops each
    for e in man["files"]:
        data = files[e["file"]]
        assert hashlib.sha256(data).hexdigest() == e["sha256"] and len(data) == e["bytes"]
        assert e["file"].endswith(".jpg") and e["commit"] and e["path"] and e["repo"]
        with Image.open(io.BytesIO(data)) as im:
            assert im.size == (256, 256) and im.mode == "RGB"
        x0, y0, x1, y1 = e["box"]
        assert x1 - x0 == y1 - y0 == 256 and 0 <= x0 and 0 <= y0
        assert x1 <= e["resized"][0] and y1 <= e["resized"][1] and min(e["resized"]) >= 256
        assert 0 < e["scale"] <= 0.87  # always downscaled
    assert man["counts"]["train"] + man["counts"]["val"] == 6
    assert man["data_bytes"] == sum(len(b) for b in files.values())


def test_val_split_holds_out_whole_photos(packs) -> None:
    man = json.loads((packs[0] / "manifest.json").read_text())
    split_of: dict[str, set[str]] = {}
    for e in man["files"]:
        assert e["file"].startswith(e["split"] + "/")
        split_of.setdefault(e["path"], set()).add(e["split"])
    assert all(len(s) == 1 for s in split_of.values())  # no photo on both sides
    assert sorted(s.pop() for s in split_of.values()) == ["train", "train", "val"]  # round(0.34 x 3) = 1


def test_deterministic(packs) -> None:
    assert _tree(packs[0]) == _tree(packs[1])


def test_max_bytes_subset(packs, tmp_path) -> None:
    full = packs[0]
    man = json.loads((full / "manifest.json").read_text())
    # room for the first crop of each photo and a manifest, not for any second crop
    budget = sum(e["bytes"] for e in man["files"] if e["crop"] == 0) + (full / "manifest.json").stat().st_size
    prepare.main([*ARGS, "--out", str(tmp_path / "direct"), "--max-bytes", str(budget)])
    prepare.main([*ARGS, "--out", str(tmp_path / "sub"), "--max-bytes", str(budget), "--subset-of", str(full)])
    direct = _tree(tmp_path / "direct")
    assert direct == _tree(tmp_path / "sub")
    assert sum(len(b) for b in direct.values()) <= budget
    sub = json.loads(direct["manifest.json"])
    assert sorted(e["path"] for e in sub["files"]) == sorted({e["path"] for e in man["files"]})
    assert all(e["crop"] == 0 for e in sub["files"])  # one crop of every photo comes first


def test_trainer_lists_the_pack(packs) -> None:
    from neurocodec.runtime.image.io import list_images

    assert len(list_images(packs[0] / "train")) == 4


def test_refuses_output_inside_the_repository() -> None:
    with pytest.raises(SystemExit):
        prepare.main([*ARGS, "--out", str(REPO / "bench" / "data" / "pack")])
    assert not (REPO / "bench" / "data" / "pack").exists()
