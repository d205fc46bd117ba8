"""Evaluate an audio codec on a folder, optionally against Opus in the same run: per file and
rate, the real file bitrate (headers included), SI-SDR, mel distance, STOI, PESQ-WB (16 kHz
material) and the encode/decode real-time factors. Writes results.json, per_file.csv and a
PNG of quality against bitrate."""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from neurocodec.runtime.audio.io import list_audio, read_audio
from neurocodec.tools.audio import metrics
from neurocodec.tools.paths import display_path

METRICS = ("si_sdr", "mel", "stoi", "pesq_wb", "level_db")


def level_db(ref: np.ndarray, est: np.ndarray) -> float:
    """Decoded minus original RMS level, dB (0: the level is kept)."""
    p_ref, p_est = (float(np.mean(np.square(a, dtype=np.float64))) for a in (ref, est))
    return 10 * math.log10(p_est / p_ref) if p_ref > 0 and p_est > 0 else float("nan")


def score(ref: np.ndarray, est: np.ndarray, sr: int, pesq: bool) -> dict:
    r, e = ref.mean(0) if ref.ndim == 2 else ref, est.mean(0) if est.ndim == 2 else est
    return {"level_db": level_db(ref, est), "si_sdr": metrics.si_sdr(r, e), "mel": metrics.mel_distance(r, e, sr),
            "stoi": metrics.stoi(r, e, sr), "pesq_wb": metrics.pesq_wb(r, e, sr) if pesq else float("nan")}


def evaluate(codec_name: str, data_dir, out_dir=None, kbps: tuple = (1.5, 3.0, 6.0), opus_kbps: tuple = (6.0, 12.0),
             pesq: bool | None = None, limit: int | None = None, progress: bool = True,
             codec2_modes: tuple = (3200, 1200)) -> dict:
    """Rows per (system, rate, file) and means per (system, rate). pesq None: for 16 kHz files.
    Anchors whose tools are not installed (opusenc/opusdec, c2enc/c2dec) are left out."""
    from neurocodec.runtime.bitstream import NcFile
    from neurocodec.runtime.registry import load_codec
    from neurocodec.tools.audio.anchors import codec2_available, codec2_roundtrip, opus_available, opus_roundtrip

    codec = load_codec(codec_name)
    files = list_audio(data_dir)[:limit]
    if not files:
        raise ValueError(f"no audio files in {data_dir}")
    use_opus = bool(opus_kbps) and opus_available()
    c2_modes = codec2_modes if codec2_available() else ()
    rows = []
    for p in tqdm(files, desc=f"eval {Path(data_dir).name}", disable=not progress):
        x, sr = read_audio(p)  # [C, T]
        sec = x.shape[1] / sr
        do_pesq = sr == 16000 if pesq is None else pesq
        for k in kbps:
            t0 = time.perf_counter()
            data = codec.encode(np.ascontiguousarray(x.T), sr, kbps=k)
            t1 = time.perf_counter()
            y, _ = codec.decode_nc(NcFile.from_bytes(data))
            t2 = time.perf_counter()
            y = y.T if y.ndim == 2 else y[None]
            st = codec.stage_stats(NcFile.from_bytes(data))
            rows.append({"system": codec.name, "nominal_kbps": k, "file": p.name, "seconds": sec,
                         "kbps": 8 * len(data) / sec / 1000, "bytes": len(data),
                         "stages": float(np.mean(st["stages"])), "index_bytes": st["index_bytes"],
                         "fixed_bytes": st["fixed_bytes"],
                         "enc_rtf": sec / (t1 - t0), "dec_rtf": sec / (t2 - t1), "encdec_rtf": sec / (t2 - t0),
                         **score(x, y, sr, do_pesq)})
        for k in opus_kbps if use_opus else ():
            y, nbytes, payload = opus_roundtrip(x.mean(0), sr, k)
            rows.append({"system": "opus", "nominal_kbps": k, "file": p.name, "seconds": sec,
                         "kbps": 8 * nbytes / sec / 1000, "payload_kbps": 8 * payload / sec / 1000,
                         "bytes": nbytes, **score(x, y[None], sr, do_pesq)})
        for mode in c2_modes:
            y, nbytes = codec2_roundtrip(x.mean(0), sr, mode)
            rows.append({"system": "codec2", "nominal_kbps": mode / 1000, "file": p.name, "seconds": sec,
                         "kbps": 8 * nbytes / sec / 1000, "payload_kbps": 8 * nbytes / sec / 1000,
                         "bytes": nbytes, **score(x, y[None], sr, do_pesq)})
    res = {"codec": codec.name, "data": display_path(data_dir), "files": len(files), "rows": rows,
           "means": summarize(rows)}
    if out_dir:
        write_outputs(res, Path(out_dir))
    return res


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["system"], r["nominal_kbps"]), []).append(r)
    out = []
    for (system, k), rs in groups.items():
        sec = sum(r["seconds"] for r in rs)
        m = {"system": system, "nominal_kbps": k, "files": len(rs), "seconds": round(sec, 2),
             "kbps": 8 * sum(r["bytes"] for r in rs) / sec / 1000}
        if "payload_kbps" in rs[0]:
            m["payload_kbps"] = sum(r["payload_kbps"] * r["seconds"] for r in rs) / sec
        for key in METRICS:
            v = [r[key] for r in rs if not math.isnan(r[key])]
            m[key] = float(np.mean(v)) if v else float("nan")
        lv = [abs(r["level_db"]) for r in rs if not math.isnan(r["level_db"])]
        m["level_db_worst"] = float(max(lv)) if lv else float("nan")  # the largest |level change|
        if "index_bytes" in rs[0]:  # entropy coding against fixed-length packing of the same codes
            m["stages"] = sum(r["stages"] * r["seconds"] for r in rs) / sec
            m["entropy_saving_pct"] = 100 * (1 - sum(r["index_bytes"] for r in rs) / sum(r["fixed_bytes"] for r in rs))
        if "enc_rtf" in rs[0]:  # whole-set real-time factors: total audio / total time
            for key in ("enc_rtf", "dec_rtf", "encdec_rtf"):
                m[key] = sec / sum(r["seconds"] / r[key] for r in rs)
        out.append(m)
    return out


def write_outputs(res: dict, out: Path) -> None:
    from weightzip.core import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "results.json", overwrite=True) as tmp:  # the CLI checked --out
        tmp.write_text(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=1) + "\n")
    keys = sorted({k for r in res["rows"] for k in r}, key=lambda k: list(res["rows"][0]).index(k)
                  if k in res["rows"][0] else 99)
    with atomic_path(out / "per_file.csv", overwrite=True) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(res["rows"])
    plot(res["means"], out / "quality.png", title=f"{res['codec']} on {Path(res['data']).name}")


def plot(means: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from weightzip.core import atomic_path

    keys = [k for k in ("pesq_wb", "stoi", "mel", "si_sdr") if any(not math.isnan(m[k]) for m in means)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4))
    for ax, key in zip(np.atleast_1d(axes), keys):
        for system in dict.fromkeys(m["system"] for m in means):
            ms = sorted((m for m in means if m["system"] == system), key=lambda m: m["kbps"])
            ax.plot([m["kbps"] for m in ms], [m[key] for m in ms], "o-", label=system)
        ax.set_xlabel("file bitrate (kbps, headers included)")
        ax.set_ylabel({"pesq_wb": "PESQ-WB", "stoi": "STOI", "mel": "mel distance (lower is better)",
                       "si_sdr": "SI-SDR (dB)"}[key])
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
