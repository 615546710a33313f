"""condensekit.runtime: the warning for a precision the device only emulates."""

from __future__ import annotations

import torch

from condensekit.runtime import native_bf16, precision_note

CPU = torch.device("cpu")


def test_fp32_never_gets_a_note() -> None:
    assert precision_note(CPU, "fp32") is None


def test_bf16_note_appears_exactly_when_the_cpu_lacks_native_bf16() -> None:
    note = precision_note(CPU, "bf16")
    if native_bf16(CPU):
        assert note is None
    else:
        assert note is not None and "use --precision fp32" in note
        assert torch.backends.cpu.get_cpu_capability() in note
