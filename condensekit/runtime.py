"""Device selection and mixed precision, in one place for distillation and evaluation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from condensekit.errors import UsageError


def select_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; ``cuda``/``cuda:N``/``cpu`` are checked."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"invalid device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif device.type not in ("cpu", "mps"):
        raise UsageError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return device


def pin_memory(device: torch.device) -> bool:
    """Page-locked host memory only pays off when copying to a GPU."""
    return device.type == "cuda"


def autocast_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cpu" else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """Mixed precision (bf16 on CPU, fp16 on CUDA) when ``enabled``, else a no-op."""
    if not enabled:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=autocast_dtype(device)):
        yield
