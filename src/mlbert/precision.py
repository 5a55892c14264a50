"""Pick the arithmetic precision of training from what this CPU does fast, measured, never assumed.

bf16 halves the memory traffic and doubles matmul throughput only on CPUs with native bf16
instructions (AVX-512 BF16, AMX); elsewhere torch emulates it and runs far slower than fp32. `auto`
therefore asks twice: does the CPU claim native bf16, and is a bf16 matmul actually faster here?
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")
MIN_SPEEDUP = 1.2  # bf16 must beat fp32 by this much in the start-up check to be chosen


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16() -> bool:
    """Does the CPU claim native bf16 arithmetic (and does oneDNN agree where it can say)?"""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        if check is not None and not check():
            return False
    except Exception:  # noqa: BLE001 - older builds: fall back to the flags
        pass
    return bool(cpu_flags() & set(NATIVE_FLAGS))


def matmul_seconds(dtype: torch.dtype, size: int = 768, reps: int = 8) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    return (time.perf_counter() - started) / reps


def resolve_precision(requested: str, device: torch.device | str = "cpu") -> tuple[str, str]:
    """-> (precision to use, why). fp32 and bf16 are taken as asked; auto decides on this machine."""
    if requested in ("fp32", "bf16"):
        return requested, "as requested"
    if str(device).startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return "bf16", "GPU supports bf16"
        return "fp32", "GPU without bf16"
    if not native_bf16():
        return "fp32", "CPU has no native bf16 (no avx512_bf16/amx_bf16)"
    speedup = matmul_seconds(torch.float32) / matmul_seconds(torch.bfloat16)
    if speedup >= MIN_SPEEDUP:
        return "bf16", f"native bf16, matmul {speedup:.1f}x faster than fp32 here"
    return "fp32", f"native bf16 claimed but matmul only {speedup:.1f}x fp32 here"
