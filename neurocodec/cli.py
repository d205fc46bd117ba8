"""neurocodec command line: encode / decode / info / list / train / export / eval, for images
and audio (chosen by the input file, or by the codec a .nc file names).

Errors print one line ("neurocodec: error: ...") and exit with status 1 (2 for usage)."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path


def cmd_encode(a: argparse.Namespace) -> int:
    from neurocodec import api

    out = api.encode_file(a.input, a.output, codec=a.codec, quality=a.quality, refine_steps=a.refine_steps,
                          kbps=a.kbps, progress=not a.quiet, overwrite=a.force)
    d = api.info(out.read_bytes())
    if "seconds" in d:
        print(f"{out}: {d['bytes']} bytes, {d['kbps']:.3f} kbps over {d['seconds']:.2f} s")
    else:
        print(f"{out}: {d['bytes']} bytes, {d.get('bpp', 0):.4f} bpp")
    return 0


def cmd_decode(a: argparse.Namespace) -> int:
    from neurocodec import api

    out = api.decode_file(a.input, a.output, codec=a.codec, progress=not a.quiet, overwrite=a.force)
    d = api.info(Path(a.input).read_bytes())
    if "seconds" in d:
        sr, _, ch = d["shape"]
        print(f"{out}: {d['seconds']:.2f} s, {sr} Hz, {ch} channel(s)")
    else:
        print(f"{out}: {d['shape'][1]}x{d['shape'][0]}")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from neurocodec import api

    info = api.info(Path(a.input).read_bytes())
    if a.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>15}: {v}")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from neurocodec.runtime.registry import list_codecs

    codecs = list_codecs()
    if a.json:
        print(json.dumps([{k: m.get(k) for k in ("name", "id", "kind", "arch", "path")} for m in codecs]))
        return 0
    if not codecs:
        print("no codecs found")
    for m in codecs:
        star = " (default)" if m.get("default") else ""
        if m.get("kind") == "audio":
            cfg = m.get("model", {})
            per = 0.075 * (cfg.get("codebook_size", 1024) - 1).bit_length() * 320 / (
                cfg.get("patch", 1) * _prod(cfg.get("strides", [320])))
            rates = f"{per:g}..{per * cfg.get('n_codebooks', 1):g} kbps, default {m.get('default_kbps')}"
        else:
            q = len(m.get("model", {}).get("lmbdas", [])) or "?"
            rates = f"qualities 0..{q - 1 if isinstance(q, int) else q}"
        print(f"{m['name']:<14} id={m['id']:<4} {m['kind']:<6} {m.get('arch', ''):<11} {rates}{star}")
    return 0


def _prod(v) -> int:
    import math

    return math.prod(int(x) for x in v)


def train_audio(a: argparse.Namespace) -> int:
    from neurocodec.tools.audio.train import DEFAULT_MODEL, AudioTrainConfig, train

    cfg = AudioTrainConfig(data=list(a.data), out=a.out or f"runs/{a.codec}", steps=a.steps,
                           time_budget_min=a.time_budget or 0.0,
                           batch=a.batch or 16, lr=a.lr or 6e-4, device=a.device, threads=a.threads or 0,
                           seed=a.seed, init=a.init, model=dict(DEFAULT_MODEL))
    if a.weights:
        cfg.weights = [float(v) for v in a.weights.split(",")]
    path = train(cfg, resume=not a.restart)
    print(f"checkpoint: {path}")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    if a.init:  # a bad --init fails now, in one line, not after the data is loaded
        from neurocodec.runtime.torch_utils import load_checkpoint

        load_checkpoint(a.init)
    if a.codec.startswith("audio"):
        return train_audio(a)
    from neurocodec.tools.image.train import TrainConfig, train

    if len(a.data) != 1:
        raise ValueError("image training takes one --data folder")
    a.data = a.data[0]
    a.batch, a.lr = a.batch or 8, a.lr or 1e-4

    model = {"arch": a.codec}
    if a.lmbda:
        model["lmbdas"] = [float(v) for v in a.lmbda.split(",")]
    for k in ("N", "M"):
        if getattr(a, k):
            model[k] = getattr(a, k)
    cfg = TrainConfig(data=a.data, out=a.out or f"runs/{a.codec}", steps=a.steps,
                      time_budget_min=a.time_budget or 0.0, batch=a.batch,
                      crop=a.crop, lr=a.lr, device=a.device, threads=a.threads or 0, seed=a.seed, model=model,
                      init=a.init, fixed_quality=a.fixed_quality)
    path = train(cfg, resume=not a.restart)
    print(f"checkpoint: {path}")
    return 0


def _fresh_folder(path: str, force: bool) -> None:
    """An output folder must be new or empty, unless --force (files of ours there are replaced)."""
    p = Path(path)
    if p.exists() and (not p.is_dir() or any(p.iterdir())) and not force:
        raise FileExistsError(17, "exists and is not empty (use --force to write into it)", str(p))


def cmd_export(a: argparse.Namespace) -> int:
    from neurocodec.runtime.torch_utils import load_checkpoint

    state = load_checkpoint(a.checkpoint)
    _fresh_folder(a.out, a.force)
    if state["config"]["model"].get("arch", "").startswith("audio"):
        from neurocodec.tools.audio.export import export as export_audio

        data = a.prior_data or state["config"]["train"]["data"]
        out = export_audio(a.checkpoint, a.out, a.name, a.id, data, default=a.default,
                           default_kbps=a.default_kbps)
        print(f"codec {a.name!r} (id {a.id}) written to {out}")
        return 0
    from neurocodec.tools.image.export import export

    out = export(a.checkpoint, a.out, a.name, a.id, default_quality=a.default_quality, default=a.default)
    print(f"codec {a.name!r} (id {a.id}) written to {out}")
    return 0


def eval_audio(a: argparse.Namespace) -> int:
    from neurocodec.tools.audio.evaluate import evaluate

    kbps = tuple(float(v) for v in (a.kbps or "1.5,3,6").split(","))
    opus = () if a.no_anchors else (6.0, 12.0)
    res = evaluate(a.codec, a.data, a.out, kbps=kbps, opus_kbps=opus, limit=a.limit)
    cols = ("system", "nominal_kbps", "kbps", "si_sdr", "mel", "stoi", "pesq_wb", "encdec_rtf")
    print(" ".join(f"{c:>12}" for c in cols))
    for m in res["means"]:
        print(" ".join(f"{m[c]:>12.3f}" if isinstance(m.get(c), float) else f"{m.get(c, '')!s:>12}" for c in cols))
    print(f"results in {a.out}")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from neurocodec.runtime.registry import codec_meta

    _fresh_folder(a.out, a.force)

    if codec_meta(a.codec).get("kind") == "audio":
        return eval_audio(a)
    from neurocodec.tools.image.evaluate import evaluate

    qualities = [int(v) for v in a.qualities.split(",")] if a.qualities else None
    res = evaluate(a.codec, a.data, a.out, qualities=qualities, anchors=not a.no_anchors,
                   anchors_json=a.anchors_json, limit=a.limit)
    print(json.dumps({"bd_rate_pct": res.get("bd_rate_pct"), "curves": res.get("curves", {}).get(a.codec)}, indent=1))
    print(f"results in {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from weightzip.clitools import EPILOG, nonneg_int, positive_float, positive_int

    p = argparse.ArgumentParser(prog="neurocodec", description="Learned codecs with real bitstreams.", epilog=EPILOG)
    sub = p.add_subparsers(dest="cmd", required=True)
    force = "replace an existing output (without it, existing files are never overwritten)"

    e = sub.add_parser("encode", help="image or audio -> .nc")
    e.add_argument("input", help="image (PNG, JPEG, WebP) or audio (WAV, FLAC, ...; any rate and channels)")
    e.add_argument("-o", "--output", help="output .nc, or an existing folder (default: INPUT with .nc)")
    e.add_argument("--codec", help="codec name or folder (default: the default codec of the input's kind)")
    e.add_argument("--quality", type=nonneg_int, help="image quality index (see `neurocodec list`)")
    e.add_argument("--refine-steps", type=nonneg_int, default=0,
                   help="image: encoder-side latent refinement steps (>= 0)")
    e.add_argument("--kbps", type=positive_float,
                   help="audio: nominal bitrate of the whole file, headers included (default 6)")
    e.add_argument("-f", "--force", action="store_true", help=force)
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d = sub.add_parser("decode", help=".nc -> PNG (image) or WAV/FLAC (audio)",
                       epilog="The output defaults to INPUT's stem + .decoded.png / .decoded.wav (p.nc -> "
                       "p.decoded.png), so the original p.png is never overwritten. Images: the output's "
                       "suffix picks a lossless format (.png, .tif, .bmp, .ppm/.pgm, lossless .webp); audio: "
                       ".wav or .flac, in the input's sample format.")
    d.add_argument("input")
    d.add_argument("-o", "--output", help="output file or existing folder (default: INPUT.decoded.png / .wav)")
    d.add_argument("--codec", help="codec folder, for codecs outside the search path")
    d.add_argument("-f", "--force", action="store_true", help=force)
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    i = sub.add_parser("info", help="show a .nc header (checksums verified)")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    ls = sub.add_parser("list", help="list the codecs found (shipped and on NEUROCODEC_PATH)")
    ls.add_argument("--json", action="store_true")

    t = sub.add_parser("train", help="train a codec (resumes from OUT/checkpoint.pt)")
    t.add_argument("--codec", required=True, help="model architecture from the registry: hyperprior, shallow, audio-rvq")
    t.add_argument("--data", required=True, nargs="+",
                   help="training folder (images: one, never Kodak; audio: one or more, e.g. speech/train music/train)")
    t.add_argument("--weights", default="", help="audio: comma-separated sampling share per --data folder")
    t.add_argument("--out", help="run folder: checkpoint.pt, train.log (default: runs/CODEC)")
    t.add_argument("--lmbda", default="", help="comma-separated λ per quality (default: 6 points, ~0.1-1 bpp)")
    t.add_argument("--steps", type=positive_int, default=100_000)
    t.add_argument("--time-budget", type=positive_float, default=None, help="minutes; stop and checkpoint after it")
    t.add_argument("--batch", type=positive_int, help="default: 8 (image), 16 (audio)")
    t.add_argument("--crop", type=positive_int, default=256)
    t.add_argument("--lr", type=positive_float, help="default: 1e-4 (image), 6e-4 (audio)")
    t.add_argument("--N", type=positive_int)
    t.add_argument("--M", type=positive_int)
    t.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    t.add_argument("--threads", type=positive_int, help="torch CPU threads, >= 1 (default: torch's choice)")
    t.add_argument("--seed", type=nonneg_int, default=0)
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--init", default="", help="start from this checkpoint's weights (new optimiser)")
    t.add_argument("--fixed-quality", type=int, default=-1, help="train this quality index only")

    x = sub.add_parser("export", help="training checkpoint -> codec folder")
    x.add_argument("checkpoint")
    x.add_argument("--out", required=True, help="codec folder (new or empty, unless --force)")
    x.add_argument("--name", required=True)
    x.add_argument("--id", type=positive_int, required=True, help="stable numeric id written into .nc files")
    x.add_argument("--default-quality", type=nonneg_int)
    x.add_argument("--default", action="store_true", help="make it the default codec of its kind")
    x.add_argument("--default-kbps", type=positive_float, default=6.0, help="audio: default nominal bitrate")
    x.add_argument("--prior-data", nargs="+", help="audio: folders whose codes fit the index priors "
                   "(default: the training folders)")
    x.add_argument("-f", "--force", action="store_true", help="write into a non-empty --out folder")

    v = sub.add_parser("eval", help="image: bpp/PSNR/MS-SSIM with Pillow anchors; audio: kbps/SI-SDR/mel/STOI/PESQ with Opus")
    v.add_argument("--codec", required=True)
    v.add_argument("--data", required=True)
    v.add_argument("--out", default="eval", help="results folder (new or empty, unless --force)")
    v.add_argument("--qualities", default="", help="comma-separated subset")
    v.add_argument("--limit", type=positive_int, help="first N images only")
    v.add_argument("--no-anchors", action="store_true", help="skip JPEG/WebP/AVIF (images) or Opus (audio)")
    v.add_argument("--kbps", help="audio: comma-separated nominal rates (default 1.5,3,6)")
    v.add_argument("--anchors-json", help="published curves (default: ../shared/anchors/kodak_rd.json if present)")
    v.add_argument("-f", "--force", action="store_true", help="write into a non-empty --out folder")
    return p


COMMANDS = {"encode": cmd_encode, "decode": cmd_decode, "info": cmd_info, "list": cmd_list,
            "train": cmd_train, "export": cmd_export, "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    from weightzip.clitools import run

    a = build_parser().parse_args(argv)

    def command() -> int:
        with warnings.catch_warnings():
            # Loading a codec imports CompressAI's package __init__, hence torch_geometric, which
            # calls the deprecated torch.jit.script: a 2-line FutureWarning on every encode/decode.
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            return COMMANDS[a.cmd](a)

    return run("neurocodec", command, (OSError, ValueError, LookupError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
