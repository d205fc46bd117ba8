"""Fit coolchic's bench images on a lent GPU (issue 12: the `slow` preset costs ~1-2 h of CPU
per Kodak image here), several fits at a time, each written to OUT as soon as it is done.

    # on the device, after the kit's install (bench/gpu/README.md, "Coolchic fits"):
    PYTHONPATH=/tmp/gpu_kit_site python3 bench/gpu/coolchic_fits.py --data .gpu_carry_cc/kodak --out $OUT
    # back here: measure them (decode, PSNR, bpp) into bench/results/coolchic_fits.json
    python bench/coolchic.py --preset slow --work FILES_AT/coolchic --report-only

Fits go in image-major order (whole RD curves first), `--jobs` processes at a time (spawned:
CUDA does not survive fork), and no fit starts that would end after `--deadline-s` by the
longest fit so far: a cut-short call still returns every finished fit. Each fit leaves
`<out>/coolchic/<config digest>/<fit name>.nc` and its `.json` statistics, the layout of
bench/coolchic.py's --work folder, so the report decodes and measures them here (the file's
bits, not the GPU's numbers). A dry run on the CPU: `--device cpu --time-budget 0.2`.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._common import RESULTS_DIR  # noqa: E402
from bench.coolchic import DEFAULT_IMAGES, _fit_job, config_digest, fit_name, ledger_key, load_ledger  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of the images (kodimXX.png)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "coolchic_gpu_out")))
    ap.add_argument("--images", default=DEFAULT_IMAGES, help="comma-separated stems")
    ap.add_argument("--qualities", default="1,2,3,4")
    ap.add_argument("--preset", default="slow")
    ap.add_argument("--jobs", type=int, default=8, help="fits at a time (processes sharing the GPU)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads per fit")
    ap.add_argument("--deadline-s", type=float, default=480, help="start no fit that would end later")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--ledger", type=Path, default=RESULTS_DIR / "coolchic_fits.json", help="fits already measured")
    ap.add_argument("--time-budget", type=float, help="minutes per fit, as the API's (dry runs; else the preset's "
                    "iteration count)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # fit() takes CUDA when it sees one
    names = [f"{s}.png" for s in args.images.split(",") if s]
    missing = [n for n in names if not (args.data / n).exists()]
    if missing:
        print(f"not in {args.data}: {', '.join(missing)}", file=sys.stderr)
        return 2
    work = args.out / "coolchic" / config_digest()
    work.mkdir(parents=True, exist_ok=True)
    ledger = load_ledger(args.ledger)  # fits measured in earlier sessions (committed): not again
    todo = [(n, int(q)) for n in names for q in args.qualities.split(",")
            if not (work / fit_name(args.preset, n, int(q))).exists()
            and ledger_key(work, args.preset, n, int(q)) not in ledger]
    print(f"{len(todo)} {args.preset} fits into {work}, {args.jobs} at a time on {args.device}", flush=True)
    longest, done, log = 0.0, 0, []
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        running: dict[Future, tuple[str, int, float]] = {}
        while todo or running:
            while todo and len(running) < args.jobs and \
                    (not longest or time.perf_counter() - t0 + longest < args.deadline_s):
                n, q = todo.pop(0)
                f = pool.submit(_fit_job, str(args.data / n), q, args.preset,
                                str(work / fit_name(args.preset, n, q)), args.threads, args.time_budget)
                running[f] = (n, q, time.perf_counter())
            if not running:
                break  # the rest would end past the deadline
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                n, q, start = running.pop(f)
                st = f.result()
                longest = max(longest, time.perf_counter() - start)
                done += 1
                log.append({"image": n, "quality": q, **st})
                print(f"{n} q{q}: {st['encode_s']:.0f} s, {st['iterations']} iterations "
                      f"({time.perf_counter() - t0:.0f} s in)", flush=True)
    (args.out / "coolchic" / "fits_log.json").write_text(json.dumps(log, indent=1, default=str) + "\n")
    print(f"{done} fits in {time.perf_counter() - t0:.0f} s; {len(todo)} left for a later call", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
