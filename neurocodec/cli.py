"""neurocodec command line: encode / decode / info / list / train / export / eval.

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


def cmd_encode(a: argparse.Namespace) -> int:
    from . import api
    from .bitstream import write_atomic
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


def cmd_decode(a: argparse.Namespace) -> int:
    from . import api
    from .image.io import write_png

    data = Path(a.input).read_bytes()
    out = _output_path(a, ".png")
    img = api.decode(data, codec=a.codec)
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
        q = len(m.get("model", {}).get("lmbdas", [])) or "?"
        star = " (default)" if m.get("default") else ""
        print(f"{m['name']:<14} id={m['id']:<4} {m['kind']:<6} {m.get('arch', ''):<11} qualities 0..{q - 1 if isinstance(q, int) else q}{star}")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from .image.train import TrainConfig, train

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
    from .image.export import export

    out = export(a.checkpoint, a.out, a.name, a.id, default_quality=a.default_quality, default=a.default)
    print(f"codec {a.name!r} (id {a.id}) written to {out}")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
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

    e = sub.add_parser("encode", help="image -> .nc")
    e.add_argument("input")
    e.add_argument("-o", "--output", help="output .nc (default: INPUT with .nc)")
    e.add_argument("--codec", help="codec name or folder (default: the default image codec)")
    e.add_argument("--quality", type=int, help="quality index (see `neurocodec list`)")
    e.add_argument("--refine-steps", type=int, default=0, help="encoder-side latent refinement steps")
    d = sub.add_parser("decode", help=".nc -> PNG")
    d.add_argument("input")
    d.add_argument("-o", "--output", help="output PNG (default: INPUT with .png)")
    d.add_argument("--codec", help="codec folder, for codecs outside the search path")
    i = sub.add_parser("info", help="show a .nc header (checksums verified)")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    ls = sub.add_parser("list", help="list the codecs found (shipped and on NEUROCODEC_PATH)")
    ls.add_argument("--json", action="store_true")

    t = sub.add_parser("train", help="train an image codec (resumes from OUT/checkpoint.pt)")
    t.add_argument("--codec", required=True, help="model architecture from the registry: hyperprior, shallow")
    t.add_argument("--data", required=True, help="folder of training images (never Kodak)")
    t.add_argument("--out", default="runs/image", help="run folder: checkpoint.pt, train.log")
    t.add_argument("--lmbda", default="", help="comma-separated λ per quality (default: 6 points, ~0.1-1 bpp)")
    t.add_argument("--steps", type=int, default=100_000)
    t.add_argument("--time-budget", type=float, default=0.0, help="minutes; stop and checkpoint after it")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--crop", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-4)
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
    x.add_argument("--default", action="store_true", help="make it the default image codec")

    v = sub.add_parser("eval", help="bpp / PSNR / MS-SSIM on a folder, RD plot with Pillow anchors")
    v.add_argument("--codec", required=True)
    v.add_argument("--data", required=True)
    v.add_argument("--out", default="eval")
    v.add_argument("--qualities", default="", help="comma-separated subset")
    v.add_argument("--limit", type=int, help="first N images only")
    v.add_argument("--no-anchors", action="store_true", help="skip JPEG/WebP/AVIF")
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
