"""The GPU kit's driver: train each shipped codec from its own weights for a share of one time
budget, validate it before and after on held-out data, and write the results under --out
(bench/gpu/README.md; train_all.sh installs the project first and then runs this).

For each codec (hyperprior, shallow, audio-rvq by default):
  1. checkpoint_from_codec() -> WORK/<codec>/init.pt (the shipped weights as a training checkpoint);
  2. validation of those weights on the held-out data (kit.py);
  3. training: the kind's make_config + train (neurocodec.tools.<kind>.train), init=init.pt, for its
     share of --budget-s (time_budget_min), capped so that the whole run ends by --deadline-s;
  4. validation of the trained weights, and OUT/<codec>.pt: the trained training checkpoint
     (config + model, no optimiser state; tensors of >= 4096 elements in float16 when the float32
     model would be over 15 MiB: the export rounds them to float16 anyway).
OUT/train_all.json (written after every step) holds the settings, timings, steps/s, losses and
the validations before/after with a verdict per codec; OUT/train_all.log the log, each run's
train.log included. At most 8 files, 16 MiB each, come back from the GPU machine: 5 are written.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import kit

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
CARRY = REPO / ".gpu_carry"  # what travels to the GPU machine besides the tracked files (README.md)
CODECS = ("hyperprior", "shallow", "audio-rvq")
SHARES = {"hyperprior": 0.35, "shallow": 0.35, "audio-rvq": 0.30}
# TrainConfig fields per kind and device; only fields the running TrainConfig has are passed.
DEFAULTS = {
    ("image", "cuda"): {"batch": 16, "crop": 256, "lr": 1e-4},
    ("audio", "cuda"): {"batch": 64, "segment_frames": 40, "lr": 3e-4},
    ("image", "cpu"): {"batch": 4, "crop": 128, "lr": 1e-4},
    ("audio", "cpu"): {"batch": 4, "segment_frames": 24, "lr": 3e-4},
}
FP32_LIMIT = 15 * 2**20  # a checkpoint's float32 model above this is written with float16 tensors
SLIM_MIN_NUMEL = 4096  # the exports' float16 rule (tools/*/export.py FP16_MIN_NUMEL)
RESERVE_S = {"image": 35.0, "audio": 20.0}  # time after a codec's training: validation, export, saving

log = logging.getLogger("gpu_kit")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True, help="results folder (on the GPU machine: $OUT)")
    ap.add_argument("--work", default="", help="scratch folder (default: a temporary one)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=360.0, help="training seconds, all codecs together")
    ap.add_argument("--deadline-s", type=float, default=520.0,
                    help="the whole run ends by then (counted from --t0): later codecs train less if needed")
    ap.add_argument("--t0", type=float, default=0.0, help="start time (epoch s) of the run (train_all.sh's)")
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument("--shares", default="", help="e.g. hyperprior=0.35,shallow=0.35,audio-rvq=0.3 (normalised)")
    ap.add_argument("--images", default="", help="image pack (train/ + val/, or one folder to split)")
    ap.add_argument("--speech", default="", help="speech pack")
    ap.add_argument("--music", default="", help="music pack (optional)")
    ap.add_argument("--audio-weights", default="0.8,0.2", help="speech,music sampling shares")
    ap.add_argument("--set", action="append", default=[], metavar="[CODEC:]KEY=VALUE",
                    help="a TrainConfig field for one codec (hyperprior:lr=2e-4) or every codec that has it")
    ap.add_argument("--warmup", type=float, default=0.1,
                    help="fraction of each run over which the learning rate ramps up from 0 (0: none)")
    ap.add_argument("--precision", default="bf16", help="image TrainConfig.precision on CUDA, if it has that field")
    ap.add_argument("--val-crop", type=int, help="image validation crop size (cuda 256, cpu 128)")
    ap.add_argument("--val-crops", type=int, help="image validation crops, model-based (cuda 32, cpu 8)")
    ap.add_argument("--real-val", type=int, help="of those, crops coded for real before/after (cuda 8, cpu 2; 0: none)")
    ap.add_argument("--val-files", type=int, help="held-out files per pack at most (cuda 16, cpu 4)")
    ap.add_argument("--val-seconds", type=float, help="audio validation segment (cuda 3, cpu 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    on_cuda = args.device.startswith("cuda")
    for key, gpu, cpu in (("val_crop", 256, 128), ("val_crops", 32, 8), ("real_val", 8, 2), ("val_files", 16, 4),
                          ("val_seconds", 3.0, 1.0)):
        if getattr(args, key) is None:
            setattr(args, key, gpu if on_cuda else cpu)
    return args


def setup_logging(out: Path) -> None:
    log.setLevel(logging.INFO)
    log.propagate = False  # the trainer resets the root logger to each run's train.log
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    for h in (logging.StreamHandler(sys.stdout), logging.FileHandler(out / "train_all.log")):
        h.setFormatter(fmt)
        log.addHandler(h)


class Results:
    """train_all.json, rewritten after every step (a run stopped at its time limit keeps what it did)."""

    def __init__(self, path: Path, head: dict):
        self.path, self.data = path, {**head, "codecs": {}}
        self.save()

    def codec(self, name: str) -> dict:
        return self.data["codecs"].setdefault(name, {})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)


def overrides(sets: list[str], codecs: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {c: {} for c in codecs}
    for s in sets:
        target, _, kv = s.rpartition(":") if ":" in s.split("=", 1)[0] else ("", "", s)
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"--set {s!r}: KEY=VALUE expected")
        for c in ([target] if target else codecs):
            if c not in out:
                raise SystemExit(f"--set {s!r}: {c!r} is not one of the codecs trained ({', '.join(codecs)})")
            out[c][key.replace("-", "_")] = value
    return out


def shares_of(spec: str, codecs: list[str]) -> dict[str, float]:
    sh = {c: SHARES.get(c, 1.0 / len(codecs)) for c in codecs}
    for item in filter(None, spec.split(",")):
        k, _, v = item.partition("=")
        if k not in sh:
            raise SystemExit(f"--shares: {k!r} is not one of the codecs trained")
        sh[k] = float(v)
    total = sum(sh.values())
    return {c: v / total for c, v in sh.items()}


def data_folder(given: str, name: str, *shared: str) -> Path | None:
    """The folder given, else the carried pack (.gpu_carry/packs/NAME), else shared/data in the
    checkout or beside it; None if there is none."""
    if given:
        p = Path(given)
        if not p.is_dir():
            raise SystemExit(f"{given}: no such folder")
        return p
    for p in (CARRY / "packs" / name, REPO.joinpath("shared", "data", *shared), SHARED.joinpath(*shared)):
        if p.is_dir():
            return p
    return None


@contextlib.contextmanager
def lr_warmup(mod, frac: float) -> Iterator[None]:
    """While training, the kind's TrainTask.lr_at ramps linearly from 0 over the first `frac` of
    the run. A fresh Adam's first steps move every weight by about lr, whatever its gradient:
    on trained weights that is a jolt (measured on the shipped audio codec, CPU: 2 steps at lr
    3e-4 took its validation mel loss from 3.09 to 4.97, at 6e-5 to 3.25; the shipped shallow
    codec's validation RD loss went from 2.49 to 2.89 in 3 steps at 1e-4, to 2.59 in 20 steps,
    to 2.56 in 20 steps with a 10-step ramp). Thousands of steps on the GPU are needed to gain."""
    from neurocodec.tools.trainer import TrainTask

    tasks = [c for c in vars(mod).values()
             if isinstance(c, type) and issubclass(c, TrainTask) and c is not TrainTask and "lr_at" in vars(c)]
    saved = {c: c.lr_at for c in tasks}
    if frac > 0:
        for c, f in saved.items():
            c.lr_at = lambda self, p, f=f: f(self, p) * min(1.0, p / frac)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for c, f in saved.items():
            c.lr_at = f  # type: ignore[method-assign]


def train_log_summary(path: Path) -> dict:
    """Loss EMA at the first and last logged steps of a run's train.log."""
    pts = [(int(m[1]), float(m[2])) for m in re.finditer(r"step (\d+) loss \S+ ema (\S+)", path.read_text())] \
        if path.is_file() else []
    return {"logged": len(pts), "first": pts[0] if pts else None, "last": pts[-1] if pts else None}


def save_trained(src: Path, dst: Path, data, extra: dict) -> dict:
    """The run's checkpoint without optimiser and random states, its training data recorded as
    `data`; float16 for big tensors when the float32 model is over FP32_LIMIT. Returns what
    was written."""
    from neurocodec.tools.checkpoints import load_checkpoint, save_checkpoint

    st = load_checkpoint(src)
    st["config"]["train"]["data"] = data  # (audio export fits its priors on these by default)
    model = {k: v.float() if v.is_floating_point() else v for k, v in st["model"].items()}
    fp32_bytes = sum(v.numel() * v.element_size() for v in model.values())
    slim = fp32_bytes > FP32_LIMIT
    if slim:
        model = {k: v.half() if v.is_floating_point() and v.numel() >= SLIM_MIN_NUMEL else v for k, v in model.items()}
    save_checkpoint(dst, {"config": st["config"], "model": model, "step": st["step"], "elapsed": st["elapsed"],
                          **extra, "gpu_kit": {"float16_tensors": slim}})
    return {"file": dst.name, "bytes": dst.stat().st_size, "float16_tensors": slim, "step": st["step"],
            "elapsed_s": round(st["elapsed"], 1)}


class Kit:
    def __init__(self, args: argparse.Namespace):
        import torch

        self.args, self.torch = args, torch
        self.t0 = args.t0 or time.time()
        self.out = Path(args.out)
        self.work = Path(args.work)
        self.device = torch.device(args.device)
        self.dev_kind = "cuda" if self.device.type == "cuda" else "cpu"
        self.codecs = [c for c in args.codecs.split(",") if c]
        self.shares = shares_of(args.shares, self.codecs)
        self.sets = overrides(args.set, self.codecs)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        import neurocodec

        env = {"python": sys.version.split()[0], "torch": torch.__version__, "neurocodec": neurocodec.__version__,
               "neurocodec_path": str(Path(neurocodec.__file__).parent), "device": str(self.device),
               "gpu": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
               "cpu_threads": torch.get_num_threads(), "install": os.environ.get("GPU_KIT_INSTALL", "")}
        self.results = Results(self.out / "train_all.json",
                               {"args": vars(args), "env": env, "shares": self.shares, "started": time.ctime(self.t0)})
        log.info("env %s", json.dumps(env))
        self.data = {"images": data_folder(args.images, "images", "images", "train"),
                     "speech": data_folder(args.speech, "speech", "audio", "speech"),
                     "music": data_folder(args.music, "music", "audio", "music")}
        log.info("data %s", {k: str(v) for k, v in self.data.items()})
        self.splits: dict = {}
        self.sources: dict[str, Path] = {}

    def elapsed(self) -> float:
        return time.time() - self.t0

    # -- data -------------------------------------------------------------------------------------
    def split(self, name: str, kind: str) -> tuple[Path, list[Path]]:
        if name not in self.splits:
            src = self.data[name]
            if src is None:
                raise FileNotFoundError(f"no {name} data (--{name}, or ../shared/data)")
            train, val, source, how = kit.split(kind, src, self.work / "data" / name, self.args.val_files)
            log.info("%s: %s; validation on %d files", name, how, len(val))
            self.splits[name] = (train, val)
            self.sources[str(train)] = source
        return self.splits[name]

    def source_paths(self, data: list[str]) -> list[str]:
        """The training folders as the checkpoint records them: the packs' own train folders
        (not the kit's split links), relative to the repository when inside it."""
        out = []
        for d in data:
            p = Path(self.sources.get(d, d)).resolve()
            out.append(str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p))
        return out

    # -- one codec --------------------------------------------------------------------------------
    def budget_s(self, name: str, kind: str) -> float:
        share = self.shares[name] * self.args.budget_s
        rest = self.codecs[self.codecs.index(name) + 1:]
        later = sum(RESERVE_S[self.kind_of(c)] + min(15.0, self.shares[c] * self.args.budget_s) for c in rest)
        room = self.args.deadline_s - self.elapsed() - RESERVE_S[kind] - later
        return max(5.0, min(share, room))

    @staticmethod
    def kind_of(name: str) -> str:
        from neurocodec.runtime.registry import codec_meta

        return str(codec_meta(name)["kind"])

    def train_opts(self, name: str, kind: str, cfg_cls: type, init: Path, budget_s: float) -> dict:
        fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
        opts: dict = {**DEFAULTS[(kind, self.dev_kind)],
                      "out": str(self.work / name / "run"), "init": str(init), "steps": 10**9,
                      "time_budget_min": budget_s / 60, "device": str(self.device), "seed": self.args.seed,
                      "val_every": 10**9, "ckpt_every_min": 10**6}
        if kind == "image":
            opts["val_fraction"] = 0.01
            if self.device.type == "cuda" and "precision" in fields:
                opts["precision"] = self.args.precision
        else:
            opts["val_files"] = 0  # validation is kit.py's, on the held-out files
        opts.update(self.sets[name])
        dropped = sorted(k for k in opts if k not in fields)
        if dropped:
            log.info("%s: TrainConfig has no %s: not passed", name, dropped)
        return {k: v for k, v in opts.items() if k in fields}

    def run_codec(self, name: str) -> None:
        torch = self.torch
        from neurocodec.runtime.registry import build_model, load_codec
        from neurocodec.tools.checkpoints import load_checkpoint
        from neurocodec.tools.from_codec import save_checkpoint_from_codec

        res = self.results.codec(name)
        kind = self.kind_of(name)
        t = time.time()
        (self.work / name).mkdir(parents=True, exist_ok=True)
        init = save_checkpoint_from_codec(name, self.work / name / "init.pt", overwrite=True)
        res["init"] = {"seconds": round(time.time() - t, 2)}
        st = load_checkpoint(init)
        model_cfg = st["config"]["model"]

        # held-out data and the validation before
        t = time.time()
        if kind == "image":
            train_dir, val = self.split("images", kind)
            crop = kit.fit_crop(val, self.args.val_crop)
            crops = kit.image_val_crops(val, crop, self.args.val_crops)
            data = [str(train_dir)]
            res["val_data"] = {"crops": len(crops), "crop": crop, "files": len(val)}
        else:
            sets, data = {}, []
            for folder in ("speech", "music"):
                if self.data[folder] is None and folder == "music":
                    continue
                train_dir, val = self.split(folder, kind)
                sets[folder] = kit.audio_val_segments(val, model_cfg["sample_rate"],
                                                      model_cfg["patch"] * math.prod(model_cfg["strides"]),
                                                      self.args.val_seconds)
                data.append(str(train_dir))
            res["val_data"] = {k: len(v) for k, v in sets.items()}

        def validate(state: dict, codec=None) -> dict:
            model = build_model(state["config"]["model"]["arch"], state["config"]["model"])
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
            model.to(self.device)
            if kind == "audio":
                return {"model": kit.audio_model_val(model, sets, self.device)}
            v = {"model": kit.image_model_val(model, crops, self.device)}
            if codec is not None and self.args.real_val > 0:
                v["real"] = kit.image_real_val(codec, crops[:self.args.real_val])
            return v

        res["before"] = validate(st, load_codec(name) if kind == "image" else None)
        res["before"]["seconds"] = round(time.time() - t, 1)
        log.info("%s before: %s", name, _short(res["before"]))
        self.results.save()

        # training
        mod = importlib.import_module(f"neurocodec.tools.{kind}.train")
        budget = self.budget_s(name, kind)
        opts = self.train_opts(name, kind, mod.TrainConfig, init, budget)
        if kind == "audio" and len(data) > 1:
            opts["weights"] = self.args.audio_weights
        if kind == "image":
            opts["crop"] = kit.fit_crop(kit.list_files("image", Path(data[0]))[:64], int(opts.get("crop", 256)))
        cfg = mod.make_config(st["config"]["model"]["arch"], data, **opts)
        res["train"] = {"budget_s": round(budget, 1),
                        "share_budget_s": round(self.shares[name] * self.args.budget_s, 1),
                        "options": opts, "config": dataclasses.asdict(cfg)}
        self.results.save()
        shown = ("batch", "crop", "segment_frames", "lr", "precision")
        log.info("%s: training %.0f s on %s (%s, warmup %.0f %%)", name, budget, self.device,
                 ", ".join(f"{k}={opts[k]}" for k in shown if k in opts), 100 * self.args.warmup)
        t = time.time()
        with lr_warmup(mod, self.args.warmup):
            ckpt = mod.train(cfg, resume=False)
        wall = time.time() - t
        trained = load_checkpoint(ckpt)
        run_log = Path(cfg.out) / "train.log"
        res["train"].update({"wall_s": round(wall, 1), "steps": trained["step"],
                             "train_s": round(trained["elapsed"], 1),
                             "steps_per_s": round(trained["step"] / max(trained["elapsed"], 1e-9), 3),
                             "loss_ema": train_log_summary(run_log)})
        log.info("%s: %d steps in %.0f s (%.2f steps/s; %.0f s with data loading and the last validation)",
                 name, trained["step"], trained["elapsed"], res["train"]["steps_per_s"], wall)
        with open(self.out / "train_all.log", "a") as f:
            f.write(f"---- {name}: {run_log}\n{run_log.read_text() if run_log.is_file() else ''}---- end {name}\n")
        self.results.save()

        # validation after, the checkpoint to bring back
        t = time.time()
        codec = None
        if kind == "image" and self.args.real_val > 0:
            from neurocodec.tools.image.export import export

            folder = export(ckpt, self.work / name / "export", f"{name}-gpu", 65000 + self.codecs.index(name))
            codec = load_codec(folder)
        res["after"] = validate(trained, codec)
        res["after"]["seconds"] = round(time.time() - t, 1)
        res["verdict"] = (kit.compare_image if kind == "image" else kit.compare_audio)(res["before"], res["after"])
        log.info("%s after: %s", name, _short(res["after"]))
        log.info("%s verdict: %s", name, json.dumps(res["verdict"]))
        sources = self.source_paths(data)
        res["checkpoint"] = save_trained(ckpt, self.out / f"{name}.pt", sources if kind == "audio" else sources[0],
                                         {"from_codec": st.get("from_codec", {"name": name})})
        self.results.save()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def run(self) -> int:
        failed = 0
        for name in self.codecs:
            t = time.time()
            try:
                self.run_codec(name)
            except Exception as e:  # noqa: BLE001 - one codec's failure must not cost the others
                failed += 1
                self.results.codec(name)["error"] = f"{type(e).__name__}: {e}"
                log.error("%s failed: %s\n%s", name, e, traceback.format_exc())
            self.results.codec(name)["wall_s"] = round(time.time() - t, 1)
            self.results.save()
        self.results.data["total_s"] = round(self.elapsed(), 1)
        files = sorted(p for p in self.out.rglob("*") if p.is_file())
        self.results.data["out_files"] = {str(p.relative_to(self.out)): p.stat().st_size for p in files}
        self.results.save()
        big = [p.name for p in files if p.stat().st_size > 16 * 2**20]
        if len(files) > 8 or big:
            log.error("OUT holds %d files (at most 8 come back), over 16 MiB: %s", len(files), big)
            failed += 1
        def outcome(r: dict) -> str:
            return "FAILED" if "error" in r else "improved" if r.get("verdict", {}).get("improved") else "not improved"

        log.info("done in %.0f s: %s", self.elapsed(),
                 ", ".join(f"{n} {outcome(r)}" for n, r in self.results.data["codecs"].items()))
        return 1 if failed else 0


def _short(v: dict) -> str:
    m = v["model"]
    if "rd_mean" in m:
        s = f"rd_mean {m['rd_mean']} " + " ".join(f"q{q}:{r['bpp']:.3f}bpp/{r['psnr']:.2f}dB"
                                                 for q, r in m["per_quality"].items())
        if "real" in v:
            s += " | real " + " ".join(f"q{q}:{r['bpp']:.3f}/{r['psnr']:.2f}"
                                       for q, r in v["real"]["per_quality"].items())
        return s
    return f"mel_mean {m['mel_mean']} " + " ".join(
        f"{name}:" + ",".join(f"{n}cb {r['mel']:.3f}/{r['snr_db']:.1f}dB" for n, r in per.items())
        for name, per in m["per_set"].items())


class NoBars:
    """stderr without progress-bar refreshes (writes holding a carriage return): the trainer's
    bar refreshes every step, which would bury the log in the GPU machine's output tail."""

    def __init__(self, f):
        self._f = f

    def write(self, s: str) -> int:
        return len(s) if "\r" in s else self._f.write(s)

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not sys.stderr.isatty() and not os.environ.get("GPU_KIT_BARS"):
        sys.stderr = NoBars(sys.stderr)  # type: ignore[assignment]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(out)
    tmp = None
    if not args.work:
        import tempfile

        tmp = args.work = tempfile.mkdtemp(prefix="gpu_kit_")
    try:
        return Kit(args).run()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
