"""weightzip command line: pack, unpack, info, verify."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import api, cli_series, clitools, inspect
from .levels import DEFAULT_LEVEL, LEVEL_NAMES


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def _print_info(d: dict) -> None:
    rows = [e for e in d["entries"] if e["kind"] == "tensor"]
    blobs = [e for e in d["entries"] if e["kind"] == "blob"]
    w = max([len(e["name"]) for e in rows] + [6])
    print(f"{d['file']}: source {d['source']}, level {d['level']}, {len(d['files'])} file(s)")
    if d.get("ref"):
        print(f"delta against {d['ref']['name']} (index {d['ref']['index_xxh64']}, {d['ref']['size']:,} bytes)")
    print(f"{'tensor':<{w}}  {'dtype':<7} {'shape':<18} {'bytes':>10} -> {'stored':>10}  {'ratio':>7} "
          f"{'bits/w':>6}  codecs")
    for e in rows:
        codecs = ",".join(f"{k}:{v}" for k, v in sorted(e["codecs"].items()))
        shape = "x".join(map(str, e["shape"])) or "scalar"
        lo = e.get("lossy")
        mark = f"  ~E={lo['max_error']:g}{' (sqrt)' if lo['domain'] == 'sqrt' else ''}" if lo else ""
        print(f"{e['name']:<{w}}  {e['dtype']:<7} {shape:<18} {e['bytes']:>10} -> {e['stored']:>10}"
              f"  {100 * e['ratio']:6.2f}% {e['bits_per_weight']:6.2f}  {codecs}{mark}")
    if blobs:
        b, s = sum(e["bytes"] for e in blobs), sum(e["stored"] for e in blobs)
        print(f"{'(other bytes)':<{w}}  {'':<7} {'':<18} {b:>10} -> {s:>10}  {100 * s / max(b, 1):6.2f}%")
    print(f"total: {len(rows)} tensors, {_size(d['total_bytes'])} -> {_size(d['file_bytes'])} "
          f"({100 * d['ratio']:.2f}% incl. container)")
    print("checksums: all chunks verified" if d.get("verified") else
          "checksums: NOT verified (--no-verify); run `weightzip verify` to check")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="weightzip", description="Lossless compression of model weights.",
                                epilog=clitools.EPILOG)
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="compress a .safetensors / HF folder / .pt / .npy / .npz",
                        epilog="The output defaults to SRC.wz beside SRC (inside -o if -o is a folder).")
    pk.add_argument("src")
    pk.add_argument("-o", "--output", help="output .wz file, or an existing folder to write SRC.wz into")
    pk.add_argument("--level", choices=LEVEL_NAMES, default=DEFAULT_LEVEL)
    pk.add_argument("--lossy", action="store_true", help="quantise float tensors of safetensors files within "
                    "--max-error x RMS(tensor) per element (safetensors, torch .pt; ints and other bytes stay exact)")
    pk.add_argument("--max-error", type=clitools.positive_float, metavar="E",
                    help="with --lossy: the per-element bound, as a fraction of each tensor's RMS (e.g. 0.01)")
    pk.add_argument("--moment-error", type=clitools.positive_float, metavar="E",
                    help="with --lossy: the bound for optimizer moments (exp_avg; exp_avg_sq in the sqrt "
                    "domain); default --max-error")
    pk.add_argument("--ref", help="an earlier .wz of the same model (e.g. the previous checkpoint): "
                    "matching tensors are coded against it, and unpacking needs it")
    un = sub.add_parser("unpack", help="restore the original file(s) from a .wz",
                        epilog="The output defaults to the original file or folder name, beside the .wz. "
                        "A packed folder unpacked into an existing folder writes only the files it "
                        "restores; other files there are never touched.")
    un.add_argument("src")
    un.add_argument("-o", "--output", help="output file or folder (an existing folder receives a packed "
                    "file under its original name)")
    for s in (pk, un):
        s.add_argument("--threads", type=clitools.positive_int, default=None,
                       help="worker threads, >= 1 (default: all cores)")
        s.add_argument("-f", "--force", action="store_true",
                       help="replace an existing output file (unpack into a folder: replace only the "
                       "files the archive restores)")
        s.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    inf = sub.add_parser("info", help="per-tensor table: dtype, shape, sizes, ratio, codecs (checksums verified)")
    inf.add_argument("file")
    inf.add_argument("--json", action="store_true")
    inf.add_argument("--no-verify", action="store_true",
                     help="read only the index (fast); the table is then not checked against the data")
    inf.add_argument("--threads", type=clitools.positive_int, default=None)
    ver = sub.add_parser("verify", help="check checksums, and equality with ORIGINAL if given")
    ver.add_argument("file")
    ver.add_argument("original", nargs="?")
    ver.add_argument("--threads", type=clitools.positive_int, default=None)
    for s in (un, inf, ver):
        s.add_argument("--ref", action="append", help="the reference of a delta .wz (repeat for a "
                       "chain); by default found by its stored name beside the file")

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--threads", type=clitools.positive_int, default=None)
        s.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    cli_series.add_parsers(sub, common)
    cli_series.add_options(pk, un, inf)
    a = p.parse_args(argv)
    return clitools.run("weightzip", lambda: _command(a), (ValueError, OSError, ImportError, KeyError))


def _command(a: argparse.Namespace) -> int:
    if cli_series.wants_series(a):  # a run folder -> .wzs, or a .wzs series
        d = cli_series.command(a, _size, _lossy_options)
        if d is not None:
            _print_info(d)
    elif a.cmd in ("pack", "unpack"):
        t0 = time.perf_counter()
        fn = api.pack if a.cmd == "pack" else api.unpack
        kw = {"level": a.level, **_lossy_options(a)} if a.cmd == "pack" else {}
        kw["ref"] = a.ref
        progress = False if a.quiet else None
        out = fn(a.src, a.output, threads=a.threads, progress=progress, overwrite=a.force, **kw)
        if not a.quiet:
            n_in = api._source_size(Path(a.src))
            n_out = api._source_size(out)
            packed, plain = (n_out, n_in) if a.cmd == "pack" else (n_in, n_out)
            print(f"{a.src} -> {out}: {_size(n_in)} -> {_size(n_out)} "
                  f"(packed = {100 * packed / max(plain, 1):.2f}% of original) "
                  f"in {time.perf_counter() - t0:.2f} s")
    elif a.cmd == "info":
        d = inspect.info(a.file, verify=not a.no_verify, threads=a.threads, ref=a.ref)
        print(json.dumps(d, indent=1)) if a.json else _print_info(d)
    else:
        print(inspect.verify(a.file, a.original, a.threads, ref=a.ref))
    return 0


def _lossy_options(a: argparse.Namespace) -> dict:
    if (a.max_error is not None or a.moment_error is not None) and not a.lossy:
        raise ValueError("--max-error/--moment-error need --lossy")
    if a.lossy and a.max_error is None and a.moment_error is None:
        raise ValueError("--lossy needs --max-error E (and/or --moment-error E)")
    return {"max_error": a.max_error, "moment_error": a.moment_error} if a.lossy else {}


if __name__ == "__main__":
    sys.exit(main())
