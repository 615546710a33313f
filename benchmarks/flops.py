"""The fp32 FLOP floor of this machine, shared by the benchmarks (``speed.py``,
``eval_speed.py``): the peak rate it sustains, timed on a large matmul and on ConvNet-3's main
convolution, and seconds per call of any function."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], repeat: int, device: torch.device) -> float:
    """Seconds per call (after one warm-up call)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def peak_gflops(device: torch.device) -> float:
    """The fp32 FLOP rate this machine sustains: the better of a 2048^3 matmul and a
    128->128 3x3 convolution on 256 x 32 x 32 maps (ConvNet-3's main layer)."""
    a = torch.randn(2048, 2048, device=device)
    matmul_s = timed(lambda: a @ a, 3, device)
    x = torch.randn(256, 128, 32, 32, device=device)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(device)
    with torch.no_grad():
        conv_s = timed(lambda: conv(x), 3, device)
    return max(2 * 2048**3 / matmul_s, 2 * 256 * 128 * 128 * 9 * 32 * 32 / conv_s) / 1e9
