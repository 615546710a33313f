"""Device selection, mixed precision and the host allocator, in one place for distillation,
evaluation and expert training."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator

import torch

from condensekit.errors import UsageError
from condensekit.precision import PRECISIONS


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
            raise UsageError(f"device {spec!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif device.type not in ("cpu", "mps"):
        raise UsageError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: any CUDA GPU with bf16 support, or a CPU with
    AVX512-BF16/AMX (oneDNN's own test). Elsewhere bf16 autocast is emulated."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return True  # mps and others: nothing to say
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def precision_note(device: torch.device, name: str) -> str | None:
    """A warning for a precision that will run slower than fp32 on ``device``, else None."""
    if name == "bf16" and not native_bf16(device):
        return (
            f"--precision bf16 on this {device.type} ({torch.backends.cpu.get_cpu_capability()}) has no native "
            "bf16: it is emulated and runs several times slower than fp32 (a ConvNet-3 step: 8.7x on an AVX2 CPU); "
            "use --precision fp32"
        )
    return None


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[None]:
    """Mixed precision (bf16 on CPU, fp16 on CUDA) when ``enabled``, else a no-op."""
    return precision(device, ("bf16" if device.type == "cpu" else "fp16") if enabled else "fp32")


@contextlib.contextmanager
def precision(device: torch.device, name: str) -> Iterator[None]:
    """Autocast to ``name`` ("bf16", "fp16": see :mod:`condensekit.precision`) on ``device``,
    or nothing for "fp32"."""
    dtype = PRECISIONS[name]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=getattr(torch, dtype)):
        yield


#: glibc mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_allocator_tuned: bool | None = None


def reuse_freed_memory() -> bool:
    """Let glibc keep freed tensor memory for reuse instead of returning it to the kernel.

    glibc serves every allocation above 32 MB with a fresh ``mmap`` and unmaps it on free, so
    each large activation (a 640-image ConvNet block is 335 MB) is page-faulted and zeroed
    anew: about as costly as the convolution that fills it. With mmap off and a high trim
    threshold, freed blocks stay in the heap and are reused: a DataDAM iteration at CIFAR-10
    IPC 10 went from 3.7 s to 1.9 s on one core (``benchmarks/speed.py`` with and without
    ``CONDENSEKIT_MALLOC=system``).
    The price is that the process keeps its peak memory until it exits. Set
    ``CONDENSEKIT_MALLOC=system`` to keep the C library's defaults. Idempotent; returns
    whether the tuning is active. A no-op outside Linux/glibc.
    """
    global _allocator_tuned  # noqa: PLW0603 -- process-wide, set once (idempotent)
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get("CONDENSEKIT_MALLOC", "").strip().lower() in ("system", "default", "off", "0"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc: musl's mallopt is a stub
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _allocator_tuned = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return _allocator_tuned
