"""neurocodec command line: encode / decode / info / list / train / export / eval, for images
and audio (chosen by the input file, or by the codec a .nc file names).

Errors print one line ("neurocodec: error: ...") and exit with status 1 (2 for usage)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path


def _output_path(a: argparse.Namespace, suffix: str) -> Path:
    """-o, or INPUT with `suffix`; never the input file itself (x.png holding .nc bytes
    would otherwise be decoded over itself)."""
    out = Path(a.output) if a.output else Path(a.input).with_suffix(suffix)
    if out.exists() and Path(a.input).exists() and os.path.samefile(out, a.input):
        raise ValueError(f"{out}: the output would overwrite the input (choose another name with -o)")
    return out


def _is_audio(path: str) -> bool:
    from .audio.io import is_audio_path

    return is_audio_path(path)


def cmd_encode(a: argparse.Namespace) -> int:
    from . import api
    from .bitstream import write_atomic

    if _is_audio(a.input):
        return encode_audio(a)
    if a.kbps is not None:
        raise ValueError("--kbps is for audio input (.wav, .flac, ...)")
    from .image.io import read_image

    rgb, channels = read_image(a.input)
    img = rgb[:, :, 0] if channels == 1 else rgb
    out = _output_path(a, ".nc")
    data = api.encode(img, codec=a.codec, quality=a.quality, refine_steps=a.refine_steps)
    if channels == 4:  # after encoding: a failed encode prints only its one error line
        print("neurocodec: warning: alpha channel dropped (the image codecs code RGB)", file=sys.stderr)
    write_atomic(out, data)
    h, w = rgb.shape[:2]
    print(f"{out}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp")
    return 0


def encode_audio(a: argparse.Namespace) -> int:
    from .audio.codec import encode_file
    from .audio.io import info
    from .bitstream import write_atomic
    from .registry import default_codec, load_codec

    if a.quality is not None or a.refine_steps:
        raise ValueError("--quality and --refine-steps are for images; audio takes --kbps")
    codec = load_codec(a.codec or default_codec("audio"))
    if codec.kind != "audio":
        raise ValueError(f"codec {codec.name!r} is an {codec.kind} codec, not an audio codec")
    sr, n, _ = info(a.input)
    out = _output_path(a, ".nc")
    data = encode_file(codec, a.input, kbps=a.kbps, progress=not a.quiet)
    write_atomic(out, data)
    print(f"{out}: {len(data)} bytes, {8 * len(data) / (n / sr) / 1000:.3f} kbps over {n / sr:.2f} s")
    return 0


def cmd_decode(a: argparse.Namespace) -> int:
    from . import api
    from .bitstream import NcFile

    data = Path(a.input).read_bytes()
    nc = NcFile.from_bytes(data)
    codec = api.codec_for(nc, a.codec)
    if codec.kind == "audio":
        from .audio.codec import decode_to_file

        out = _output_path(a, ".wav")
        sr, n, ch = decode_to_file(codec, nc, out, progress=not a.quiet)
        print(f"{out}: {n / sr:.2f} s, {sr} Hz, {ch} channel(s)")
        return 0
    from .image.io import write_png

    out = _output_path(a, ".png")
    img = codec.decode_nc(nc)
    write_png(out, img)
    print(f"{out}: {img.shape[1]}x{img.shape[0]}")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from . import api

    info = api.info(Path(a.input).read_bytes())
    if a.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>15}: {v}")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from .registry import list_codecs

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
    from .audio.train import DEFAULT_MODEL, AudioTrainConfig, train

    cfg = AudioTrainConfig(data=list(a.data), out=a.out, steps=a.steps, time_budget_min=a.time_budget,
                           batch=a.batch or 16, lr=a.lr or 6e-4, device=a.device, threads=a.threads,
                           seed=a.seed, init=a.init, model=dict(DEFAULT_MODEL))
    if a.weights:
        cfg.weights = [float(v) for v in a.weights.split(",")]
    path = train(cfg, resume=not a.restart)
    print(f"checkpoint: {path}")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    if a.codec.startswith("audio"):
        return train_audio(a)
    from .image.train import TrainConfig, train

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
    cfg = TrainConfig(data=a.data, out=a.out, steps=a.steps, time_budget_min=a.time_budget, batch=a.batch,
                      crop=a.crop, lr=a.lr, device=a.device, threads=a.threads, seed=a.seed, model=model,
                      init=a.init, fixed_quality=a.fixed_quality)
    path = train(cfg, resume=not a.restart)
    print(f"checkpoint: {path}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    import torch

    state = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    if state["config"]["model"].get("arch", "").startswith("audio"):
        from .audio.export import export as export_audio

        data = a.prior_data or state["config"]["train"]["data"]
        out = export_audio(a.checkpoint, a.out, a.name, a.id, data, default=a.default,
                           default_kbps=a.default_kbps)
        print(f"codec {a.name!r} (id {a.id}) written to {out}")
        return 0
    from .image.export import export

    out = export(a.checkpoint, a.out, a.name, a.id, default_quality=a.default_quality, default=a.default)
    print(f"codec {a.name!r} (id {a.id}) written to {out}")
    return 0


def eval_audio(a: argparse.Namespace) -> int:
    from .audio.evaluate import evaluate

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
    from .registry import codec_meta

    if codec_meta(a.codec).get("kind") == "audio":
        return eval_audio(a)
    from .image.evaluate import evaluate

    qualities = [int(v) for v in a.qualities.split(",")] if a.qualities else None
    res = evaluate(a.codec, a.data, a.out, qualities=qualities, anchors=not a.no_anchors,
                   anchors_json=a.anchors_json, limit=a.limit)
    print(json.dumps({"bd_rate_pct": res.get("bd_rate_pct"), "curves": res.get("curves", {}).get(a.codec)}, indent=1))
    print(f"results in {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neurocodec", description="Learned codecs with real bitstreams.")
    sub = p.add_subparsers(dest="cmd", required=True)

    e = sub.add_parser("encode", help="image or audio -> .nc")
    e.add_argument("input", help="image (PNG, JPEG, WebP) or audio (WAV, FLAC, ...; any rate and channels)")
    e.add_argument("-o", "--output", help="output .nc (default: INPUT with .nc)")
    e.add_argument("--codec", help="codec name or folder (default: the default codec of the input's kind)")
    e.add_argument("--quality", type=int, help="image quality index (see `neurocodec list`)")
    e.add_argument("--refine-steps", type=int, default=0, help="image: encoder-side latent refinement steps")
    e.add_argument("--kbps", type=float, help="audio: nominal bitrate of the whole file, headers included (default 6)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d = sub.add_parser("decode", help=".nc -> PNG (image) or WAV/FLAC (audio)")
    d.add_argument("input")
    d.add_argument("-o", "--output", help="output .png, or .wav/.flac for audio (default: INPUT with .png/.wav)")
    d.add_argument("--codec", help="codec folder, for codecs outside the search path")
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
    t.add_argument("--out", default="runs/image", help="run folder: checkpoint.pt, train.log")
    t.add_argument("--lmbda", default="", help="comma-separated λ per quality (default: 6 points, ~0.1-1 bpp)")
    t.add_argument("--steps", type=int, default=100_000)
    t.add_argument("--time-budget", type=float, default=0.0, help="minutes; stop and checkpoint after it")
    t.add_argument("--batch", type=int, default=0, help="default: 8 (image), 16 (audio)")
    t.add_argument("--crop", type=int, default=256)
    t.add_argument("--lr", type=float, default=0.0, help="default: 1e-4 (image), 6e-4 (audio)")
    t.add_argument("--N", type=int, default=0)
    t.add_argument("--M", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--init", default="", help="start from this checkpoint's weights (new optimiser)")
    t.add_argument("--fixed-quality", type=int, default=-1, help="train this quality index only")

    x = sub.add_parser("export", help="training checkpoint -> codec folder")
    x.add_argument("checkpoint")
    x.add_argument("--out", required=True)
    x.add_argument("--name", required=True)
    x.add_argument("--id", type=int, required=True, help="stable numeric id written into .nc files")
    x.add_argument("--default-quality", type=int)
    x.add_argument("--default", action="store_true", help="make it the default codec of its kind")
    x.add_argument("--default-kbps", type=float, default=6.0, help="audio: default nominal bitrate")
    x.add_argument("--prior-data", nargs="+", help="audio: folders whose codes fit the index priors "
                   "(default: the training folders)")

    v = sub.add_parser("eval", help="image: bpp/PSNR/MS-SSIM with Pillow anchors; audio: kbps/SI-SDR/mel/STOI/PESQ with Opus")
    v.add_argument("--codec", required=True)
    v.add_argument("--data", required=True)
    v.add_argument("--out", default="eval")
    v.add_argument("--qualities", default="", help="comma-separated subset")
    v.add_argument("--limit", type=int, help="first N images only")
    v.add_argument("--no-anchors", action="store_true", help="skip JPEG/WebP/AVIF (images) or Opus (audio)")
    v.add_argument("--kbps", help="audio: comma-separated nominal rates (default 1.5,3,6)")
    v.add_argument("--anchors-json", help="published curves (default: ../shared/anchors/kodak_rd.json if present)")
    return p


COMMANDS = {"encode": cmd_encode, "decode": cmd_decode, "info": cmd_info, "list": cmd_list,
            "train": cmd_train, "export": cmd_export, "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            # Loading a codec imports CompressAI's package __init__, hence torch_geometric, which
            # calls the deprecated torch.jit.script: a 2-line FutureWarning on every encode/decode.
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            return COMMANDS[a.cmd](a)
    except KeyboardInterrupt:
        print("neurocodec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except (OSError, ValueError, LookupError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
            msg = f"{e.filename}: {msg}"
        print(f"neurocodec: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
