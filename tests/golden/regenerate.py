"""Rewrite the golden files and manifest.json from this checkout's encoders (README.md says
when: only when a format version changes on purpose; keep the old files that newer code
must still read, as decode-only entries).

    python tests/golden/regenerate.py            # writes missing files; refuses to change one
    python tests/golden/regenerate.py --check    # only report what would change (exit 1 if any)
    python tests/golden/regenerate.py --force    # rewrite changed files too (a format change)
    python tests/golden/regenerate.py --only wz  # or nc
    python tests/golden/regenerate.py --retire tensors_max.wz ...   # keep as decode-only

--retire renames each file to NAME.v<format version>[.n].wz/.nc and marks its manifest entry
decode-only ("encode": false): newer code must still decode it as recorded. Retire the files
an intended format change affects, then run with --force to write the new ones.

Encoding runs with torch on one thread and weightzip on one thread, as the tests do.
Decode-only entries (legacy files, and the coolchic files: fitted per image, written once
when missing) are never re-encoded; their expected output is recorded once,
when missing, and kept after that."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden_data as gd


def wz_entry(name: str, path: Path, tmp: Path) -> dict:
    """How the committed .wz decodes today (the expectation recorded for it)."""
    import weightzip

    blob = path.read_bytes()
    e = {"sha256": gd.sha256(blob), "bytes": len(blob), "format_version": int.from_bytes(blob[8:10], "little"),
         "encode": True}
    if name in gd.FRAMES:
        level, make = gd.FRAMES[name]
        out = weightzip.decompress(blob)
        e.update(kind="compress", level=level,
                 decoded={"bytes": len(out), "sha256": gd.sha256(out)} if isinstance(out, bytes) else gd.describe(out))
        return e
    e.update(kind="pack" if name == "packed_safetensors.wz" else "save",
             level="default" if name == "packed_safetensors.wz" else name[len("tensors_"):-3],
             tensors={k: gd.describe(v) for k, v in weightzip.load(path).items()})
    if name == "packed_safetensors.wz":
        e["source"] = gd.PACKED_SOURCE
    out = weightzip.unpack(path, tmp / (name + ".out"), overwrite=True)
    e["unpacked_sha256"] = gd.sha256(out.read_bytes())
    return e


def nc_entry(path: Path, case: dict | None, legacy: str | None = None, old: dict | None = None) -> dict:
    """legacy: decode-only, with this note (and the case it was fitted from, if any). old: the
    entry recorded before, whose other SIMD levels' records stay while the file is the same."""
    import neurocodec

    blob = path.read_bytes()
    e = {"sha256": gd.sha256(blob), "bytes": len(blob), "format_version": blob[3]}
    if legacy is None:
        e.update(encode=True, **case)
    else:
        e.update(encode=False, legacy=legacy, **(case or {}))
    e["decoded"] = gd.describe_decoded(neurocodec.decode(blob))
    if gd.is_float_decoder(path.name):
        e["float_decoder"] = True
        if old and old.get("sha256") == e["sha256"]:  # the same file: records of other levels stay
            on = dict(old.get("decoded_on", {}))
            here = gd.float_platform(gd.environment())
            if here is not None and here != gd.float_platform(gd.load_manifest()["written_with"]["nc"]):
                on[here], e["decoded"] = e["decoded"], old["decoded"]
            if on:
                e["decoded_on"] = on
    return e


def retire(names: list[str]) -> int:
    """Rename golden files to NAME.v<version>[.n].ext and mark them decode-only."""
    man = gd.load_manifest()
    for name in names:
        section = name.rsplit(".", 1)[-1]
        entry = man.get(section, {}).get(name)
        if entry is None or not (gd.HERE / name).exists():
            print(f"{name}: not a golden file in manifest.json", file=sys.stderr)
            return 1
        stem, ext = name.rsplit(".", 1)
        new, n = f"{stem}.v{entry['format_version']}.{ext}", 1
        while (gd.HERE / new).exists() or new in man[section]:
            n += 1
            new = f"{stem}.v{entry['format_version']}.{n}.{ext}"
        (gd.HERE / name).rename(gd.HERE / new)
        entry = {**entry, "encode": False, "legacy": f"retired from {name} (format version {entry['format_version']}): "
                                                       "newer code must still decode it as recorded"}
        del man[section][name]
        man[section][new] = entry
        print(f"retired {name} -> {new}")
    for section in ("wz", "nc"):
        man[section] = dict(sorted(man[section].items()))
    gd.MANIFEST.write_text(gd.dump_json(man) + "\n")
    return 0


def record_isa() -> int:
    """Add this platform's (SIMD level and CPU vendor: gd.float_platform) decoded records to the
    .nc entries of float decoders (float_decoder: true), and only them: every other decoder must
    match its one record."""
    import torch

    import neurocodec

    torch.set_num_threads(1)
    man = gd.load_manifest()
    here = gd.float_platform(gd.environment())
    if here == gd.float_platform(man["written_with"]["nc"]):
        print(f"{here} is the platform the files were written on: nothing to add")
        return 0
    for name, e in man["nc"].items():
        if e.get("float_decoder"):
            e.setdefault("decoded_on", {})[here] = gd.describe_decoded(neurocodec.decode((gd.HERE / name).read_bytes()))
            print(f"recorded {name} on {here}")
    gd.MANIFEST.write_text(gd.dump_json(man) + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything would change")
    ap.add_argument("--force", action="store_true", help="rewrite files (and expectations) that changed")
    ap.add_argument("--only", choices=("wz", "nc"), help="only these files")
    ap.add_argument("--retire", nargs="+", metavar="NAME", help="keep these files as decode-only, renamed")
    ap.add_argument("--record-isa", action="store_true",
                    help="record what the float decoders' files decode to on this CPU (SIMD level and vendor)")
    args = ap.parse_args(argv)
    if args.retire:
        return retire(args.retire)
    if args.record_isa:
        return record_isa()

    old = gd.load_manifest() if gd.MANIFEST.exists() else {}
    man = {"about": "expected contents of the golden files: see README.md",
           "written_with": dict(old.get("written_with", {})),
           **{k: dict(old.get(k, {})) for k in ("wz", "tensor_sets", "nc", "inputs")}}
    notes, refused = [], []

    def update(section: str, name: str, entry: dict) -> None:
        """Record an expectation; changing an existing one needs --force."""
        prev = man[section].get(name)
        if prev == entry:
            return
        what = f"{section}: expectation of {name}"
        if prev is not None and not args.force:
            refused.append(what)
        elif not args.check:
            man[section][name] = entry
            notes.append(("updated " if prev is not None else "recorded ") + what)
        else:
            notes.append("would record " + what)

    def put(name: str, data: bytes) -> bool:
        """Write golden file name if missing (or changed, with --force); whether it now holds data."""
        path = gd.HERE / name
        if path.exists() and path.read_bytes() == data:
            return True
        if path.exists() and not args.force:
            refused.append(f"file {name}: the encoder's output differs from the committed bytes")
            return False
        if args.check:
            notes.append(f"would write {name}")
            return False
        path.write_bytes(data)
        notes.append(f"wrote {name}")
        return True

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only in (None, "wz"):
            for name in gd.WZ_FILES:
                if put(name, gd.make_wz(name, tmp)):
                    entry = wz_entry(name, gd.HERE / name, tmp)
                    if entry["kind"] == "save":  # the same tensors at every level: one table
                        update("tensor_sets", "wz_tensors", entry["tensors"])
                        entry["tensors"] = "wz_tensors"
                    update("wz", name, entry)
        if args.only in (None, "nc"):
            import torch

            torch.set_num_threads(1)
            for key, (x, sr) in gd.nc_inputs().items():
                update("inputs", key, {**gd.describe(x), **({"sample_rate": sr} if sr else {})})
            for name, case in gd.nc_cases().items():
                if put(name, gd.make_nc(case)):
                    update("nc", name, nc_entry(gd.HERE / name, case, old=man["nc"].get(name)))
            for name, case in gd.FITTED_NC.items():  # written once: the fit is not reproducible
                if (gd.HERE / name).exists() or put(name, gd.make_nc(case)):
                    if name not in man["nc"]:
                        update("nc", name, nc_entry(gd.HERE / name, case, gd.FITTED_NOTE))
            for name, what in gd.LEGACY_NC.items():
                if name not in man["nc"]:  # recorded once, then kept: newer code must match it
                    update("nc", name, nc_entry(gd.HERE / name, None, what))

    for line in notes:
        print(line)
    for line in refused:
        print("CHANGED " + line, file=sys.stderr)
    if refused:
        print("Nothing of the above was rewritten. If a format changed on purpose, bump its version, "
              "keep the old files as decode-only entries, and rerun with --force (README.md).", file=sys.stderr)
    if args.check:
        return 1 if refused or notes else 0
    for kind in ("wz", "nc"):  # where the last files of each kind were written: for failure messages
        if any(n.startswith("wrote") and n.endswith("." + kind) for n in notes) or kind not in man["written_with"]:
            if args.only in (None, kind):
                man["written_with"][kind] = gd.environment()
    man["wz"], man["nc"] = dict(sorted(man["wz"].items())), dict(sorted(man["nc"].items()))
    gd.MANIFEST.write_text(gd.dump_json(man) + "\n")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
