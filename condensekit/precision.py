"""The numeric precisions a user can ask for (``--precision``), without importing torch so the
CLI can offer them as choices at start-up; :func:`condensekit.runtime.precision` applies one."""

from __future__ import annotations

from condensekit.errors import UsageError

#: ``--precision`` value -> the name of the torch dtype autocast runs in (None: plain fp32).
PRECISIONS: dict[str, str | None] = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


def check_precision(precision: str, device_type: str) -> None:
    """Refuse a precision the device cannot run (fp16 autocast exists on CUDA only)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device_type != "cuda":
        raise UsageError(f"--precision fp16 needs a CUDA device, not {device_type}; use bf16 or fp32")
