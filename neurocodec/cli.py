"""neurocodec command line: encode / decode / info / list / train / export / eval.

The CLI knows no codec kind: it calls the API (encode/decode/info), the registry (list) and
the kinds' tools (train/export/eval). Kind-specific flags come from the kind classes' option
tables (Codec.options), and the kind that handles a command is the one the API or registry
picks (by the input, the file's codec id, the model architecture or the codec).

Errors print one line ("neurocodec: error: ...") and exit with status 1 (2 for usage)."""
from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

FORCE_HELP = "replace an existing output (without it, existing files are never overwritten)"


def kind_options(a: argparse.Namespace, command: str) -> dict[str, Any]:
    """The kind options of command given on the command line (None = not given)."""
    from neurocodec.runtime.registry import kind_classes

    names = {o.name for cls in kind_classes() for o in cls.options.get(command, ()) if o.cli}
    return {n: getattr(a, n) for n in sorted(names) if getattr(a, n, None) is not None}


def cmd_encode(a: argparse.Namespace) -> int:
    from neurocodec import api

    out = api.encode_file(a.input, a.output, codec=a.codec, progress=not a.quiet, overwrite=a.force,
                          **kind_options(a, "encode"))
    d = api.info(out.read_bytes())
    print(f"{out}: {_kind_of(d).encoded_summary(d)}")
    return 0


def cmd_decode(a: argparse.Namespace) -> int:
    from neurocodec import api

    out = api.decode_file(a.input, a.output, codec=a.codec, progress=not a.quiet, overwrite=a.force)
    d = api.info(Path(a.input).read_bytes())
    print(f"{out}: {_kind_of(d).decoded_summary(d)}")
    return 0


def _kind_of(info: dict) -> Any:
    """The kind class of the codec a described file names."""
    from neurocodec.runtime.registry import kind_class, meta_by_id

    return kind_class(str(meta_by_id(info["codec_id"]).get("kind", "")))


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
    from neurocodec.runtime.registry import CodecNotFound, kind_class, list_codecs

    codecs = list_codecs()
    if a.json:
        print(json.dumps([{k: m.get(k) for k in ("name", "id", "kind", "arch", "path")} for m in codecs]))
        return 0
    if not codecs:
        print("no codecs found")
    for m in codecs:
        star = " (default)" if m.get("default") else ""
        try:
            rates = kind_class(str(m.get("kind"))).summary(m)
        except CodecNotFound:
            rates = "(unknown kind)"
        print(f"{m['name']:<14} id={m['id']:<4} {m.get('kind', '?'):<8} {m.get('arch', ''):<11} {rates}{star}")
    return 0


TRAIN_COMMON = ("out", "steps", "time_budget_min", "batch", "lr", "device", "threads", "seed", "init")


def cmd_train(a: argparse.Namespace) -> int:
    from neurocodec import tools
    from neurocodec.runtime.registry import kind_of_arch
    from neurocodec.tools.trainer import limit_steps

    if a.init:  # a bad --init fails now, in one line, not after the data is loaded
        from neurocodec.tools.checkpoints import load_checkpoint

        load_checkpoint(a.init)
    cls = kind_of_arch(a.codec)
    opts = cls.check_options(kind_options(a, "train"), "train")
    common = {k: getattr(a, k) for k in TRAIN_COMMON if getattr(a, k) is not None}
    with limit_steps(a.max_steps):
        path = tools.for_kind(cls).train(a.codec, a.data, resume=not a.restart, **common, **opts)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from the one writer
        print(f"checkpoint: {path}")
    return 0


def _fresh_folder(path: str, force: bool) -> None:
    """An output folder must be new or empty, unless --force (files of ours there are replaced)."""
    p = Path(path)
    if p.exists() and (not p.is_dir() or any(p.iterdir())) and not force:
        raise FileExistsError(17, "exists and is not empty (use --force to write into it)", str(p))


def cmd_export(a: argparse.Namespace) -> int:
    from neurocodec import tools
    from neurocodec.runtime.registry import kind_of_arch
    from neurocodec.tools.checkpoints import load_checkpoint

    state = load_checkpoint(a.checkpoint)
    _fresh_folder(a.out, a.force)
    cls = kind_of_arch(str(state["config"]["model"].get("arch", "")))
    opts = cls.check_options(kind_options(a, "export"), "export")
    out = tools.for_kind(cls).export(a.checkpoint, a.out, a.name, a.id, default=a.default, **opts)
    print(f"codec {a.name!r} (id {a.id}) written to {out}")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from neurocodec import tools
    from neurocodec.runtime.registry import codec_meta, kind_class

    cls = kind_class(str(codec_meta(a.codec).get("kind", "")))
    opts = cls.check_options(kind_options(a, "eval"), "eval")
    _fresh_folder(a.out, a.force)
    print(tools.for_kind(cls).evaluate(a.codec, a.data, a.out, limit=a.limit, anchors=not a.no_anchors, **opts))
    print(f"results in {a.out}")
    return 0


def add_kind_options(p: argparse.ArgumentParser, command: str) -> None:
    """Every kind's options of command, once each (kinds may share one, e.g. kbps)."""
    from neurocodec.runtime.registry import kind_classes

    seen: set[str] = set()
    for cls in kind_classes():
        for o in cls.options.get(command, ()):
            if o.cli and o.name not in seen:
                seen.add(o.name)
                p.add_argument(o.cli_flag, dest=o.name, type=o.type, nargs=o.nargs, help=o.help)


def build_parser() -> argparse.ArgumentParser:
    from neurocodec.runtime.registry import kind_classes, model_names
    from weightzip.clitools import EPILOG, nonneg_int, positive_float, positive_int

    kinds = kind_classes()
    inputs = "; ".join(f"{c.kind}: {c.input_hint}" for c in kinds)
    p = argparse.ArgumentParser(prog="neurocodec", description="Learned codecs with real bitstreams.", epilog=EPILOG)
    sub = p.add_subparsers(dest="cmd", required=True)

    e = sub.add_parser("encode", help="image or audio -> .nc")
    e.add_argument("input", help=f"the file to encode ({inputs})")
    e.add_argument("-o", "--output", help="output .nc, or an existing folder (default: INPUT with .nc)")
    e.add_argument("--codec", help="codec name or folder (default: the default codec of the input's kind)")
    add_kind_options(e, "encode")
    e.add_argument("-f", "--force", action="store_true", help=FORCE_HELP)
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    outs = ", ".join(f"{c.kind}: INPUT.decoded{c.output_suffix}" for c in kinds)
    d = sub.add_parser("decode", help=".nc -> a file of its kind (PNG for images, WAV/FLAC for audio)",
                       epilog=f"The output defaults to INPUT's stem + .decoded + the kind's suffix ({outs}), so "
                       "the original is never overwritten. Images: the output's suffix picks a lossless "
                       "format (.png, .tif, .bmp, .ppm/.pgm, lossless .webp); audio: .wav or .flac, in the "
                       "input's sample format.")
    d.add_argument("input")
    d.add_argument("-o", "--output", help=f"output file or existing folder (default: {outs})")
    d.add_argument("--codec", help="codec folder, for codecs outside the search path")
    d.add_argument("-f", "--force", action="store_true", help=FORCE_HELP)
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    i = sub.add_parser("info", help="show a .nc header (checksums verified)")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    ls = sub.add_parser("list", help="list the codecs found (shipped and on NEUROCODEC_PATH)")
    ls.add_argument("--json", action="store_true")

    t = sub.add_parser("train", help="train a codec (resumes from OUT/checkpoint.pt)",
                       epilog="Defaults not shown here come from the kind's training config (neurocodec.tools).")
    t.add_argument("--codec", required=True, help=f"model architecture: {', '.join(model_names())}")
    t.add_argument("--data", required=True, nargs="+",
                   help="training folder(s) (images: one, never Kodak; audio: one or more, "
                   "e.g. speech/train music/train)")
    t.add_argument("--out", help="run folder: checkpoint.pt, train.log (default: runs/CODEC)")
    t.add_argument("--steps", type=positive_int)
    t.add_argument("--time-budget", dest="time_budget_min", type=positive_float,
                   help="minutes; stop and checkpoint after it")
    t.add_argument("--max-steps", type=positive_int,
                   help="stop and checkpoint after this many more steps (smoke runs, tests)")
    t.add_argument("--batch", type=positive_int)
    t.add_argument("--lr", type=positive_float)
    t.add_argument("--device", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    t.add_argument("--threads", type=positive_int, help="torch CPU threads, >= 1 (default: torch's choice)")
    t.add_argument("--seed", type=nonneg_int)
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--init", help="start from this checkpoint's weights (new optimiser)")
    add_kind_options(t, "train")

    x = sub.add_parser("export", help="training checkpoint -> codec folder")
    x.add_argument("checkpoint")
    x.add_argument("--out", required=True, help="codec folder (new or empty, unless --force)")
    x.add_argument("--name", required=True)
    x.add_argument("--id", type=positive_int, required=True, help="stable numeric id written into .nc files")
    x.add_argument("--default", action="store_true", help="make it the default codec of its kind")
    add_kind_options(x, "export")
    x.add_argument("-f", "--force", action="store_true", help="write into a non-empty --out folder")

    v = sub.add_parser("eval", help="rate/quality of a codec on a folder, against anchors "
                       "(images: bpp/PSNR/MS-SSIM vs JPEG/WebP/AVIF; audio: kbps/SI-SDR/mel/STOI/PESQ vs Opus)")
    v.add_argument("--codec", required=True)
    v.add_argument("--data", required=True)
    v.add_argument("--out", default="eval", help="results folder (new or empty, unless --force)")
    v.add_argument("--limit", type=positive_int, help="first N files only")
    v.add_argument("--no-anchors", action="store_true", help="skip the anchors (JPEG/WebP/AVIF, Opus)")
    add_kind_options(v, "eval")
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

    return run("neurocodec", command, (OSError, ValueError, LookupError, RuntimeError, ImportError))
