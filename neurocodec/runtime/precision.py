"""Whether bfloat16 pays on a device. Without native support (a CPU without AVX512-BF16 or
AMX, e.g. AVX2-only), autocast to bf16 is emulated and 10-20x slower than float32 (a 32-wide
linear layer over 400 K rows, one thread: 0.48 s fp32, 6.0 s bf16), so configurations that
ask for bf16 (coolchic's fitting, `train --precision auto`) fall back to float32 there."""
from __future__ import annotations

import torch


def bf16_native(device: torch.device) -> bool:
    """Whether the device computes bfloat16 matmuls and convolutions natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False
