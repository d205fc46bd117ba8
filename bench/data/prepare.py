"""Build training packs (images, speech, music) from public repository snapshots.

    python bench/data/prepare.py images --out ../packs/images
    python bench/data/prepare.py images --out ../packs/images_gpu --max-bytes 24M --subset-of ../packs/images
    python bench/data/prepare.py speech --out ../packs/speech
    python bench/data/prepare.py music  --out ../packs/music

The sources are the bare git snapshots listed in ../shared/data/SOURCES.md, read from
``--mirror`` (default ../.mirror beside the checkout: OWNER+NAME/repo) at fixed commits with
``git cat-file``. Blobs the snapshot lacks (files of ~4 MiB and more) are skipped and listed in
the manifest. Nothing is written into the repository, and Kodak is never read.

A pack is ``OUT/train/``, ``OUT/val/`` and ``OUT/manifest.json`` (source repository, commit,
path and crop box / time span of every file, counts, bytes). The validation split holds out
whole source units (a photo, a speaker, a piece of music): the units are ordered by a seeded
hash and the first round(val_fraction x units) go to val/. Everything is deterministic: the
same snapshots, options and library versions give byte-identical packs.

``--max-bytes`` keeps a deterministic subset, spread over the units: every unit's first item
(crop 0 of every photo, one file of every speaker, one clip of every piece) in hash order,
then every unit's second, and so on, up to the first item that no longer fits; the budget
covers the data files and manifest.json. ``--subset-of FULL_PACK`` takes that subset from an
already built full pack (same options) instead of decoding the sources again; the result is
identical. See bench/data/README.md for the rules (downscaling, formats, clip lengths) and
the licenses.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MIRROR = REPO_ROOT.parent / ".mirror"
DEFAULT_PACKS = REPO_ROOT.parent / "packs"
MANIFEST = "manifest.json"
VERSION = 1  # bump when the output of a pack changes for the same options

# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    key: str  # short prefix of the output file names
    repo: str  # owner/name on GitHub
    commit: str
    paths: str  # what is taken, in words (for the manifest)
    license: str
    select: Callable[[str], bool]


# the selectors are module-level functions (not lambdas) so that --jobs can pickle the sources
def _inet(p: str) -> bool:
    return "/" not in p and p.endswith(".JPEG")


def _imagen(p: str) -> bool:
    return p.startswith("imagen/") and p.lower().endswith(".jpg")


def _bsds(p: str) -> bool:
    d = "BSR/BSDS500/data/images/"
    return p.startswith((d + "train/", d + "test/")) and p.lower().endswith(".jpg")  # val/ = CBSD68: skipped


def _speechocean(p: str) -> bool:
    return p.startswith("WAVE/SPEAKER") and p.upper().endswith(".WAV")


def _tuxemon(p: str) -> bool:
    return p.startswith(TUX_MUSIC) and p.lower().endswith((".ogg", ".mp3"))


def _librosa(p: str) -> bool:
    return p in LIBROSA_MUSIC


IMAGE_SOURCES = (
    Source("inet", "EliSchwartz/imagenet-sample-images", "bc69043e2862758a1906c6a24a792bb28c6bb2ff",
           "*.JPEG at the root (one ImageNet image per class)",
           "ImageNet images: research / non-commercial use only (ImageNet terms of access); "
           "copyright stays with the photographers",
           _inet),
    Source("imagen", "ajschumacher/imagen", "2e8718956e3bb046db9a8e488c2254fd9846b6c5",
           "imagen/*.jpg (5 ImageNet images per detection class)",
           "ImageNet images: research / non-commercial use only; the repository 'does not make or alter any "
           "copyright claims'",
           _imagen),
    Source("bsds", "Sisso16/ssn_pytorch", "c4f9ac8c43397cbacbf2e2ba1505efafa769435d",
           "BSR/BSDS500/data/images/{train,test}/*.jpg (val/ skipped: it is CBSD68, already in shared/data)",
           "Berkeley Segmentation Dataset BSDS500: research and educational use",
           _bsds),
)

SPEECH_SOURCES = (
    Source("so762", "jimbozhang/speechocean762", "613968e3b0b789fc33936fb5eba1973176ba7d11",
           "WAVE/SPEAKERxxxx/*.WAV (16 kHz mono PCM16; Mandarin-L1 English, about 40 % children)",
           "speechocean762: 'available for free download for both commercial and non-commercial purposes' "
           "(README; distributed by OpenSLR as SLR101)",
           _speechocean),
)

# librosa/data: only the music pieces under CC-BY or public domain; the token must appear in the .txt
LIBROSA_MUSIC = {
    "audio/Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq.ogg": "Public Domain",
    "audio/Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg": "CC-BY",
    "audio/Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.hq.ogg": "CC-BY",
    "audio/Kevin_MacLeod_-_Vibe_Ace.hq.ogg": "CC-BY",
    "audio/sorohanro_-_solo-trumpet-06.hq.ogg": "CC-BY",
}
TUX_MUSIC = "mods/tuxemon/music/"
# Tuxemon music that ATTRIBUTIONS.md (at the commit used) does not list: left out unless --include-undocumented
TUX_UNDOCUMENTED = re.compile(r"^mods/tuxemon/music/(JRPG-OSTR2/|Enter_the_Emperor\.ogg$)")

MUSIC_SOURCES = (
    Source("tux", "Tuxemon/Tuxemon", "ca9b3362e158f31619a508cafc87b5be131a05c0",
           "mods/tuxemon/music/**.{ogg,mp3} (44.1/48 kHz; chiptune and JRPG orchestral)",
           "CC-BY 3.0 / CC-BY-SA 3.0 / CC-BY-SA 4.0 per piece: see ATTRIBUTIONS.md at that commit (Eric Skiff, "
           "Yubatake's JRPG Collection 1-2, Spring, FoxSynergy, bart, Tom Peter, ...). JRPG-OSTR2/* and "
           "Enter_the_Emperor.ogg are not listed there and are left out unless --include-undocumented",
           _tuxemon),
    Source("librosa", "librosa/data", "450cdd8a002c98e7bdbfebb309fc1ed024001f77",
           "audio/*.hq.ogg: the 5 music pieces under CC-BY or public domain (see each .txt)",
           "Brahms Hungarian Dance 5 (US Army Strings, Musopen): public domain; Karissa Hobbs 'Let's Go Fishin'', "
           "Kevin MacLeod 'Dance of the Sugar Plum Fairy' and 'Vibe Ace' (Free Music Archive), Mihai Sorohan "
           "'solo-trumpet-06' (Freesound): CC-BY 3.0. The NC-licensed pieces, speech, bird, whale and dog "
           "recordings are not taken",
           _librosa),
)

SOURCES = {"images": IMAGE_SOURCES, "speech": SPEECH_SOURCES, "music": MUSIC_SOURCES}


class Snapshot:
    """A bare git directory read at one commit: the file list and blob contents."""

    def __init__(self, mirror: Path, src: Source):
        self.src = src
        self.git_dir = mirror / src.repo.replace("/", "+") / "repo"
        if not self.git_dir.is_dir():
            raise FileNotFoundError(f"no snapshot of {src.repo} at {self.git_dir} (fetch github:{src.repo})")
        self._cat: subprocess.Popen | None = None

    def git(self, *args: str) -> bytes:
        return subprocess.run(["git", "--git-dir", str(self.git_dir), *args], check=True,
                              capture_output=True).stdout

    def files(self) -> list[tuple[str, str]]:
        """-> sorted [(path, blob sha1)] of the regular files at the commit that the source selects."""
        out = []
        for line in self.git("ls-tree", "-r", "-z", self.src.commit).split(b"\0"):
            if not line:
                continue
            meta, path = line.split(b"\t", 1)
            mode, kind, sha = meta.decode().split()
            p = path.decode("utf-8", "surrogateescape")
            if kind == "blob" and mode in ("100644", "100755") and self.src.select(p):
                out.append((p, sha))
        return sorted(out)

    def read(self, sha: str) -> bytes | None:
        """The blob's bytes, or None when the snapshot lacks it."""
        if self._cat is None:
            self._cat = subprocess.Popen(["git", "--git-dir", str(self.git_dir), "cat-file", "--batch"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._cat.stdin is not None and self._cat.stdout is not None
        self._cat.stdin.write(sha.encode() + b"\n")
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().split()
        if len(header) < 3 or header[1] != b"blob":
            return None  # "<sha> missing"
        n = int(header[2])
        data = self._cat.stdout.read(n)
        self._cat.stdout.read(1)  # the newline after the contents
        return data

    def close(self) -> None:
        if self._cat is not None:
            assert self._cat.stdin is not None
            self._cat.stdin.close()
            self._cat.wait()
            self._cat = None


# ----------------------------------------------------------------------------- units and items


@dataclass
class Unit:
    """One source file (photo, utterance, piece of music)."""
    src: Source
    path: str
    blob: str
    group: str  # the unit of the train/val split: photo, speaker, piece
    meta: dict = field(default_factory=dict)


def digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def unit_rng(seed: int, unit: Unit) -> np.random.Generator:
    return np.random.default_rng(int(digest(seed, unit.src.repo, unit.path)[:16], 16))


def slug(text: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_.-]", "_", text)).strip("_.")


def split_groups(groups: list[str], fraction: float, seed: int) -> set[str]:
    """The held-out groups: the first round(fraction x n) in seeded hash order (>= 1 when
    fraction > 0 and there are at least 2 groups; never all of them)."""
    uniq = sorted(set(groups), key=lambda g: digest(seed, "split", g))
    if fraction <= 0 or len(uniq) < 2:
        return set()
    n = min(max(1, round(fraction * len(uniq))), len(uniq) - 1)
    return set(uniq[:n])


# ----------------------------------------------------------------------------- images

CROP = 256
SCALE = 0.75  # the usual downscale: JPEG blocks shrink below the 8 px grid and are smoothed by Lanczos
MIN_SCALE_DOWN = 0.86  # when 0.75 would leave the short side under CROP, scale by CROP/short up to this
MAX_SHORT = 512  # large photos are downscaled further, to this short side (Kodak's)
# jpeg q95 4:4:4 by default: lossy WebP is always 4:2:0, and most of the ImageNet sources are 4:4:4 JPEGs (README)
FORMATS = {"jpeg": ".jpg", "webp": ".webp", "webp-lossless": ".webp", "png": ".png"}


def image_scale(w: int, h: int) -> float | None:
    """The downscale factor of a w x h photo, or None (skip: it cannot give a CROP x CROP
    crop without being downscaled by less than 1/MIN_SCALE_DOWN)."""
    short = min(w, h)
    s = min(SCALE, MAX_SHORT / short)
    if short * s >= CROP:
        return s
    s = CROP / short
    return s if s <= MIN_SCALE_DOWN else None


def crop_boxes(w: int, h: int, k: int, rng: np.random.Generator, tries: int = 16) -> list[tuple[int, int]]:
    """k top-left corners of CROP x CROP boxes in a w x h image: each the least overlapping
    with the ones before among `tries` uniform draws (so that the crops of small images
    differ as much as they can)."""
    out: list[tuple[int, int]] = []
    for _ in range(k):
        xs = rng.integers(0, w - CROP + 1, tries)
        ys = rng.integers(0, h - CROP + 1, tries)
        if not out:
            out.append((int(xs[0]), int(ys[0])))
            continue
        ov = [max(max(0, CROP - abs(int(x) - a)) * max(0, CROP - abs(int(y) - b)) for a, b in out)
              for x, y in zip(xs, ys)]
        i = int(np.argmin(ov))
        out.append((int(xs[i]), int(ys[i])))
    return out


def encode_image(im, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "webp":
        im.save(buf, "WEBP", quality=95, method=6)
    elif fmt == "jpeg":
        im.save(buf, "JPEG", quality=95, subsampling=0, optimize=True)  # 4:4:4: no chroma subsampling
    elif fmt == "webp-lossless":
        im.save(buf, "WEBP", lossless=True, quality=100, method=4)
    elif fmt == "png":
        im.save(buf, "PNG", optimize=True)
    else:
        raise ValueError(fmt)
    return buf.getvalue()


def image_items(unit: Unit, data: bytes, opts: dict) -> tuple[list[tuple[str, bytes, dict]], str | None]:
    """-> ([(file name, bytes, meta)], skip reason or None)."""
    from PIL import Image, ImageOps

    try:
        im = Image.open(io.BytesIO(data))
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        im = im.convert("RGB")
    except Exception as e:  # noqa: BLE001  any decoding failure skips the photo
        return [], f"not decodable ({type(e).__name__})"
    w, h = im.size
    s = image_scale(w, h)
    if s is None:
        return [], f"too small ({w}x{h}: short side under {math.ceil(CROP / MIN_SCALE_DOWN)})"
    rw, rh = max(CROP, round(w * s)), max(CROP, round(h * s))
    im = im.resize((rw, rh), Image.LANCZOS)
    stem = Path(unit.path).with_suffix("").as_posix()
    stem = slug(stem.replace("BSR/BSDS500/data/images/", "").replace("imagen/", ""))
    out = []
    for k, (x, y) in enumerate(crop_boxes(rw, rh, opts["crops"], unit_rng(opts["seed"], unit))):
        data_k = encode_image(im.crop((x, y, x + CROP, y + CROP)), opts["format"])
        name = f"{unit.src.key}_{stem}_{k}{FORMATS[opts['format']]}"
        meta = {"crop": k, "mode": mode, "size": [w, h], "scale": round(rw / w, 6), "resized": [rw, rh],
                "box": [x, y, x + CROP, y + CROP],
                "box_src": [round(x * w / rw, 2), round(y * h / rh, 2), round((x + CROP) * w / rw, 2),
                            round((y + CROP) * h / rh, 2)]}
        out.append((name, data_k, meta))
    return out, None


def image_units(snaps: list[Snapshot]) -> list[Unit]:
    return [Unit(s.src, p, sha, group=f"{s.src.repo}:{p}") for s in snaps for p, sha in s.files()]


# ----------------------------------------------------------------------------- audio

CLIP_S = 10.0
MIN_CLIP_S = 0.5
SILENCE_DBFS = -60.0


def clips(n: int, sr: int, max_s: float) -> list[tuple[int, int]]:
    """[start, end) spans cutting n samples into the fewest equal pieces of <= max_s seconds."""
    m = max(1, math.ceil(n / (max_s * sr)))
    edges = [round(i * n / m) for i in range(m + 1)]
    return list(zip(edges[:-1], edges[1:]))


def flac_bytes(x: np.ndarray, sr: int) -> bytes:
    """x [T, C] (int16 or float in [-1, 1]) -> FLAC PCM_16 bytes (best compression)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, sr, format="FLAC", subtype="PCM_16", compression_level=1.0)
    return buf.getvalue()


def rms_dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64) / (32768.0 if x.dtype == np.int16 else 1.0)
    ms = float(np.mean(x * x)) if x.size else 0.0
    return 10 * math.log10(ms) if ms > 0 else -math.inf


def audio_items(unit: Unit, data: bytes, opts: dict) -> tuple[list[tuple[str, bytes, dict]], str | None]:
    import soundfile as sf

    speech = opts["kind"] == "speech"
    try:
        x, sr = sf.read(io.BytesIO(data), dtype="int16" if speech else "float32", always_2d=True)  # [T, C]
    except Exception as e:  # noqa: BLE001
        return [], f"not decodable ({type(e).__name__}: {e})"
    src_sr, src_ch, src_n = sr, x.shape[1], x.shape[0]
    gain = 1.0
    if not speech:
        if opts["mono"] and x.shape[1] > 1:
            x = x.mean(1, keepdims=True)
        if opts["rate"] and sr != opts["rate"]:
            import soxr

            x = np.asarray(soxr.resample(x, sr, opts["rate"], quality="VHQ"), np.float32)
            sr = opts["rate"]
        peak = float(np.abs(x).max()) if x.size else 0.0
        if peak > 32767 / 32768:  # decoded Vorbis/MP3 (and resampling) can overshoot: scale, don't clip
            gain = (32767 / 32768) / peak
            x = x * gain
    stem = slug(Path(unit.path).with_suffix("").as_posix()
                .replace("WAVE/", "").replace(TUX_MUSIC, "").replace("audio/", "").replace(".hq", ""))
    out, dropped = [], 0
    spans = clips(len(x), sr, opts["clip_s"])
    for j, (a, b) in enumerate(spans):
        seg = x[a:b]
        if (b - a) < MIN_CLIP_S * sr or rms_dbfs(seg) < SILENCE_DBFS:
            dropped += 1
            continue
        name = f"{unit.src.key}_{stem}" + (f"_{j:02d}" if len(spans) > 1 else "") + ".flac"
        meta = {"clip": j, "span_s": [round(a / sr, 4), round(b / sr, 4)], "rate": sr, "channels": int(x.shape[1]),
                "seconds": round((b - a) / sr, 4), "source_rate": src_sr, "source_channels": int(src_ch),
                "source_seconds": round(src_n / src_sr, 4), **unit.meta}
        if gain != 1.0:
            meta["gain"] = round(gain, 6)
        out.append((name, flac_bytes(seg, sr), meta))
    if not out:
        return [], "silent or shorter than 0.5 s"
    return out, None


def _spk_table(snap: Snapshot, name: str) -> dict[str, str]:
    table = {}
    for split in ("train", "test"):
        try:
            text = snap.git("show", f"{snap.src.commit}:{split}/{name}").decode()
        except subprocess.CalledProcessError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2:
                table[parts[0]] = parts[1]
    return table


def speech_units(snaps: list[Snapshot]) -> list[Unit]:
    (snap,) = snaps
    age, gender = _spk_table(snap, "spk2age"), _spk_table(snap, "spk2gender")
    units = []
    for p, sha in snap.files():
        spk = p.split("/")[1]  # SPEAKER0001
        sid = spk.replace("SPEAKER", "")
        meta = {"speaker": spk}
        if sid in age:
            meta["age"] = int(age[sid])
        if sid in gender:
            meta["gender"] = gender[sid]
        units.append(Unit(snap.src, p, sha, group=f"{snap.src.repo}:{spk}", meta=meta))
    return units


def piece_of(path: str) -> str:
    """The piece a music file belongs to: loops, slowed, reversed, intro/main and B-mix
    versions of one piece go to the same side of the split."""
    stem = Path(path).name.split(".")[0].lower()
    prev = None
    while prev != stem:
        prev = stem
        stem = re.sub(r"(_loop|_slow|_reverse|-intro|-main| - b mix)$", "", stem)
    return stem


def music_units(snaps: list[Snapshot], include_undocumented: bool) -> tuple[list[Unit], list[dict]]:
    units, skipped = [], []
    for snap in snaps:
        for p, sha in snap.files():
            meta: dict = {}
            if snap.src.repo == "Tuxemon/Tuxemon":
                if TUX_UNDOCUMENTED.match(p):
                    if not include_undocumented:
                        skipped.append({"repo": snap.src.repo, "path": p, "reason": "license not in ATTRIBUTIONS.md"})
                        continue
                    meta["license"] = "undocumented (not in ATTRIBUTIONS.md)"
                else:
                    meta["license"] = "CC-BY / CC-BY-SA (ATTRIBUTIONS.md)"
            else:
                txt = p.replace(".hq.ogg", ".txt")
                try:
                    note = snap.git("show", f"{snap.src.commit}:{txt}").decode("utf-8", "replace")
                except subprocess.CalledProcessError:
                    note = ""
                token = LIBROSA_MUSIC[p]
                if token.lower() not in note.lower() or re.search(r"\bNC\b|noncommercial", note, re.I):
                    skipped.append({"repo": snap.src.repo, "path": p, "reason": f"{txt} does not say {token}"})
                    continue
                meta["license"] = token
                meta["attribution"] = note.strip().splitlines()[0] if note.strip() else ""
            units.append(Unit(snap.src, p, sha, group=f"{snap.src.key}:{piece_of(p)}", meta=meta))
    return units, skipped


# ----------------------------------------------------------------------------- the pack


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kmgKMG]?)(i?[bB])?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 24M, 500K, 1.5G)")
    return int(float(m.group(1)) * 1024 ** " KMG".index((m.group(2) or " ").upper()))


def _work(args: tuple) -> tuple[list[tuple[str, bytes, dict]], str | None]:
    kind, unit, data, opts = args
    return (image_items if kind == "images" else audio_items)(unit, data, opts)


def _blobs(units: list[Unit], snaps: dict[str, Snapshot], opts: dict, skipped: list[dict]) -> Iterator[tuple]:
    for u in units:
        data = snaps[u.src.repo].read(u.blob)
        if data is None:
            skipped.append({"repo": u.src.repo, "path": u.path, "reason": "blob missing from the snapshot"})
            continue
        yield opts["kind"], u, data, opts


def check_out(out: Path) -> None:
    out = out.resolve()
    if out == REPO_ROOT or REPO_ROOT in out.parents:
        raise SystemExit(f"--out {out} is inside the repository; packs go outside it (default {DEFAULT_PACKS})")
    if "kodak" in out.as_posix().lower():
        raise SystemExit("refusing an output path that names Kodak")


def order_key(entry: dict, seed: int) -> tuple:
    """The --max-bytes order: rank within the unit group first, then the group's hash."""
    return (entry["rank"], digest(seed, "order", entry["group"]), entry["file"])


def select(entries: list[dict], budget: int, seed: int, header_bytes: Callable[[list[dict]], int]) -> list[dict]:
    """The longest prefix of the --max-bytes order whose files plus manifest fit in budget."""
    ordered = sorted(entries, key=lambda e: order_key(e, seed))
    total, keep = header_bytes([]) + 256, []  # the manifest without files, and room for its counts to grow
    for e in ordered:
        cost = e["bytes"] + len(json.dumps(e)) + 4  # the file and its manifest line
        if total + cost > budget:
            break
        keep.append(e)
        total += cost
    while keep and sum(e["bytes"] for e in keep) + header_bytes(keep) > budget:
        keep.pop()
    return keep


def manifest_text(kind: str, opts: dict, sources: tuple, entries: list[dict], skipped: list[dict],
                  budget: int | None, n_units: dict) -> str:
    entries = sorted(entries, key=lambda e: e["file"])
    data_bytes = sum(e["bytes"] for e in entries)
    counts: dict = {s: sum(1 for e in entries if e["split"] == s) for s in ("train", "val")}
    counts["bytes"] = {s: sum(e["bytes"] for e in entries if e["split"] == s) for s in ("train", "val")}
    counts["groups"] = {s: len({e["group"] for e in entries if e["split"] == s}) for s in ("train", "val")}
    counts["units"] = {s: len({(e["repo"], e["path"]) for e in entries if e["split"] == s}) for s in ("train", "val")}
    if kind != "images":
        counts["seconds"] = {s: round(sum(e["seconds"] for e in entries if e["split"] == s), 1)
                             for s in ("train", "val")}
    counts["source_units"] = n_units
    reasons: dict[str, int] = {}
    for s in skipped:
        r = re.sub(r" \(.*", "", s["reason"])
        reasons[r] = reasons.get(r, 0) + 1
    counts["skipped"] = reasons
    doc = {
        "pack": kind, "version": VERSION, "generator": "bench/data/prepare.py",
        "options": {k: v for k, v in opts.items() if k != "kind"}, "max_bytes": budget,
        "sources": [{"repo": s.repo, "commit": s.commit, "paths": s.paths, "license": s.license} for s in sources],
        "counts": counts, "data_bytes": data_bytes,
        "skipped": sorted(skipped, key=lambda s: (s["repo"], s["path"])),
        "files": entries,
    }
    # one file entry per line: readable, and diffs stay small
    head = json.dumps({k: v for k, v in doc.items() if k != "files"}, indent=1)
    lines = ",\n".join("  " + json.dumps(e, sort_keys=False) for e in entries)
    return head[:-2] + ',\n "files": [\n' + lines + "\n ]\n}\n"


def build(kind: str, out: Path, opts: dict, mirror: Path, budget: int | None, val_fraction: float,
          subset_of: Path | None, sample: int, jobs: int, include_undocumented: bool, overwrite: bool) -> dict:
    check_out(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SystemExit(f"{out} exists and is not empty (--overwrite replaces it)")
        if not (out / MANIFEST).exists():
            raise SystemExit(f"{out} is not a pack (no {MANIFEST}); not replacing it")
    sources = SOURCES[kind]
    tmp = out.with_name(out.name + f".part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train").mkdir(parents=True)
    (tmp / "val").mkdir()
    t0 = time.time()
    skipped: list[dict] = []
    entries: list[dict] = []
    n_units: dict = {}
    try:
        if subset_of is not None:
            full = json.loads((subset_of / MANIFEST).read_text())
            mine = {k: v for k, v in opts.items() if k != "kind"}
            if full["pack"] != kind or full["options"] != mine or full["version"] != VERSION:
                raise SystemExit(f"{subset_of} was built with other options ({full['pack']}, {full['options']}, "
                                 f"version {full['version']}); build from the sources instead")
            entries, skipped, n_units = full["files"], full["skipped"], full["counts"]["source_units"]
            source_dir = subset_of
        else:
            entries, n_units = _process(kind, tmp, opts, mirror, val_fraction, sample, jobs,
                                        include_undocumented, skipped)
            source_dir = tmp
        if budget is not None:
            def header(keep: list[dict]) -> int:
                return len(manifest_text(kind, opts, sources, keep, skipped, budget, n_units).encode())

            keep = select(entries, budget, opts["seed"], header)
            if subset_of is not None:
                for e in keep:
                    shutil.copyfile(subset_of / e["file"], tmp / e["file"])
            else:
                kept = {e["file"] for e in keep}
                for e in entries:
                    if e["file"] not in kept:
                        (source_dir / e["file"]).unlink()
            entries = keep
        elif subset_of is not None:
            raise SystemExit("--subset-of needs --max-bytes")
        text = manifest_text(kind, opts, sources, entries, skipped, budget, n_units)
        (tmp / MANIFEST).write_text(text)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    doc = json.loads(text)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"out": str(out), "counts": doc["counts"], "data_bytes": doc["data_bytes"], "total_bytes": total,
            "seconds": round(time.time() - t0, 1)}


def _process(kind: str, tmp: Path, opts: dict, mirror: Path, val_fraction: float, sample: int, jobs: int,
             include_undocumented: bool, skipped: list[dict]) -> tuple[list[dict], dict]:
    from tqdm import tqdm

    snaps = [Snapshot(mirror, s) for s in SOURCES[kind]]
    try:
        if kind == "images":
            units = image_units(snaps)
        elif kind == "speech":
            units = speech_units(snaps)
        else:
            units, skip = music_units(snaps, include_undocumented)
            skipped += skip
        if sample:  # a deterministic handful (tests): the first `sample` units in hash order
            units = sorted(units, key=lambda u: digest(opts["seed"], "sample", u.src.repo, u.path))[:sample]
        n_units = {s.src.repo: sum(1 for u in units if u.src.repo == s.src.repo) for s in snaps}
        val = split_groups([u.group for u in units], val_fraction, opts["seed"])
        # rank of a unit within its group (speech: several files per speaker), in hash order
        by_group: dict[str, list[Unit]] = {}
        for u in units:
            by_group.setdefault(u.group, []).append(u)
        unit_rank = {}
        for g in by_group.values():
            for r, u in enumerate(sorted(g, key=lambda u: digest(opts["seed"], "rank", u.src.repo, u.path))):
                unit_rank[id(u)] = r
        by_id = {id(u): u for u in units}
        entries: list[dict] = []
        names: set[str] = set()
        work = _blobs(units, {s.src.repo: s for s in snaps}, opts, skipped)
        bar = tqdm(total=len(units), desc=f"prepare {kind}", unit="file", dynamic_ncols=True)
        pool = None
        try:
            if jobs > 1:
                import multiprocessing as mp

                pool = mp.get_context("fork").Pool(jobs)
                results: Iterator = pool.imap(_work_with_id, ((a, id(a[1])) for a in work), chunksize=4)
            else:
                results = ((_work(a), id(a[1])) for a in work)
            for (items, reason), uid in results:
                u = by_id[uid]
                bar.update(1)
                if reason:
                    skipped.append({"repo": u.src.repo, "path": u.path, "reason": reason})
                    continue
                split = "val" if u.group in val else "train"
                for j, (name, data, meta) in enumerate(items):
                    if name in names:
                        raise RuntimeError(f"two files named {name}")
                    names.add(name)
                    (tmp / split / name).write_bytes(data)
                    entries.append({"file": f"{split}/{name}", "split": split, "repo": u.src.repo,
                                    "commit": u.src.commit, "path": u.path, "group": u.group,
                                    # crops/clips of one unit rank after the unit's rank within its group
                                    "rank": unit_rank[uid] * 1000 + j,
                                    "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), **meta})
            bar.update(len(units) - bar.n)  # missing blobs
        finally:
            bar.close()
            if pool is not None:
                pool.close()
                pool.join()
        return entries, n_units
    finally:
        for s in snaps:
            s.close()


def _work_with_id(arg: tuple) -> tuple:
    a, uid = arg
    return _work(a), uid


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("kind", choices=("images", "speech", "music"))
    ap.add_argument("--out", type=Path, help="the pack folder (default ../packs/KIND beside the checkout)")
    ap.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR,
                    help="folder of the snapshots, OWNER+NAME/repo (default ../.mirror)")
    ap.add_argument("--max-bytes", type=parse_bytes, help="keep a deterministic subset of at most this size (24M)")
    ap.add_argument("--subset-of", type=Path, help="with --max-bytes: take the subset from this full pack")
    ap.add_argument("--val-fraction", type=float, default=0.05, help="share of photos/speakers/pieces held out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crops", type=int, default=2, help="images: crops per photo (default 2)")
    ap.add_argument("--format", choices=tuple(FORMATS), default="jpeg",
                    help="images: jpeg (q95 4:4:4, default), webp (lossy q95, 4:2:0 chroma), webp-lossless, png")
    ap.add_argument("--rate", type=int, default=24000,
                    help="music: resample to this rate (default 24000, the audio models'; 0 = keep)")
    ap.add_argument("--mono", action="store_true", help="music: downmix to mono (the audio trainer does anyway)")
    ap.add_argument("--clip-seconds", type=float, default=CLIP_S, help="audio: longest clip (default 10)")
    ap.add_argument("--include-undocumented", action="store_true",
                    help="music: also the Tuxemon tracks whose license ATTRIBUTIONS.md does not state")
    ap.add_argument("--sample", type=int, default=0, help="only this many source files (tests)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing pack at --out")
    a = ap.parse_args(argv)
    if a.subset_of is not None and a.max_bytes is None:
        ap.error("--subset-of needs --max-bytes")
    opts: dict = {"kind": a.kind, "seed": a.seed, "val_fraction": a.val_fraction}
    if a.kind == "images":
        opts.update(crops=a.crops, format=a.format, crop=CROP, scale=SCALE, min_scale_down=MIN_SCALE_DOWN,
                    max_short=MAX_SHORT)
    else:
        opts.update(clip_s=a.clip_seconds, min_clip_s=MIN_CLIP_S, silence_dbfs=SILENCE_DBFS)
        if a.kind == "music":
            opts.update(rate=a.rate, mono=a.mono, include_undocumented=a.include_undocumented)
    if a.sample:
        opts["sample"] = a.sample
    out = a.out or DEFAULT_PACKS / a.kind
    res = build(a.kind, out, opts, a.mirror, a.max_bytes, a.val_fraction, a.subset_of, a.sample, max(1, a.jobs),
                a.include_undocumented, a.overwrite)
    c = res["counts"]
    extra = f", {c['seconds']['train'] / 3600:.2f} h / {c['seconds']['val'] / 60:.1f} min" if "seconds" in c else ""
    print(f"{res['out']}: {c['train']} train + {c['val']} val files ({c['groups']['train']} + {c['groups']['val']} "
          f"groups{extra}), {res['total_bytes'] / 2**20:.1f} MiB in all, {res['seconds']} s; skipped: {c['skipped']}",
          file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
