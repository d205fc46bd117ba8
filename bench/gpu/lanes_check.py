"""GPU check for compressed modules (issue 16): build the lanes kernel, decode on the device,
compare with the CPU decoder bit for bit, and measure decoded GB/s. About a minute:

    python bench/gpu/lanes_check.py --out $OUT          # after `pip install -e .` on the GPU machine
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str] | None = None) -> int:
    import torch

    import weightzip.torch as wzt
    from weightzip import cuda_lanes

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--gib", type=float, default=1.0, help="decoded size of the throughput test")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    lib = cuda_lanes.library()
    res: dict = {"device": torch.cuda.get_device_name(), "build_s": time.perf_counter() - t0, "ok": lib is not None}
    if lib is None:
        print(json.dumps(res))
        return 1
    checks = {}
    for dt in (torch.bfloat16, torch.float16, torch.float32):
        t = (torch.randn(4096, 1000) * 0.02).to(dt).cuda()
        c = cuda_lanes.encode(t)
        gpu = cuda_lanes.decode(c)
        checks[str(dt)] = bool(torch.equal(gpu.cpu().view(torch.uint8), cuda_lanes.decode_cpu(c).view(torch.uint8))
                               and torch.equal(gpu.view(torch.uint8), t.view(torch.uint8)))
    res["bit_identical"] = checks
    n = int(a.gib * 2**30 / 2)
    big = (torch.randn(n, device="cuda") * 0.02).to(torch.bfloat16)
    c = cuda_lanes.encode(big)
    cuda_lanes.decode(c)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(5):
        start.record()
        cuda_lanes.decode(c)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    res["decode_gbps_best"] = 2 * n / min(times) / 1e9
    res["coded_ratio_bf16"] = c.nbytes / (2 * n)
    m = torch.nn.Sequential(*[torch.nn.Linear(2048, 2048, bias=False) for _ in range(8)]).to(torch.bfloat16).cuda()
    x = torch.randn(64, 2048, dtype=torch.bfloat16, device="cuda")
    with torch.no_grad():
        ref = m(x)
        wzt.compress_module(m)
        res["module_bit_identical"] = bool(torch.equal(m(x), ref))
        res["module_coded_ratio"] = wzt.coded_bytes(m) / (8 * 2048 * 2048 * 2)
        res["peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(res, indent=1))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "lanes_check.json").write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
