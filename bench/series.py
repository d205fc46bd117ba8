"""Checkpoint series on a real training run: sizes of every way to store it, and resumes.

    python bench/series.py                 # train (cached), pack every variant, resume, report
    python bench/series.py --quick         # 300 steps, 3 checkpoints: a smoke run (~3 min)

1. train: a char-level GPT (bench/_chargpt.py, 0.8 M params) on tinyshakespeare for --steps
   steps on one thread, a raw torch.save checkpoint (model + AdamW state) every --every steps
   into WORK/raw/ (cached: an existing run with the same config is reused).
2. pack: every checkpoint through every variant: raw, zstd-3/19 and ZipNN of the .pt, weightzip
   independent, weightzip deltas (each against the previous, keyframe every K), lossy at two
   bounds (independent and closed-loop deltas), and lossless weights with lossy moments at a
   sweep of moment bounds. Sizes per checkpoint and in total, model/optimizer split, timings.
3. resume: from the checkpoint at --resume-at of every variant, load it and train --resume-steps
   more steps on the same batches; the gap to the exact resume (which reproduces the original
   run) is the cost of the checkpoint's error.
Results: bench/results/series.md|json (+ series_resume.png). The LoRA series of ../shared/data is
measured too when present (no optimizer there, so sizes only).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import weightzip  # noqa: E402
import weightzip.torch as wzt  # noqa: E402
from bench import _chargpt as cg  # noqa: E402
from bench._common import provenance, provenance_md  # noqa: E402

RESULTS = REPO / "bench" / "results"
LORA = REPO.parent / "shared" / "data" / "weights" / "lora_roberta-base_agnews_series"


def variants(keyframe_every: int) -> dict[str, dict]:
    """name -> save_checkpoint options; "chain": each against the previous of the same variant
    with a keyframe every K (0: never after the first)."""
    k = keyframe_every
    v: dict[str, dict] = {"wz": {}, f"wz-delta-K{k}": {"chain": k}, "wz-delta": {"chain": 0}}
    for e in (0.01, 0.001):
        v[f"lossy-{e:g}"] = {"max_error": e}
        v[f"lossy-{e:g}-delta-K{k}"] = {"max_error": e, "chain": k}
    v["lossy-0.01-delta"] = {"max_error": 0.01, "chain": 0}
    for e in (0.05, 0.1):  # looser bounds on everything: where does the resume gap reach 1 %?
        v[f"lossy-{e:g}-delta-K{k}"] = {"max_error": e, "chain": k}
    for em in (0.02, 0.05, 0.1, 0.2, 0.5):  # exact weights, lossy Adam moments
        v[f"moments-{em:g}-delta-K{k}"] = {"moment_error": em, "chain": k}
    return v


def speed(work: Path, mb: int = 64) -> dict:
    """Pack/unpack MB/s on one thread for a synthetic FP32 safetensors pair (b = a + small
    steps): independent, lossless delta, lossy independent and closed-loop lossy delta. By
    process CPU time (threads=1 does all work on the calling thread), so that other jobs on
    the machine do not skew it; wall-clock rates are kept too."""
    from safetensors.numpy import save_file
    d = work / "speed"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    n = mb * (1 << 20) // 4 // 16
    a = {f"t{i}": (rng.standard_normal((n // 1024, 1024)) * 0.02).astype(np.float32) for i in range(16)}
    b = {k: (x + 1e-4 * rng.standard_normal(x.shape).astype(np.float32)) for k, x in a.items()}
    save_file(a, str(d / "a.safetensors"))
    save_file(b, str(d / "b.safetensors"))
    raw = (d / "b.safetensors").stat().st_size / 1e6
    out = {}
    for name, kw, ref_kw in (("independent", {}, None), ("delta", {}, {}),
                             ("lossy-0.01", {"max_error": 0.01}, None),
                             ("lossy-0.01-delta", {"max_error": 0.01}, {"max_error": 0.01})):
        ref = None
        if ref_kw is not None:
            ref = weightzip.pack(d / "a.safetensors", d / f"a-{name}.wz", threads=1, overwrite=True, **ref_kw)
        t, w = time.process_time(), time.perf_counter()
        p = weightzip.pack(d / "b.safetensors", d / f"b-{name}.wz", threads=1, overwrite=True, ref=ref, **kw)
        t_pack, w_pack = time.process_time() - t, time.perf_counter() - w
        t = time.process_time()
        weightzip.unpack(p, d / f"u-{name}.safetensors", threads=1, overwrite=True)
        t_unpack = time.process_time() - t
        out[name] = {"pack_MBps": raw / t_pack, "unpack_MBps": raw / t_unpack, "pack_MBps_wall": raw / w_pack,
                     "ratio": p.stat().st_size / (raw * 1e6)}
    # a training loop's chain (CheckpointChain): the reference's reconstruction is still in memory
    from weightzip.refs import ReconCache
    cache = ReconCache()
    for name, kw in (("delta, reference in memory", {}), ("lossy-0.01-delta, reference in memory",
                                                          {"max_error": 0.01})):
        ra = weightzip.save(a, d / "ca.wz", threads=1, overwrite=True, cache=cache, **kw)
        t, w = time.process_time(), time.perf_counter()
        p = weightzip.save(b, d / "cb.wz", threads=1, overwrite=True, cache=cache, ref=ra, **kw)
        out[name] = {"pack_MBps": raw / (time.process_time() - t), "unpack_MBps": float("nan"),
                     "pack_MBps_wall": raw / (time.perf_counter() - w), "ratio": p.stat().st_size / (raw * 1e6)}
    return out


# ---------------------------------------------------------------------------------- training
def train(work: Path, run: cg.RunConfig, every: int, corpus: cg.Corpus) -> list[int]:
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    cfg = cg.config_dict(run, corpus.vocab)
    steps = list(range(every, run.steps + 1, every))
    cfg_path = raw / "config.json"
    if cfg_path.exists() and json.loads(cfg_path.read_text()) == {**cfg, "every": every} \
            and all((raw / f"ckpt-{s}.pt").exists() for s in steps):
        return steps
    from tqdm import tqdm
    torch.set_num_threads(1)
    model, opt = cg.make(run, corpus.vocab)
    log = []
    for step in tqdm(range(run.steps), desc="train", unit="step"):
        loss = cg.train_step(model, opt, corpus, run, step)
        log.append(loss)
        if (step + 1) % every == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step + 1},
                       raw / f"ckpt-{step + 1}.pt")
    (raw / "losses.json").write_text(json.dumps(log))
    cfg_path.write_text(json.dumps({**cfg, "every": every}))
    return steps


def _load_raw(path: Path, run: cg.RunConfig, vocab: int):
    model, opt = cg.make(run, vocab)
    sd = torch.load(path, weights_only=True)
    model.load_state_dict(sd["model"])
    opt.load_state_dict(sd["optimizer"])
    return model, opt, sd["step"]


# ---------------------------------------------------------------------------------- packing
def _split(path: Path) -> tuple[int, int]:
    """(model bytes, optimizer bytes) stored, from the per-entry table."""
    inf = weightzip.info(path, verify=False)
    m = sum(r["stored"] for r in inf["entries"] if r["name"].startswith("model/"))
    o = sum(r["stored"] for r in inf["entries"] if r["name"].startswith("optimizer/"))
    return m, o


def pack_all(work: Path, steps: list[int], run: cg.RunConfig, vocab: int, keyframe_every: int) -> dict:
    from tqdm import tqdm

    from bench._codecs import get_codec
    raw = work / "raw"
    out: dict[str, dict] = {}
    for name in ("zstd-3", "zstd-19", "zipnn"):
        codec = get_codec(name, "float32")
        d = work / name
        d.mkdir(exist_ok=True)
        sizes, secs = [], 0.0
        for s in steps:
            t = time.perf_counter()
            codec.compress(raw / f"ckpt-{s}.pt", d / f"ckpt-{s}.bin", 1)
            secs += time.perf_counter() - t
            sizes.append((d / f"ckpt-{s}.bin").stat().st_size)
        out[name] = {"sizes": sizes, "seconds": secs}
    out["raw"] = {"sizes": [(raw / f"ckpt-{s}.pt").stat().st_size for s in steps], "seconds": 0.0}
    for name, opts in tqdm(variants(keyframe_every).items(), desc="variants"):
        d = work / name
        d.mkdir(exist_ok=True)
        opts = dict(opts)
        chain = opts.pop("chain", None)
        sizes, split, secs, prev = [], [], 0.0, None
        for i, s in enumerate(steps):
            model, opt, _ = _load_raw(raw / f"ckpt-{s}.pt", run, vocab)
            keyframe = chain is None or prev is None or (chain > 0 and i % chain == 0)
            t = time.perf_counter()
            p = wzt.save_checkpoint(model, opt, d / f"ckpt-{s}.wz", step=s, threads=1,
                                    ref=None if keyframe else prev, **opts)
            secs += time.perf_counter() - t
            prev = p
            sizes.append(p.stat().st_size)
            split.append(_split(p))
        out[name] = {"sizes": sizes, "seconds": secs, "model_opt": split, "options": {**opts, "chain": chain}}
    return out


# ---------------------------------------------------------------------------------- resume
def resume(work: Path, steps: list[int], at: int, n: int, run: cg.RunConfig, corpus: cg.Corpus,
           names: list[str]) -> dict:
    torch.set_num_threads(1)
    res: dict[str, dict] = {}
    for name in ["exact", *names]:
        model, opt = cg.make(run, corpus.vocab)
        if name == "exact":
            m2, o2, _ = _load_raw(work / "raw" / f"ckpt-{at}.pt", run, corpus.vocab)
            model.load_state_dict(m2.state_dict())
            opt.load_state_dict(o2.state_dict())
        else:
            wzt.load_checkpoint(work / name / f"ckpt-{at}.wz", model, opt)
        losses = [cg.train_step(model, opt, corpus, run, at + k) for k in range(n)]
        res[name] = {"losses": losses, "val": cg.val_loss(model, corpus, run)}
    ref = np.array(res["exact"]["losses"])
    for name in names:
        gap = np.abs(np.array(res[name]["losses"]) - ref) / ref
        res[name].update(mean_gap=float(gap.mean()), max_gap=float(gap.max()),
                         val_gap=(res[name]["val"] - res["exact"]["val"]) / res["exact"]["val"])
    return res


# ---------------------------------------------------------------------------------- LoRA series
def lora_series(work: Path) -> dict | None:
    if not LORA.exists():
        return None
    ckpts = sorted(LORA.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    d = work / "lora"
    d.mkdir(exist_ok=True)
    res: dict[str, list] = {"names": [c.name for c in ckpts]}
    raw = [sum(f.stat().st_size for f in c.rglob("*") if f.is_file()) for c in ckpts]
    res["raw"] = raw
    for name, kw in (("wz", {}), ("wz-delta", {"chain": True}), ("lossy-0.01", {"max_error": 0.01}),
                     ("lossy-0.01-delta", {"max_error": 0.01, "chain": True})):
        chain = kw.pop("chain", False)
        prev, sizes, secs = None, [], 0.0
        for c in ckpts:
            dst = d / name / f"{c.name}.wz"
            dst.parent.mkdir(exist_ok=True)
            t = time.perf_counter()
            p = weightzip.pack(c, dst, threads=1, overwrite=True, **({"ref": prev} if chain and prev else {}), **kw)
            secs += time.perf_counter() - t
            prev = p
            sizes.append(p.stat().st_size)
        res[name] = sizes
        res[f"{name}_MBps"] = sum(raw) / 1e6 / secs
    return res


# ---------------------------------------------------------------------------------- report
def report(data: dict, path: Path) -> None:
    sizes, prov = data["sizes"], data["provenance"]
    raw_total = sum(sizes["raw"]["sizes"])
    indep = sum(sizes["wz"]["sizes"])
    lines = ["# Checkpoint series: sizes and resumes", "", *provenance_md(prov), "",
             f"char-GPT, {data['params']:,} params, AdamW; {len(data['steps'])} checkpoints every "
             f"{data['every']} steps to step {data['steps'][-1]} (raw torch.save: {raw_total / 1e6:.2f} MB in all).",
             "", "| variant | total MB | × vs raw | vs weightzip indep | model MB | optimizer MB | pack MB/s |",
             "|---|---|---|---|---|---|---|"]
    for name, v in sizes.items():
        tot = sum(v["sizes"])
        mo = v.get("model_opt")
        m = f"{sum(a for a, _ in mo) / 1e6:.3f}" if mo else ""
        o = f"{sum(b for _, b in mo) / 1e6:.3f}" if mo else ""
        speed = f"{raw_total / 1e6 / v['seconds']:.0f}" if v["seconds"] else ""
        lines.append(f"| {name} | {tot / 1e6:.3f} | {raw_total / tot:.2f} | {tot / indep:.3f} | {m} | {o} | {speed} |")
    if data.get("resume"):
        at, n = data["resume_at"], data["resume_steps"]
        lines += ["", f"Resume from step {at}, {n} more steps on the original batches (gap to the exact resume):",
                  "", "| variant | mean loss gap | max loss gap | val loss gap at +n |", "|---|---|---|---|"]
        for name, r in data["resume"].items():
            if name != "exact":
                lines.append(f"| {name} | {100 * r['mean_gap']:.3f} % | {100 * r['max_gap']:.3f} % | "
                             f"{100 * r['val_gap']:+.3f} % |")
    if data.get("speed"):
        ps = data.get("provenance_speed")
        lines += ["", "Speed, one thread (synthetic FP32 safetensors, b = a + small steps; MB of the input per "
                  "second of process CPU time, and per wall-clock second on this shared 2-core machine)"
                  + (f"; re-measured with `{ps['command']}` at `{ps['git_sha']}`, {ps['date']}" if ps else "") + ":",
                  "", "| mode | pack MB/s (CPU) | unpack MB/s (CPU) | pack MB/s (wall) | size vs raw |",
                  "|---|---|---|---|---|"]
        for k, v in data["speed"].items():
            lines.append(f"| {k} | {v['pack_MBps']:.0f} | {v['unpack_MBps']:.0f} | "
                         f"{v.get('pack_MBps_wall', float('nan')):.0f} | {100 * v['ratio']:.2f} % |")
    if data.get("lora"):
        lo = data["lora"]
        tot = {k: sum(v) for k, v in lo.items() if isinstance(v, list) and k != "names"}
        lines += ["", f"LoRA RoBERTa series ({len(lo['names'])} checkpoints, {tot['raw'] / 1e6:.2f} MB raw):", "",
                  "| variant | total MB | × vs raw | vs weightzip indep | pack MB/s |", "|---|---|---|---|---|"]
        for k, t in tot.items():
            speed = f"{lo[k + '_MBps']:.0f}" if k + "_MBps" in lo else ""
            lines.append(f"| {k} | {t / 1e6:.3f} | {tot['raw'] / t:.2f} | {t / tot['wz']:.3f} | {speed} |")
    path.write_text("\n".join(lines) + "\n")


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ref = np.array(res["exact"]["losses"])
    k = 20  # moving average: single-batch losses are noisy
    for name, r in res.items():
        y = np.convolve(np.array(r["losses"]) - ref, np.ones(k) / k, mode="valid") if name != "exact" else None
        if y is not None:
            ax.plot(y, label=name)
    ax.set_xlabel("steps after resume")
    ax.set_ylabel(f"loss − exact-resume loss ({k}-step mean)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=REPO.parent / "runs" / "series")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--keyframe-every", type=int, default=8)
    ap.add_argument("--resume-at", type=int, default=1000)
    ap.add_argument("--resume-steps", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="re-measure the speed table into an existing json")
    ap.add_argument("--out", type=Path, default=RESULTS / "series.md")
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.every, a.resume_at, a.resume_steps = 300, 100, 200, 50
        a.work = a.work.with_name(a.work.name + "_quick")
        a.out = a.out.with_name("series_quick.md")
    if a.speed_only:
        data = json.loads(a.out.with_suffix(".json").read_text())
        data["speed"] = speed(a.work, 16 if a.quick else 64)
        data["provenance_speed"] = provenance()
        a.out.with_suffix(".json").write_text(json.dumps(data, indent=1))
        report(data, a.out)
        print(a.out.read_text())
        return
    corpus = cg.Corpus(cg.load_text())
    run = cg.RunConfig(steps=a.steps)
    steps = train(a.work, run, a.every, corpus)
    sizes = pack_all(a.work, steps, run, corpus.vocab, a.keyframe_every)
    names = [n for n in sizes if n.startswith(("wz", "lossy", "moments")) and n not in ("wz-delta", "wz")]
    res = resume(a.work, steps, a.resume_at, a.resume_steps, run, corpus, names)
    model, _ = cg.make(run, corpus.vocab)
    data = {"provenance": provenance(), "steps": steps, "every": a.every, "sizes": sizes,
            "params": sum(p.numel() for p in model.parameters()), "resume_at": a.resume_at,
            "resume_steps": a.resume_steps, "resume": res, "lora": None if a.quick else lora_series(a.work),
            "speed": speed(a.work, 16 if a.quick else 64)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    report(data, a.out)
    plot(res, a.out.with_name(a.out.stem + "_resume.png"))
    print(a.out.read_text())


if __name__ == "__main__":
    main()
