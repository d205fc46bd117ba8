"""CPU training speed of the image codecs, and what bf16 does to their rate-distortion.

Speed: one training step of neurocodec.tools.image.train.ImageTask (forward, the RD loss,
backward, gradient clipping, Adam step, the entropy bottleneck's aux step: what fit() does
per step in a one-process run) on a fixed batch, in Mpx/s and images/s from the process's
CPU time per step (one thread: robust to the other processes of a shared machine; wall
times are reported beside), for precision / memory-format / optimiser / compile variants,
each architecture and width. The variants are measured round-robin (one short burst each
per round) so that load drifts hit them alike; medians over the rounds.

Data: CropSampler.batch's cost per batch, and a short training run fed by it in-process vs
by a DataLoader worker process.

Precision: the shipped codecs' weights, one forward on the same held-out crops with the same
noise, fp32 vs bf16 (transforms only, and everything under autocast): loss, bpp, PSNR, and
the gradient's cosine to fp32's.

RD at equal wall time (--rd-minutes > 0): real training runs (neurocodec.tools.image.train
.train, one thread each, two at a time), then bpp / PSNR of each checkpoint on the held-out
training images (ImageTask's validation split, never Kodak) in eval mode (rounding), fp32.

    python bench/train_speed.py                         # speed + data + precision, 5-10 min
    python bench/train_speed.py --rd-minutes 5          # + 3 pairs of 5-minute runs (~17 min more)
    python bench/train_speed.py --update --skip speed,data,precision --rd-equal-steps
                                  # + bf16 runs of the fp32 runs' step counts (needs the RD rows)
    python bench/train_speed.py --render-only           # bench/results/train_speed.md from its .json

--update keeps the sections of the existing bench/results/train_speed.json that a run skips
(each section records its own command, date and git sha).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench._common import RESULTS_DIR, display_path, fmt, md_table, provenance, provenance_md, write_reports  # noqa: E402

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "train"

# name -> ImageTask settings (precision, channels_last, compile) + bench-only tweaks
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": dict(precision="fp32", channels_last=False),
    "fp32+cl": dict(precision="fp32", channels_last=True),
    "bf16-all": dict(precision="fp32", channels_last=False, autocast_all=True),
    "bf16": dict(precision="bf16", channels_last=False),
    "bf16+cl": dict(precision="bf16", channels_last=True),
    "bf16+cl+fused": dict(precision="bf16", channels_last=True, fused_adam=True),
    "bf16+cl+fused+compile": dict(precision="bf16", channels_last=True, fused_adam=True, compile=True),
}
VARIANT_NOTES = {
    "fp32": "float32, NCHW, Adam's default (for-loop) implementation: the old training path",
    "fp32+cl": "float32, channels_last model and batches",
    "bf16-all": "torch.autocast(cpu, bfloat16) around the whole model forward (entropy models included)",
    "bf16": "autocast of the transforms g_a/h_a/h_s/g_s only; entropy models, gains, loss in fp32",
    "bf16+cl": "bf16 transforms + channels_last",
    "bf16+cl+fused": "bf16+cl with Adam(fused=True): ImageTask's defaults on this CPU",
    "bf16+cl+fused+compile": "bf16+cl+fused with torch.compile of the forward + RD loss (compile=True)",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cache_images() -> None:
    """Decode each training image once per process (ImageTask reads its folder on every build)."""
    import neurocodec.tools.image.train as tr

    if getattr(tr.read_image, "_bench_cached", False):
        return
    orig, cache = tr.read_image, {}

    def cached(p, **kw):
        if p not in cache:
            cache[p] = orig(p, **kw)
        return cache[p]

    cached._bench_cached = True
    tr.read_image = cached


def make_task(arch: str, N: int, M: int, variant: str, batch: int, crop: int, seed: int = 0):
    import torch

    import neurocodec.tools.image.train as tr
    from neurocodec.tools.trainer import Run

    v = VARIANTS[variant]
    _cache_images()
    cfg = tr.make_config(arch, [str(TRAIN)], out="unused", batch=batch, crop=crop, N=N, M=M, device="cpu",
                         precision=v["precision"], channels_last=v["channels_last"], compile=v.get("compile", False))
    torch.manual_seed(seed)
    task = tr.ImageTask(cfg, Run(torch.device("cpu"), Path("unused"), None, None, seed))
    fused = v.get("fused_adam", False)  # ImageTask's optimisers are fused; the other variants are not
    for key, opt in task.optimizers.items():
        if bool(opt.defaults.get("fused")) != fused:
            task.optimizers[key] = torch.optim.Adam([p for g in opt.param_groups for p in g["params"]],
                                                    lr=opt.defaults["lr"], fused=fused or None)
    if v.get("autocast_all"):
        def loss_all(model, x, q):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x, q)
            n_px = x.shape[2] * x.shape[3]
            bits = sum(lik.float().clamp_min(1e-9).log2().neg().flatten(1).sum(1)
                       for lik in out["likelihoods"].values())
            bpp = bits / n_px
            mse = (out["x_hat"].float() - x).pow(2).flatten(1).mean(1)
            lmbda = torch.tensor(model.cfg.lmbdas)[q]
            return (lmbda * 255**2 * mse + bpp).mean(), {"bpp": bpp.detach(), "mse": mse.detach()}
        task._loss = loss_all
    task.model.train()
    return task


def train_step(task, batch) -> float:
    """One step as neurocodec.tools.trainer.fit does it (without its logging)."""
    import torch

    opt = task.optimizers["opt"]
    loss, _ = task.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if task.cfg.clip:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], task.cfg.clip)
    opt.step()
    task.after_step(1)
    return loss.item()


# --------------------------------------------------------------------------- speed

def bench_speed(a: argparse.Namespace) -> list[dict]:
    import torch

    configs = []
    for arch in a.archs:
        for size in a.sizes:
            N, M = size
            for variant in a.variants:
                configs.append({"arch": arch, "N": N, "M": M, "variant": variant})
    px = a.batch * a.crop * a.crop
    for c in configs:
        t0 = time.perf_counter()
        task = make_task(c["arch"], c["N"], c["M"], c["variant"], a.batch, a.crop)
        c["build_s"] = time.perf_counter() - t0
        torch.manual_seed(0)
        batch = task.batch()
        c["_task"], c["_batch"] = task, batch
        # warm-up: the first step (compilation for the compiled variant; oneDNN primitive
        # creation and allocator growth for all), then one more
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            train_step(task, batch)
            times.append(time.perf_counter() - t0)
        c["first_step_s"], c["second_step_s"] = times
        c["times"] = []
        log(f"built {c['arch']} {c['N']}/{c['M']} {c['variant']}: first step {times[0]:.2f} s, "
            f"second {times[1]:.2f} s")
        c["cpu_times"] = []
    for r in range(a.rounds):
        for c in configs:
            for _ in range(a.steps_per_round):
                t0, c0 = time.perf_counter(), time.process_time()
                train_step(c["_task"], c["_batch"])
                c["cpu_times"].append(time.process_time() - c0)
                c["times"].append(time.perf_counter() - t0)
        log(f"round {r + 1}/{a.rounds} done; load {loadavg()}")
    rows = []
    for c in configs:
        med, cpu = statistics.median(c["times"]), statistics.median(c["cpu_times"])
        row = {k: v for k, v in c.items() if not k.startswith("_")}
        # speed from the process's CPU time per step: one thread, so this is the step's time on a
        # core of its own, without the time slices other processes on the machine took
        row.update(step_s=med, step_s_min=min(c["times"]), cpu_s=cpu, mpx_s=px / cpu / 1e6, img_s=a.batch / cpu,
                   wall_mpx_s=px / med / 1e6,
                   compile_s=(c["first_step_s"] - med) if VARIANTS[c["variant"]].get("compile") else None)
        rows.append(row)
        c.pop("_task")
    for row in rows:
        ref = next(r for r in rows if (r["arch"], r["N"], r["M"], r["variant"]) ==
                   (row["arch"], row["N"], row["M"], "fp32"))
        row["x_fp32"] = ref["cpu_s"] / row["cpu_s"]
        row["x_fp32_wall"] = ref["step_s"] / row["step_s"]
    return rows


# --------------------------------------------------------------------------- data loading

class _Crops(torch.utils.data.IterableDataset):
    """An endless iterable of CropSampler batches (for a DataLoader worker process)."""

    def __init__(self, sampler, n: int):
        self.sampler, self.n = sampler, n

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is not None:  # a worker: its own random stream
            self.sampler.rng = np.random.default_rng(1000 + info.id)
        while True:
            yield self.sampler.batch(self.n)


def bench_data(a: argparse.Namespace, best: str) -> dict:
    import torch

    res: dict[str, Any] = {}
    task = make_task("hyperprior", 128, 192, best, a.batch, a.crop)
    for crop in sorted({128, 256, a.crop}):
        task.sampler.crop = crop
        ts = []
        for _ in range(200):
            t0 = time.perf_counter()
            task.sampler.batch(a.batch).to("cpu", memory_format=task.memory_format)
            ts.append(time.perf_counter() - t0)
        res[f"sampler_ms_crop{crop}"] = 1000 * statistics.median(ts)
    task.sampler.crop = a.crop
    # end to end: steps fed in-process (task.batch) vs by one DataLoader worker, interleaved
    loader = torch.utils.data.DataLoader(_Crops(task.sampler, a.batch), batch_size=None, num_workers=1,
                                         prefetch_factor=2, persistent_workers=True)
    it = iter(loader)
    q = torch.zeros(a.batch, dtype=torch.long)
    next(it)
    train_step(task, task.batch())
    inproc, worker, inproc_cpu, worker_cpu = [], [], [], []
    for _ in range(a.data_rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        train_step(task, task.batch())
        inproc.append(time.perf_counter() - t0)
        inproc_cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        x = next(it).to(memory_format=task.memory_format)
        train_step(task, (x, q.random_(0, task.mcfg.qualities)))
        worker.append(time.perf_counter() - t0)
        worker_cpu.append(time.process_time() - c0)  # the main process's only
    del it, loader
    res.update(step_s_inprocess=statistics.median(inproc), step_s_worker=statistics.median(worker),
               cpu_s_inprocess=statistics.median(inproc_cpu), cpu_s_worker=statistics.median(worker_cpu),
               variant=best, steps=a.data_rounds)
    res["worker_speedup"] = res["step_s_inprocess"] / res["step_s_worker"]
    res["sampler_share_pct"] = 100 * res[f"sampler_ms_crop{a.crop}"] / 1000 / res["cpu_s_inprocess"]
    log(f"data: {json.dumps(res)}")
    return res


# --------------------------------------------------------------------------- precision check

def shipped_weights(arch: str) -> tuple[dict, dict]:
    """(model config, state dict) of the shipped codec, without its CDF tables."""
    import neurocodec

    m = neurocodec.load_codec(arch).model
    skip = ("_offset", "_quantized_cdf", "_cdf_length", "scale_table")
    return m.cfg.to_dict(), {k: v for k, v in m.state_dict().items() if not k.endswith(skip)}


def training_model(cfg: dict, state: dict | None):
    """A fresh training model (empty CDF buffers) with state's weights."""
    from neurocodec.runtime.registry import build_model

    model = build_model(cfg["arch"], cfg)
    if state is not None:
        full = model.state_dict()
        full.update(state)
        model.load_state_dict(full)
    return model


def heldout_paths() -> list:
    """ImageTask's validation images (its split of the training folder: never trained on)."""
    from neurocodec.runtime.image.io import list_images
    from neurocodec.tools.image.train import TrainConfig

    paths = list_images(str(TRAIN))
    n_val = max(1, int(len(paths) * TrainConfig().val_fraction))
    return paths[::len(paths) // n_val][:n_val]


def heldout_images(multiple: int = 64) -> list:
    """The held-out images, each cropped (centred) to a multiple of `multiple`: [1, 3, H, W] in 0..1."""
    import torch

    from neurocodec.runtime.image.io import read_image

    out = []
    for p in heldout_paths():
        img = read_image(p, warn_lost=False)[0]
        h, w = (s // multiple * multiple for s in img.shape[:2])
        y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        out.append(torch.from_numpy(np.array(img[y:y + h, x:x + w])).permute(2, 0, 1)[None].float() / 255)
    return out


def bench_precision(a: argparse.Namespace) -> list[dict]:
    """Forward (train mode, same noise) + backward of the shipped weights on held-out crops."""
    import torch

    import neurocodec.tools.image.train as tr

    rows = []
    _cache_images()
    for arch in a.archs:
        cfg, state = shipped_weights(arch)
        # ImageTask's held-out crops (2 per validation image, seeded), crop 256
        val = tr.CropSampler(heldout_paths(), 256, np.random.default_rng(1234)).batch(16)
        q = torch.arange(16) % len(cfg["lmbdas"])  # every quality, on different crops
        grads, res = {}, {}
        for name, amp, whole in (("fp32", None, False), ("bf16 transforms", torch.bfloat16, False),
                                 ("bf16 all", torch.bfloat16, True)):
            model = training_model(cfg, state).train()
            if amp is not None and not whole:
                tr.autocast_transforms(model, amp, "cpu")
            torch.manual_seed(5)
            if whole:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = model(val, q)
                n_px = val.shape[2] * val.shape[3]
                bpp = sum(lik.float().clamp_min(1e-9).log2().neg().flatten(1).sum(1)
                          for lik in out["likelihoods"].values()) / n_px
                mse = (out["x_hat"].float() - val).pow(2).flatten(1).mean(1)
                loss = (torch.tensor(cfg["lmbdas"])[q] * 255**2 * mse + bpp).mean()
                s = {"bpp": bpp, "mse": mse}
            else:
                loss, s = tr.rd_loss(model, val, q)
            loss.backward()
            grads[name] = torch.cat([p.grad.double().flatten() for p in model.parameters() if p.grad is not None])
            res[name] = {"loss": loss.item(), "bpp": s["bpp"].mean().item(),
                         "psnr": -10 * math.log10(s["mse"].mean().item())}
        for name, r in res.items():
            g, g0 = grads[name], grads["fp32"]
            rows.append({"arch": arch, "N": cfg["N"], "M": cfg["M"], "mode": name, **r,
                         "loss_rel_pct": 100 * (r["loss"] / res["fp32"]["loss"] - 1),
                         "grad_cos": float(torch.nn.functional.cosine_similarity(g, g0, dim=0)),
                         "grad_norm_ratio": float(g.norm() / g0.norm())})
            log(f"precision {arch} {name}: {json.dumps(rows[-1])}")
    return rows


# --------------------------------------------------------------------------- RD at equal wall time

def evaluate_rd(model_cfg: dict, state: dict, images) -> dict:
    """Eval mode (rounding, fp32) on the held-out images: per quality bpp, PSNR, J = λ·255²·MSE + bpp."""
    import torch

    from neurocodec.tools.image.train import rd_loss

    model = training_model(model_cfg, state).eval()
    per_q = []
    with torch.no_grad():
        for qi, lm in enumerate(model_cfg["lmbdas"]):
            bits = sq = px = 0.0
            for x in images:
                _, s = rd_loss(model, x, torch.tensor([qi]))
                n = x.shape[2] * x.shape[3]
                bits += s["bpp"].item() * n
                sq += s["mse"].item() * n
                px += n
            bpp, mse = bits / px, sq / px
            per_q.append({"bpp": bpp, "psnr": -10 * math.log10(mse), "J": lm * 255**2 * mse + bpp})
    return {"per_quality": per_q, "J_mean": statistics.mean(r["J"] for r in per_q)}


def _child_train(spec_path: str) -> int:
    """--train-child: one training run from a JSON spec (make_config options)."""
    import torch

    from neurocodec.tools.image.train import make_config, train

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(1)
    cfg = make_config(spec.pop("arch"), [str(TRAIN)], **spec)
    train(cfg, resume=False)
    return 0


def bench_rd(a: argparse.Namespace, best: dict, prev: list[dict] | None = None) -> list[dict]:
    """Pairs of runs at equal wall time (--rd-minutes), or with --rd-equal-steps (prev: the rows
    of those pairs) one more bf16 run per fp32-vs-bf16 pair for exactly the fp32 run's steps:
    the same batches and noise as fp32's, so that the difference is bf16's alone."""
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="train_speed_rd"))
    images = heldout_images()
    cfg, state = shipped_weights("hyperprior")
    init = tmp / "init_shipped.pt"
    torch.save({"config": {"model": cfg, "train": {}}, "model": training_model(cfg, state).state_dict()}, init)
    common = dict(crop=a.crop, batch=a.batch, threads=1, device="cpu", val_every=10**9, ckpt_every_min=10**6)
    fp32 = {"precision": "fp32", "channels_last": False, "compile": False}
    small = {"N": 64, "M": 96}
    pairs = [
        (PAIR_A, [("fp32", {"init": str(init), **fp32}), ("best", {"init": str(init), **best})]),
        (PAIR_B, [("fp32", {**small, **fp32}), ("best", {**small, **best})]),
        (PAIR_C, [("128/192", {"N": 128, "M": 192, **best}), ("64/96", {**small, **best})]),
    ]
    rows = []
    if a.rd_equal_steps:
        jobs = []
        for pair, runs in pairs[:2]:
            steps = next(r["steps"] for r in prev if r["pair"] == pair and r["label"] == "fp32")
            jobs.append((pair, "best, equal steps", {**runs[1][1], "steps": steps, "time_budget_min": 0.0}))
        return _rd_runs(tmp, jobs, common, images)
    if not a.rd_skip_start:
        start = evaluate_rd(cfg, state, images)
        import neurocodec

        trained = neurocodec.load_codec("hyperprior").meta.get("training", {})  # its own run: steps, minutes
        rows.append({"pair": PAIR_A, "label": "start (shipped weights)", "steps": 0, "minutes": 0.0,
                     "shipped_training": {"steps": trained.get("step"), "minutes": trained.get("minutes"),
                                          **{k: trained.get("config", {}).get(k) for k in ("lr", "crop", "batch",
                                                                                            "threads")}}, **start})
        log(f"rd start: J {start['J_mean']:.4f}")
    for pair, runs in pairs:
        jobs = [(pair, label, {**opts, "steps": 10**9, "time_budget_min": a.rd_minutes}) for label, opts in runs]
        rows += _rd_runs(tmp, jobs, common, images)
    return rows


PAIR_A = "A: shipped 128/192, fp32 vs bf16"
PAIR_B = "B: random-init 64/96, fp32 vs bf16"
PAIR_C = "C: random-init widths, bf16"


def _rd_runs(tmp: Path, jobs: list, common: dict, images: list) -> list[dict]:
    """Run the jobs (pair, label, make_config options) at the same time, one process and thread
    each; evaluate their checkpoints."""
    import torch

    from neurocodec.tools.checkpoints import load_checkpoint

    procs, rows = [], []
    log(f"rd: {', '.join(p + ' / ' + lab for p, lab, _ in jobs)}; load {loadavg()}")
    for pair, label, opts in jobs:
        out = tmp / f"{pair[0]}_{label.replace('/', '_').replace(', ', '_').replace(' ', '_')}"
        spec = {"arch": "hyperprior", "out": str(out), **common, **opts}
        (tmp / f"{out.name}.json").write_text(json.dumps(spec))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        procs.append((pair, label, opts, out, subprocess.Popen(
            [sys.executable, __file__, "--train-child", str(tmp / f"{out.name}.json")], env=env,
            stdout=subprocess.DEVNULL, stderr=open(tmp / f"{out.name}.err", "w"))))
    for pair, label, _opts, out, p in procs:
        if p.wait() != 0:
            raise SystemExit(f"training run {pair} {label} failed: see {tmp / (out.name + '.err')}")
    log(f"rd runs done, load {loadavg()}")
    for pair, label, opts, out, _ in procs:
        ck = load_checkpoint(out / "checkpoint.pt")
        r = evaluate_rd(ck["config"]["model"], ck["model"], images)
        settings = {k: opts[k] for k in ("precision", "channels_last", "compile")}
        settings["fused_adam"] = bool(ck["opt"]["param_groups"][0].get("fused"))
        rows.append({"pair": pair, "label": label, "settings": settings,
                     "N": ck["config"]["model"]["N"], "M": ck["config"]["model"]["M"],
                     "steps": ck["step"], "minutes": ck["elapsed"] / 60,
                     "fp32_weights": all(v.dtype == torch.float32 for v in ck["model"].values()
                                         if v.is_floating_point()), **r})
        log(f"rd {pair} {label}: steps {ck['step']}, {ck['elapsed'] / 60:.2f} min, J {r['J_mean']:.4f}")
    return rows


# --------------------------------------------------------------------------- report

NOTES = """\
## Method and defaults

- Speed: `make_task` builds the real `ImageTask` (neurocodec/tools/image/train.py) with the variant's
  `precision` / `channels_last` / `compile`, and `train_step` does what `trainer.fit` does per step.
  Fixed batch (data loading is measured apart). Speeds come from the process's CPU time per step
  (medians): with one thread that is the step's time on an uncontended core, which the wall time on
  this shared 2-core machine is not (the wall medians are in the table too, measured round-robin
  so that the load hit every variant alike).
- bf16 = `torch.autocast(device, bfloat16)` around the convolutional transforms g_a, h_a, h_s, g_s
  only (`autocast_transforms`); the entropy bottleneck, the Gaussian conditional, the gains, the
  loss, the weights and the Adam states stay fp32; validation (eval mode) runs fp32.
- ImageTask's defaults after these measurements: `precision="auto"` (bf16 where the device has
  native bf16: this CPU's AVX512-BF16, or a CUDA GPU with bf16; else fp32), `channels_last=True`,
  fused Adam on CPU and CUDA, `compile=False` (opt-in: a compile of 15-100 s per process, cold,
  and a working C++ toolchain, for the few % per step in the table: worth it for runs of hours),
  data loading in-process (`CropSampler`: well under 1% of a step; a worker process buys nothing
  measurable and would break exact resume, whose batches come from the checkpointed sampler state).
"""


def _label(r: dict) -> str:
    st = r.get("settings") or {}
    if not st:
        return r["label"]
    name = "fp32" if st["precision"] == "fp32" else "bf16"
    name += "+cl" if st["channels_last"] else ""
    name += "+fused" if st.get("fused_adam") else ""
    name += "+compile" if st["compile"] else ""
    return f"{name} {r['N']}/{r['M']}" + (", equal steps" if "equal steps" in r["label"] else "")


def summary(p: dict) -> list[str]:
    """The headline numbers, from the tables below."""
    L = []
    sp = {(r["arch"], f"{r['N']}/{r['M']}", r["variant"]): r for r in p.get("speed", [])}
    default = "bf16+cl+fused"
    rows = [(k[0], k[1], r) for k, r in sp.items() if k[2] == default]
    if rows:
        L.append("- ImageTask's defaults (`" + default + "`) against the old fp32 path, CPU time per step at one "
                 "thread: " + "; ".join(f"{a} {nm} × {r['x_fp32']:.2f} ({sp[(a, nm, 'fp32')]['mpx_s']:.2f} → "
                                        f"{r['mpx_s']:.2f} Mpx/s)" for a, nm, r in rows) + ".")
        comp = [(a, nm, sp[(a, nm, default)]["cpu_s"] / sp[(a, nm, default + "+compile")]["cpu_s"])
                for a, nm, _ in rows if (a, nm, default + "+compile") in sp]
        if comp:
            L.append("- torch.compile on top: " + ", ".join(f"{a} {nm} × {x:.2f}" for a, nm, x in comp)
                     + " per step, after a compile of seconds to minutes (off by default).")
        both = [a for a in dict.fromkeys(k[0] for k in sp)
                if (a, "128/192", default) in sp and (a, "64/96", default) in sp]
        wid = [(a, sp[(a, "128/192", default)]["cpu_s"] / sp[(a, "64/96", default)]["cpu_s"]) for a in both]
        if wid:
            L.append("- Width: a 128/192 step costs " + ", ".join(f"{x:.1f}× a 64/96 one ({a})" for a, x in wid) + ".")
    rd = p.get("rd", [])

    def j(pair: str, pred) -> dict | None:
        return next((r for r in rd if r["pair"].startswith(pair) and pred(r)), None)

    for pair in ("A", "B"):
        f32 = j(pair, lambda r: r.get("settings", {}).get("precision") == "fp32")
        b16 = j(pair, lambda r: r.get("settings", {}).get("precision") == "bf16" and "equal" not in r["label"])
        eq = j(pair, lambda r: "equal steps" in r["label"])
        if f32 and b16:
            dj = 100 * (b16["J_mean"] / f32["J_mean"] - 1)
            line = (f"- RD, {f32['pair']}: after {f32['minutes']:.0f} min, J {f32['J_mean']:.4f} (fp32, "
                    f"{f32['steps']} steps) vs {b16['J_mean']:.4f} (bf16, {b16['steps']} steps): {dj:+.1f}%")
            if eq:
                line += (f"; at equal steps ({eq['steps']}) bf16 {100 * (eq['J_mean'] / f32['J_mean'] - 1):+.1f}% "
                         f"(in {eq['minutes'] / f32['minutes']:.0%} of the wall time, another moment's load)")
            L.append(line + ".")
    c = [r for r in rd if r["pair"].startswith("C")]
    if len(c) == 2:
        st = rd[0].get("shipped_training") or {}
        shipped = (f" (the shipped 128/192: {st['steps']} steps in {st['minutes']:.0f} min at {st['threads']} "
                   f"thread, lr {st['lr']:g}, for J {rd[0]['J_mean']:.2f})") if st.get("steps") else ""
        L.append(f"- Widths from a random init, {c[0]['minutes']:.0f} min each (bf16): J {c[0]['J_mean']:.2f} "
                 f"({_label(c[0])}, {c[0]['steps']} steps) vs {c[1]['J_mean']:.2f} ({_label(c[1])}, "
                 f"{c[1]['steps']} steps). This early the narrow model's extra steps win; where the curves cross "
                 f"is beyond this budget{shipped}.")
    return ["## Summary", "", *L, ""] if L else []


def render(p: dict) -> list[str]:
    a = p["args"]
    L = ["# Image codec training speed on CPU", "", *provenance_md(p["provenance"]),
         f"- threads: {a['threads']}; batch {a['batch']} × {a['crop']}² crops; "
         f"load average (1/5/15 min) before / after: {p['load_before']} / {p['load_after']} on "
         f"{p['provenance']['machine']['cores']} cores (other processes were running)"]
    for key, sec in p.get("sections", {}).items():
        L.append(f"- section `{key}`: `{sec['command']}` at {sec['date']} (git `{sec['git_sha'][:12]}`)")
    L.append("")
    L += summary(p)
    if p.get("speed"):
        L += ["## Training step speed", "",
              f"One ImageTask step (forward, RD loss, backward, clip, Adam, aux step) on a fixed batch; "
              f"median of {a['rounds']}×{a['steps_per_round']} steps measured round-robin after 2 warm-up steps. "
              "CPU s/step = the process's CPU time per step (one thread: the step's time on a core of its own, "
              "without the time slices the other processes on this shared machine took); Mpx/s and images/s "
              "from it. wall s/step = median wall time under that load. × fp32 = speed relative to fp32 of the "
              "same model. compile s = first step's wall time minus a usual one's.", ""]
        rows = [[r["arch"], f"{r['N']}/{r['M']}", r["variant"], fmt(r["cpu_s"], 3), fmt(r["mpx_s"], 3),
                 fmt(r["img_s"], 2), fmt(r["x_fp32"], 2), fmt(r["step_s"], 3), fmt(r["x_fp32_wall"], 2),
                 fmt(r["compile_s"], 0) if r["compile_s"] is not None else ""] for r in p["speed"]]
        L += md_table(["arch", "N/M", "variant", "CPU s/step", "Mpx/s", "images/s", "× fp32", "wall s/step",
                       "× fp32 wall", "compile s"], rows) + [""]
        L += ["Variants:", ""] + [f"- `{k}`: {v}" for k, v in VARIANT_NOTES.items() if k in a["variants"]] + [""]
        if p.get("compile_cold"):
            c = p["compile_cold"]
            L += [f"compile s above is with torch inductor's on-disk cache warm from earlier runs. "
                  f"Cold ({c['source']}): "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in c["first_step_s"].items()) + " for the first step.", ""]
    if p.get("data"):
        d = p["data"]
        L += ["## Data loading", "",
              f"CropSampler.batch({a['batch']}) + channels_last copy, median of 200: "
              + ", ".join(f"{k.split('crop')[1]}²: {v:.2f} ms" for k, v in d.items() if k.startswith("sampler_ms"))
              + f". That is {d['sampler_share_pct']:.2f}% of a `{d['variant']}` hyperprior 128/192 step at "
              f"{a['crop']}². End to end ({d['steps']} steps each, interleaved): in-process "
              f"{d['step_s_inprocess']:.3f} s/step wall ({d['cpu_s_inprocess']:.3f} CPU s), one DataLoader worker "
              f"process {d['step_s_worker']:.3f} s/step wall ({d['cpu_s_worker']:.3f} CPU s in the main process) "
              f"(× {d['worker_speedup']:.3f} wall).", ""]
    if p.get("precision"):
        L += ["## Does bf16 keep the rate-distortion? (one forward + backward, shipped weights)", "",
              "16 held-out 256² crops (ImageTask's validation images), qualities 0..5 spread over them, the "
              "same training noise; loss = mean λ·255²·MSE + bpp. grad cos / norm: the whole gradient against "
              "fp32's (at the converged shipped weights the gradient is small, mostly batch noise).", ""]
        rows = [[r["arch"], f"{r['N']}/{r['M']}", r["mode"], fmt(r["loss"], 4), fmt(r["loss_rel_pct"], 3),
                 fmt(r["bpp"], 4), fmt(r["psnr"], 3), fmt(r["grad_cos"], 4), fmt(r["grad_norm_ratio"], 4)]
                for r in p["precision"]]
        L += md_table(["arch", "N/M", "mode", "loss", "Δ loss %", "bpp", "PSNR dB", "grad cos", "grad norm"],
                      rows) + [""]
    if p.get("rd"):
        L += ["## RD at equal wall time", "",
              f"Training runs of {a['rd_minutes']} min each (neurocodec.tools.image.train.train, hyperprior, one "
              f"thread, batch {a['batch']}×{a['crop']}², lr 1e-4 with its drop at 85% of the time), the two runs "
              "of a pair at the same time on the two cores. \"equal steps\": bf16 run for the fp32 run's step "
              "count (same batches and noise: the difference is bf16's alone). Each checkpoint evaluated in "
              "eval mode (rounding), fp32, on the held-out training images (ImageTask's validation split, 8 "
              "images cropped to a multiple of 64; never Kodak). J = λ·255²·MSE + bpp averaged over the 6 "
              "qualities (lower is better; ΔJ against the pair's first run); bpp / PSNR at qualities 0, 3, 5.", ""]
        rows, first = [], {}
        order = list(dict.fromkeys(r["pair"] for r in p["rd"]))
        for r in sorted(p["rd"], key=lambda r: order.index(r["pair"])):  # stable: a pair's runs in order
            pq = r["per_quality"]
            ref = first.setdefault(r["pair"], r["J_mean"]) if r["steps"] else None
            rows.append([r["pair"], _label(r), r["steps"], fmt(r["minutes"], 2), fmt(r["J_mean"], 4),
                         fmt(100 * (r["J_mean"] / ref - 1), 1, "%") if ref else "",
                         *(f"{pq[i]['bpp']:.3f} / {pq[i]['psnr']:.2f}" for i in (0, 3, 5))])
        L += md_table(["pair", "run", "steps", "min", "J mean", "ΔJ", "q0 bpp/PSNR", "q3 bpp/PSNR",
                       "q5 bpp/PSNR"], rows) + [""]
    return L + [NOTES]


def parse_size(s: str) -> tuple[int, int]:
    n, m = s.split("/")
    return int(n), int(m)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--train-child":
        return _child_train(sys.argv[2])
    if len(sys.argv) >= 2 and sys.argv[1] == "--render-only":  # the markdown again from OUT/train_speed.json
        out = Path(sys.argv[2]) if len(sys.argv) > 2 else RESULTS_DIR
        payload = json.loads((out / "train_speed.json").read_text())
        (out / "train_speed.md").write_text("\n".join(render(payload)) + "\n")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="hyperprior,shallow", type=lambda s: s.split(","))
    ap.add_argument("--sizes", default="128/192,64/96", type=lambda s: [parse_size(x) for x in s.split(",")])
    ap.add_argument("--variants", default=",".join(VARIANTS), type=lambda s: s.split(","))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps-per-round", type=int, default=2)
    ap.add_argument("--data-rounds", type=int, default=10)
    ap.add_argument("--best", default="bf16+cl+fused", help="variant used for data loading and the RD runs")
    ap.add_argument("--rd-minutes", type=float, default=0.0, help="training minutes per RD run (0: no RD runs)")
    ap.add_argument("--rd-skip-start", action="store_true")
    ap.add_argument("--rd-equal-steps", action="store_true",
                    help="with --update: bf16 runs of the fp32 runs' step counts (pairs A and B) added to the RD rows")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: speed,data,precision")
    ap.add_argument("--update", action="store_true",
                    help="keep the sections of the existing OUT/train_speed.json that this run skips")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    skip = set(filter(None, a.skip.split(",")))
    payload: dict[str, Any] = {"provenance": provenance(), "load_before": loadavg(),
                               "args": {k: (display_path(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}}
    log(f"load {payload['load_before']}")
    old = a.out / "train_speed.json"
    if a.update and old.exists():
        prev = json.loads(old.read_text())
        payload["sections"] = prev.get("sections", {})
        for key in ("speed", "data", "precision", "rd"):
            if key in prev:
                payload[key] = prev[key]
        for key in ("rounds", "steps_per_round", "rd_minutes"):  # the kept sections' settings
            payload["args"][key] = prev["args"].get(key, payload["args"][key])
    ran = [k for k in ("speed", "data", "precision") if k not in skip] + (["rd"] if a.rd_minutes > 0 else [])
    ran += ["rd_equal_steps"] if a.rd_equal_steps else []
    if "rd" in ran:
        payload["args"]["rd_minutes"] = a.rd_minutes
    if "speed" in ran:
        payload["args"].update(rounds=a.rounds, steps_per_round=a.steps_per_round)
    payload.setdefault("sections", {}).update({k: {"git_sha": payload["provenance"]["git_sha"],
                                                   "command": payload["provenance"]["command"],
                                                   "date": payload["provenance"]["date"]} for k in ran})
    if "speed" not in skip:
        payload["speed"] = bench_speed(a)
    if "data" not in skip:
        payload["data"] = bench_data(a, a.best)
    if "precision" not in skip:
        payload["precision"] = bench_precision(a)
    v = VARIANTS[a.best]
    best = {"precision": v["precision"], "channels_last": v["channels_last"], "compile": v.get("compile", False)}
    if a.rd_equal_steps:
        payload["rd"] = [r for r in payload["rd"] if r["label"] != "best, equal steps"]
        payload["rd"] += bench_rd(a, best, payload["rd"])
    elif a.rd_minutes > 0:
        payload["rd"] = bench_rd(a, best)
    payload["load_after"] = loadavg()
    payload["args"]["sizes"] = [f"{n}/{m}" for n, m in a.sizes]
    write_reports(a.out, "train_speed", payload, render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
