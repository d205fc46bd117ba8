"""Benchmark the audio codec against Opus (opusenc/opusdec, hard CBR) in one run.

    python bench/audio.py                       # default audio codec, both test sets
    python bench/audio.py --codec audio-rvq --limit 5 --no-memory

Per set (speech/test, music/test): neurocodec.tools.audio.evaluate at 1.5/3/6 kbps and Opus at
6/12 kbps -> <out>/audio/<set>/{results.json,per_file.csv,quality.png}. Then: index entropy
coding against fixed-length packing, codebook usage entropy on the test audio, streaming
seams (chunked against one-window decoding), peak memory of a 10 s and a 10 min file
through the CLI, bad inputs. Summary: <out>/audio.md and <out>/audio.json.
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench._common import (
    REPO_ROOT,
    RESULTS_DIR,
    fmt,
    md_table,
    provenance,
    provenance_md,
    write_reports,
)
from neurocodec.tools.paths import display_paths

DATA = REPO_ROOT.parent / "shared" / "data" / "audio"
SETS = {"speech": DATA / "speech" / "test", "music": DATA / "music" / "test"}


def usage_entropy(codec, folder: Path, limit: int | None) -> list[float]:
    """Per codebook: entropy of the code histogram over the test audio / log2(K)."""
    import torch

    from neurocodec.runtime.audio.io import list_audio, read_audio

    K, hist = codec.cfg.codebook_size, np.zeros((codec.n_max, codec.cfg.codebook_size))
    for p in list_audio(folder)[:limit]:
        x, _ = read_audio(p, codec.sr)
        with torch.inference_mode():
            c = codec.model.encode(torch.from_numpy(x.mean(0))[None, None]).numpy()[0]  # [n_max, F]
        for k in range(codec.n_max):
            hist[k] += np.bincount(c[k], minlength=K)
    p = hist / hist.sum(1, keepdims=True)
    return [float(-(q[q > 0] * np.log2(q[q > 0])).sum() / math.log2(K)) for q in p]


def seams(codec, path: Path) -> dict:
    """Chunked decoding (as the codec does it) against decoding all frames in one window."""
    from neurocodec.runtime.audio.decoder import DECODE_CHUNK
    from neurocodec.runtime.audio.io import read_audio
    from neurocodec.runtime.audio.stream import decode_stream
    from neurocodec.runtime.bitstream import NcFile

    x, sr = read_audio(path)
    nc = NcFile.from_bytes(codec.encode(np.ascontiguousarray(x.T), sr, kbps=6.0))
    codes, _, _, T24 = codec.decode_codes(nc)
    chunked = np.concatenate(list(decode_stream(iter([codes]), codec._decode_fn, codec.hop, T24,
                                                chunk_frames=DECODE_CHUNK)), 1)
    whole = np.concatenate(list(decode_stream(iter([codes]), codec._decode_fn, codec.hop, T24,
                                              chunk_frames=codes.shape[-1] + 1)), 1)
    d = chunked - whole
    return {"file": path.name, "seconds": round(T24 / codec.sr, 2), "chunks": -(-codes.shape[-1] // DECODE_CHUNK),
            "chunk_seconds": round(DECODE_CHUNK * codec.hop / codec.sr, 2),
            "max_abs_diff": float(np.abs(d).max()),
            "diff_snr_db": float(10 * np.log10(np.sum(whole ** 2) / max(np.sum(d ** 2), 1e-20)))}


def peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of a child process (ru_maxrss of a fresh `python -c` wrapper)."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def memory(codec_name: str) -> dict:
    import soundfile as sf

    from neurocodec.runtime.audio.io import list_audio, read_audio

    clips = [read_audio(p, 16000)[0][0] for p in list_audio(SETS["speech"])]
    speech = np.concatenate(clips)
    cli = [sys.executable, "-m", "neurocodec"]
    res = {}
    with tempfile.TemporaryDirectory() as d:
        for label, sec in (("10 s", 10), ("10 min", 600)):
            x = np.resize(speech, sec * 16000)
            wav, nc, out = Path(d, f"{sec}.wav"), Path(d, f"{sec}.nc"), Path(d, f"{sec}_out.wav")
            sf.write(str(wav), x, 16000, subtype="PCM_16")
            enc = peak_rss_mb([*cli, "encode", str(wav), "-o", str(nc), "--kbps", "6", "--codec", codec_name, "-q"])
            dec = peak_rss_mb([*cli, "decode", str(nc), "-o", str(out), "-q", "--codec", codec_name])
            y, _ = sf.read(str(out))
            res[label] = {"encode_mb": round(enc, 1), "decode_mb": round(dec, 1), "samples_ok": len(y) == len(x),
                          "kbps": round(8 * nc.stat().st_size / sec / 1000, 4)}
    return res


def _scrub(msg: str, tmp: str) -> str:
    """A CLI message as recorded: the scratch folder's path becomes <tmp>."""
    return msg.strip().replace(str(Path(tmp).resolve()), "<tmp>").replace(str(tmp), "<tmp>")


def bad_inputs(codec_name: str) -> list[tuple[str, str]]:
    import soundfile as sf

    rows = []
    cli = [sys.executable, "-m", "neurocodec"]
    sr = 16000
    t = np.arange(sr * 3) / sr
    cases = {"silence (3 s of zeros)": np.zeros(sr * 3),
             "clipping (square wave at ±1)": np.sign(np.sin(2 * np.pi * 220 * t)),
             "0.1 s clip": 0.3 * np.sin(2 * np.pi * 440 * t[: sr // 10]),
             "NaN samples": np.where(t < 1, 0.1, np.nan)}
    with tempfile.TemporaryDirectory() as d:
        for name, x in cases.items():
            wav, nc, out = Path(d, "in.wav"), Path(d, "x.nc"), Path(d, "out.wav")
            for p in (nc, out):
                p.unlink(missing_ok=True)
            sf.write(str(wav), x.astype(np.float32), sr, subtype="FLOAT")
            r = subprocess.run([*cli, "encode", str(wav), "-o", str(nc), "--codec", codec_name, "-q"],
                               capture_output=True, text=True, check=False)
            if r.returncode:
                rows.append((name, f"exit {r.returncode}: `{_scrub(r.stderr, d)}`"))
                continue
            if not Path(d, "keep.nc").exists():
                Path(d, "keep.nc").write_bytes(nc.read_bytes())  # for the corrupt-file cases below
            r = subprocess.run([*cli, "decode", str(nc), "-o", str(out), "-q", "--codec", codec_name],
                               check=False, capture_output=True, text=True)
            if r.returncode:
                rows.append((name, f"encoded; decode exit {r.returncode}: `{_scrub(r.stderr, d)}`"))
                continue
            y, _ = sf.read(str(out))
            rows.append((name, (f"decoded: {len(y)} samples (input {len(x)}), peak {np.abs(y).max():.3f}, "
                               f"rms {np.sqrt(np.mean(y ** 2)):.4f}, {nc.stat().st_size} bytes")))
        data = bytearray(Path(d, "keep.nc").read_bytes()) if Path(d, "keep.nc").exists() else bytearray()
        if data:
            for name, blob in (("truncated .nc", data[: len(data) // 2]),
                               ("bit-flipped .nc", data[:40] + bytes([data[40] ^ 4]) + data[41:])):
                Path(d, "bad.nc").write_bytes(bytes(blob))
                r = subprocess.run([*cli, "decode", str(Path(d, "bad.nc")), "-o", str(Path(d, "bad.wav")),
                                    "--codec", codec_name],
                                   capture_output=True, text=True, check=False)
                rows.append((name, (f"exit {r.returncode}: `{_scrub(r.stderr, d)}`; output written: "
                                   f"{Path(d, 'bad.wav').exists()}")))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codec", default=None, help="default: the default audio codec")
    ap.add_argument("--kbps", default="1.5,3,6,9")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--no-memory", action="store_true", help="skip the 10-minute memory test")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, all cores)")
    a = ap.parse_args()

    from neurocodec.runtime.registry import default_codec, load_codec
    from neurocodec.tools.audio.anchors import codec2_available, opus_available, opus_version
    from neurocodec.tools.audio.evaluate import evaluate

    name = a.codec or default_codec("audio")
    codec = load_codec(name)
    kbps = tuple(float(v) for v in a.kbps.split(","))
    prov = provenance()
    import torch

    if a.threads:  # e.g. 1 while another job holds a core: 2 threads on 1 free core crawl
        torch.set_num_threads(a.threads)
    prov["torch_threads"] = torch.get_num_threads()
    prov["opus"] = opus_version() if opus_available() else "unavailable"
    prov["codec2"] = "c2enc/c2dec (Debian codec2)" if codec2_available() else "unavailable"
    results = {}
    for set_name, folder in SETS.items():
        if folder.is_dir():
            results[set_name] = evaluate(name, folder, a.out / "audio" / set_name, kbps=kbps, opus_kbps=(6.0, 12.0),
                                         pesq=set_name == "speech", limit=a.limit)
    extra = {"usage_entropy": usage_entropy(codec, SETS["speech"], a.limit),
             "seams": seams(codec, min(SETS["music"].glob("vocadito*"))) if SETS["music"].is_dir() else None,
             "memory": None if a.no_memory else memory(name), "bad_inputs": bad_inputs(name)}
    payload = {"provenance": prov, "codec": name, "model": codec.cfg.to_dict(),
               "training": display_paths(codec.meta.get("training", {})),
               "sets": {k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in results.items()}, **extra}
    write_reports(a.out, "audio", payload, report(payload, results, name, codec))
    return 0


def _m(results, set_name, system, k):
    for m in results.get(set_name, {}).get("means", []):
        if m["system"] == system and m["nominal_kbps"] == k:
            return m
    return None


def report(payload: dict, results: dict, name: str, codec) -> list[str]:
    prov = payload["provenance"]
    lines = [f"# Audio codec `{name}` vs Opus and Codec2", "", *provenance_md(prov),
             f"- torch threads: {prov['torch_threads']}; Opus: {prov['opus']} "
             "(`opusenc --hard-cbr`, decoded with `opusdec --rate <input rate>`); Codec2: "
             f"{prov.get('codec2', 'unavailable')} (modes 3200 and 1200 at 8 kHz, resampled with soxr)",
             f"- training: step {payload['training'].get('step')}, {payload['training'].get('minutes')} min on CPU", ""]
    cols = ["system", "nominal kbps", "file kbps", "Opus payload kbps", "stages/frame", "level dB (mean / worst)",
            "SI-SDR dB", "mel dist", "STOI", "PESQ-WB", "enc+dec ×RT", "entropy saving"]
    for set_name, res in results.items():
        rows = []
        for m in res["means"]:
            rows.append([m["system"], fmt(m["nominal_kbps"], 2), fmt(m["kbps"], 3), fmt(m.get("payload_kbps"), 3),
                         fmt(m.get("stages"), 2),
                         f"{fmt(m.get('level_db'), 2)} / {fmt(m.get('level_db_worst'), 2)}",
                         fmt(m["si_sdr"], 2), fmt(m["mel"], 3), fmt(m["stoi"], 3),
                         fmt(m["pesq_wb"], 2), fmt(m.get("encdec_rtf"), 1), fmt(m.get("entropy_saving_pct"), 1, " %")])
        n_runs = max(1, len({r["system"] + str(r["nominal_kbps"]) for r in res["rows"]}))
        seconds = sum(r["seconds"] for r in res["rows"]) / n_runs
        lines += [f"## {set_name}: {res['files']} files, {seconds:.1f} s", "", *md_table(cols, rows), "",
                  f"Per file: `audio/{set_name}/per_file.csv`; plot: `audio/{set_name}/quality.png`.", ""]

    def sp(system, k):
        return _m(results, "speech", system, k)

    speech_means = results.get("speech", {}).get("means", [])
    ours = [sp(name, k) for k in sorted({m["nominal_kbps"] for m in speech_means if m["system"] == name})]
    ours = [m for m in ours if m]
    opus6 = sp("opus", 6.0)
    best6 = max((m for m in ours if m["nominal_kbps"] <= 6), key=lambda m: m["pesq_wb"], default=None)
    at15 = sp(name, 1.5)
    ours_rows = [r for res in results.values() for r in res["rows"] if r["system"] == name]
    # A file coded with all stages cannot fill a budget above what they cost: reported apart.
    all_rows = [r for r in ours_rows if r["stages"] < codec.n_max]
    saturated = len(ours_rows) - len(all_rows)
    worst = max((abs(r["kbps"] / r["nominal_kbps"] - 1) * 100 for r in all_rows), default=float("nan"))
    over = max(((r["kbps"] / r["nominal_kbps"] - 1) * 100 for r in all_rows), default=float("nan"))
    rtf = min((m["encdec_rtf"] for res in results.values() for m in res["means"] if m["system"] == name),
              default=float("nan"))

    def verdict(ok):
        return "met" if ok else "**MISSED**"

    t = []
    if best6 and opus6:
        t.append(["≤ 6 kbps speech: PESQ-WB above Opus 6 kbps",
                  f"{fmt(best6['pesq_wb'], 2)} (at {best6['nominal_kbps']:g} kbps) vs Opus {fmt(opus6['pesq_wb'], 2)}",
                  verdict(best6["pesq_wb"] > opus6["pesq_wb"])])
        s6 = max(m["stoi"] for m in ours if m["nominal_kbps"] <= 6)
        t.append(["≤ 6 kbps speech: STOI ≥ 0.85", f"{fmt(s6, 3)} (Opus 6 kbps {fmt(opus6['stoi'], 3)})",
                  verdict(s6 >= 0.85)])
    if at15:
        t.append(["1.5 kbps speech: STOI ≥ 0.75", fmt(at15["stoi"], 3), verdict(at15["stoi"] >= 0.75)])
    if opus6 and sp(name, 6.0):
        m6 = sp(name, 6.0)
        t.append(["6 kbps speech: STOI ≥ 0.88, SI-SDR ≥ 0 dB", f"{fmt(m6['stoi'], 3)}, {fmt(m6['si_sdr'], 2)} dB",
                  verdict(m6["stoi"] >= 0.88 and m6["si_sdr"] >= 0)])
    for ours_k, mode in ((3.0, 3.2), (1.5, 1.2)):
        mine, c2 = sp(name, ours_k), sp("codec2", mode)
        if mine and c2:
            t.append([f"{ours_k:g} kbps speech: PESQ-WB and STOI above Codec2 {int(mode * 1000)}",
                      f"{fmt(mine['pesq_wb'], 2)} / {fmt(mine['stoi'], 3)} vs {fmt(c2['pesq_wb'], 2)} / "
                      f"{fmt(c2['stoi'], 3)}", verdict(mine["pesq_wb"] > c2["pesq_wb"] and mine["stoi"] > c2["stoi"])])
    lv = max((m["level_db_worst"] for res in results.values() for m in res["means"] if m["system"] == name),
             default=float("nan"))
    t.append(["decoded level within 0.5 dB RMS of the input (every file)", f"worst |change| {fmt(lv, 2)} dB",
              verdict(lv <= 0.5)])
    t.append(["encode + decode ≥ 10× real time (2 cores)", f"{fmt(rtf, 1)}× (slowest set and rate)",
              verdict(rtf >= 10)])
    t.append(["file bitrate within 2 % of nominal (headers included)",
              (f"worst file {fmt(worst, 2)} % off (largest excess {fmt(over, 2)} %) "
              f"over {len(all_rows)} files × rates; "
              f"{saturated} more used all {codec.n_max} stages below their nominal rate"), verdict(worst <= 2)])
    ue = payload["usage_entropy"]
    t.append(["codebook usage entropy ≥ 90 % of max (speech test codes)",
              f"min {fmt(min(ue) * 100, 1)} %, mean {fmt(np.mean(ue) * 100, 1)} %", verdict(min(ue) >= 0.9)])
    lines += ["## Targets", "", *md_table(["target", "measured", "verdict"], t, "llr"), ""]
    if payload["seams"]:
        s = payload["seams"]
        lines += ["## Streaming", "",
                  (f"- seams: `{s['file']}` ({s['seconds']} s, {s['chunks']} chunks of {s['chunk_seconds']} s, "
                   "16 frames of overlap, one-hop cross-fade) "
                   f"decoded in chunks vs in one window: max |diff| {s['max_abs_diff']:.2e}, "
                   f"difference {s['diff_snr_db']:.1f} dB below the signal.")]
    if payload["memory"]:
        rows = [[k, v["encode_mb"], v["decode_mb"], v["kbps"], v["samples_ok"]] for k, v in payload["memory"].items()]
        lines += ["- peak memory through the CLI (`neurocodec encode/decode`, 16 kHz speech, 6 kbps):", "",
                  *md_table(["input", "encode peak RSS MB", "decode peak RSS MB", "file kbps", "length exact"], rows),
                  ""]
    lines += ["## Bad input (CLI)", "", *md_table(["input", "outcome"], payload["bad_inputs"], "ll"), ""]
    lines += ["Codebook usage entropy per codebook (fraction of log2 K): " + ", ".join(f"{v:.3f}" for v in ue), ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
