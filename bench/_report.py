"""Markdown rendering of bench/weights.py results."""

from __future__ import annotations

from typing import Any

from bench._common import MB, fmt, md_table, provenance_md

NOTES = """\
## Method

- Sizes are compressed file sizes as % of the original file (lower is better).  weightzip is
  measured with `weightzip.pack` / `weightzip.unpack` on the real file, so the size is the
  `.wz` file including container overhead.
- Speeds are MB/s (10^6 B/s) of *original* bytes, file to file: read input + (de)compress +
  write output, outputs in a tmpfs scratch dir.  Best of N repetitions: N >= 3 for small files
  (repeated up to 50x until `--min-time` s are spent, so millisecond runs are stable), 1 for the
  1 GiB file; a measurement stops repeating after `--budget` seconds.  Run on an idle machine:
  on few cores any concurrent load shows up directly in the MB/s.
- `1T` = threads=1, `NT` = all threads.  zstd: `ZstdCompressor(level, threads=0)` for 1T,
  `threads=N` for NT; zstd decompression is single-threaded in both columns.
- zipnn 0.5.4: `ZipNN(input_format="byte", bytearray_dtype=<dtype>, threads=T,
  method="HUFFMAN").compress(bytearray)`, decompressed with `ZipNN(threads=T).decompress(blob)`.
  `zipnn` = the whole file as one buffer of the file's dominant float dtype (what zipnn's file
  CLI does); `zipnn-tensor` = each float tensor of a safetensors file compressed with its own
  dtype, header / integer tensors stored raw (like zipnn's safetensors script).  The input is
  always a private copy: zipnn rewrites it in place.  The zipnn reference for the ratio
  columns is the smaller of the two variants for that dataset.
- Peak RSS: VmHWM of the child process that ran the phase (a fresh interpreter per dataset,
  method and phase), so it includes the interpreter and the method's imports (zipnn imports
  torch: ~150 MB of its RSS).  VmHWM rather than ru_maxrss, because Linux carries the forking
  parent's high-water mark into a child's ru_maxrss at exec (both are in the JSON).  `anon` is
  the sampled (5 ms) peak of RssAnon: heap only, without mmapped file pages.
- Entropy bound: order-0 entropy per byte plane after moving the float sign bit next to the
  mantissa (the top byte is the exponent for BF16/FP32), with one histogram per tensor and
  plane (`bound/tensor`), per 256 KiB chunk of a tensor and plane (`bound/256K`, the bound
  for ZipNN-style chunked coders) or per dtype and plane for the whole file (`bound/global`);
  table costs ignored, non-tensor bytes counted at 8 bits/byte.  Context models can beat
  all three.
- Roundtrip: sha256 of every decompressed output against the original.  For torch
  checkpoints (.pt) a re-serialised file whose tensors are bitwise equal (torch.load of both)
  is reported as "tensors equal (bytes differ)" instead of a mismatch.
"""


def _ok(r: dict[str, Any]) -> bool:
    return not r.get("error") and bool(r.get("roundtrip_ok"))


def _roundtrip(r: dict[str, Any]) -> str:
    if r.get("bytes_identical"):
        return "ok"
    return "tensors equal (bytes differ)" if r.get("roundtrip_ok") else "**MISMATCH**"


def _ref(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    cands = [r for r in rows if r["method"].startswith("zipnn") and _ok(r)]
    return min(cands, key=lambda r: r["size"]) if cands else None


def _speed(r: dict[str, Any] | None, phase: str, t: str) -> float | None:
    try:
        return r[phase][t]["mb_s"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None


def _ratio(a: float | None, b: float | None, nd: int = 2) -> str:
    return f"{a / b:.{nd}f}" if a and b else "-"


def render_markdown(p: dict[str, Any]) -> list[str]:
    threads = [str(t) for t in p["threads"]]
    t1, tn = threads[0], threads[-1]
    methods: list[str] = p["methods"]
    by_ds: dict[str, list[dict[str, Any]]] = {}
    for r in p["results"]:
        by_ds.setdefault(r["dataset"], []).append(r)
    cell = {(r["dataset"], r["method"]): r for r in p["results"]}

    L = ["# weightzip benchmark: weights", "", *provenance_md(p),
         f"- threads: 1T = 1, NT = {tn}; elapsed {p['elapsed_s'] / 60:.1f} min", ""]
    if p["weightzip_skipped"]:
        L += [f"> **weightzip not measured**: {p['weightzip_skipped']}", ""]

    # ---- size summary
    L += ["## Compressed size (% of original, lower is better)", ""]
    hdr = ["dataset", "dtype", "MB", "bound/tensor", "bound/256K", "bound/global", *methods]
    rows = []
    for d in p["datasets"]:
        e = d["entropy"]
        row = [d["name"], d["dtype"], fmt(d["size"] / MB, 2), fmt(e["per_tensor_pct"], 2),
               fmt(e.get("per_chunk_pct"), 2), fmt(e["global_pct"], 2)]
        for m in methods:
            r = cell.get((d["name"], m))
            row.append("n/a" if r is None else ("ERR" if not _ok(r) else fmt(r["size_pct"], 2)))
        rows.append(row)
    L += md_table(hdr, rows) + [""]

    # ---- speed summaries
    for t in dict.fromkeys([t1, tn]):
        L += [f"## Speed, {t} thread(s): compress / decompress MB/s", ""]
        rows = []
        for d in p["datasets"]:
            row = [d["name"]]
            for m in methods:
                r = cell.get((d["name"], m))
                row.append("-" if r is None or not _ok(r) else
                           f"{fmt(_speed(r, 'compress', t), 0)} / {fmt(_speed(r, 'decompress', t), 0)}")
            rows.append(row)
        L += md_table(["dataset", *methods], rows) + [""]

    # ---- weightzip vs zipnn
    wz = [m for m in methods if m.startswith("weightzip-")]
    if wz:
        L += ["## weightzip vs zipnn (size: wz/zipnn, lower is better; speed: wz/zipnn, "
              "higher is better)", ""]
        rows = []
        for d in p["datasets"]:
            ref = _ref(by_ds.get(d["name"], []))
            for m in wz:
                r = cell.get((d["name"], m))
                if r is None or not _ok(r) or ref is None:
                    rows.append([d["name"], m, ref["method"] if ref else "-", *["-"] * 5])
                    continue
                rows.append([d["name"], m, ref["method"], _ratio(r["size"], ref["size"], 3),
                             *(_ratio(_speed(r, ph, t), _speed(ref, ph, t))
                               for t in (t1, tn) for ph in ("compress", "decompress"))])
        L += md_table(["dataset", "level", "zipnn ref", "size", "C 1T", "D 1T",
                       f"C {tn}T", f"D {tn}T"], rows) + [""]

    # ---- per dataset details
    L += ["## Details per dataset", ""]
    for d in p["datasets"]:
        e = d["entropy"]
        rs = by_ds.get(d["name"], [])
        ref = _ref(rs)
        L += [f"### {d['name']} ({d['dtype']}, {d['size'] / MB:.2f} MB)", "",
              f"`{d['path']}` -- {d['source']}; sha256 `{d['sha256'][:16]}...`; best of >= {d['reps']} runs", "",
              f"Order-0 bound: **{e['per_tensor_pct']:.2f}%** per tensor, {e['per_chunk_pct']:.2f}% "
              f"per 256 KiB chunk, {e['global_pct']:.2f}% global "
              f"({e['per_tensor_no_sign_move_pct']:.2f}% per tensor without moving the "
              f"sign bit); {e['non_tensor_bytes']} non-tensor bytes. zipnn ref: "
              f"`{ref['method'] if ref else '-'}`.", ""]
        rows = []
        for r in rs:
            if r["error"]:
                rows.append([r["method"], "ERROR: " + r["error"][:120], *[""] * 10])
                continue
            sz = r["size_pct"]
            diff = {t: s for t, s in r["size_by_threads"].items() if s != r["size"]}
            size_s = fmt(sz, 2) + (f" ({tn}T: {100 * diff[tn] / r['orig_size']:.2f})" if tn in diff else "")
            cr = "/".join(_ratio(_speed(r, "compress", t), _speed(ref, "compress", t)) for t in (t1, tn))
            dr = "/".join(_ratio(_speed(r, "decompress", t), _speed(ref, "decompress", t)) for t in (t1, tn))
            cs, ds_ = r["compress_rss"], r["decompress_rss"]
            rows.append([r["method"], size_s, _ratio(r["size"], ref["size"], 3) if ref else "-",
                         fmt(_speed(r, "compress", t1)), fmt(_speed(r, "compress", tn)),
                         fmt(_speed(r, "decompress", t1)), fmt(_speed(r, "decompress", tn)),
                         cr, dr, f"{cs['peak_mb']:.0f} / {ds_['peak_mb']:.0f}",
                         f"{cs['peak_anon_mb']:.0f} / {ds_['peak_anon_mb']:.0f}",
                         _roundtrip(r)])
        L += md_table(["method", "size %", "size/zipnn", "C 1T", f"C {tn}T", "D 1T", f"D {tn}T",
                       "C ×zipnn 1T/NT", "D ×zipnn 1T/NT", "peak RSS C/D MB", "anon C/D MB",
                       "roundtrip"], rows) + [""]

    # ---- incompressible
    inc = p.get("incompressible")
    if inc:
        L += ["## Incompressible input (64 MiB of random bytes, weightzip.compress)", ""]
        if inc.get("error"):
            L += [f"ERROR: {inc['error']}", ""]
        else:
            rows = [[r["level"], r["input"], f"{r['growth_bytes']:+d}",
                     "ok" if r["roundtrip_ok"] and r["dtype_shape_ok"] else "**FAIL**",
                     fmt(r["size"] / MB / r["compress_s"], 0), fmt(r["size"] / MB / r["decompress_s"], 0),
                     "pass" if r["pass"] else "**FAIL**"] for r in inc["rows"]]
            L += md_table(["level", "input", "growth (bytes)", "roundtrip", "C MB/s", "D MB/s",
                           f"≤ {inc['limit_bytes']} B"], rows) + [""]
    return L + [NOTES]
