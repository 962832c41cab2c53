"""What the CPU can compute natively, so a precision it cannot run fast is refused rather than emulated.

bf16 autocast on a CPU without bf16 units (AVX512-BF16, AMX-BF16, Arm BF16) runs through conversions and is
slower than float32; with them it is faster at the same loss. The flags come from the kernel (/proc/cpuinfo),
which knows what the silicon has; torch's `get_cpu_capability()` names only the vector ISA (e.g. "AVX512").
"""

from __future__ import annotations

import functools
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 (AVX512, AMX); Arm's "Features" line says "bf16"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`); empty where /proc/cpuinfo does not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def bf16_supported() -> bool:
    """True when the CPU has bf16 arithmetic units."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)
