"""Device and dtype choice, decided at run time because CI hosts differ (AVX2 only vs AVX-512 with BF16)."""

from __future__ import annotations

import contextlib
import functools
from typing import Literal

import torch

DTypeName = Literal["auto", "float32", "bfloat16", "float16"]


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_units(flags: frozenset[str] | set[str]) -> str:
    """Which bf16 matrix hardware the flags show: ``amx``, ``avx512_bf16`` or ``none``.

    Why: AVX-512 hosts with and without AMX tiles differ about 1.8x in this toolkit's wall times (measured on
    the demo), so timings are only comparable when reports say which one they ran on.
    """
    if "amx_bf16" in flags:
        return "amx"
    return "avx512_bf16" if "avx512_bf16" in flags else "none"


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where bf16 matmuls beat fp32 on this CPU (AVX-512 BF16 / AMX); plain AVX2 emulates bf16 slowly."""
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch
        return False
    return "AVX512" in cap.upper() and bf16_units(_cpu_flags()) != "none"


def autocast(device: str, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Mixed precision in ``dtype`` on ``device`` for bf16/fp16; a no-op context for fp32."""
    if dtype in (torch.bfloat16, torch.float16):
        return torch.autocast(device_type=device.split(":")[0], dtype=dtype)
    return contextlib.nullcontext()


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def resolve_dtype(name: DTypeName | str = "auto", device: str | None = None) -> torch.dtype:
    """``auto``: bf16 on GPUs with bf16 support and on CPUs with native bf16, else fp32."""
    if name != "auto":
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
                    "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
        except KeyError:
            raise ValueError(f"unknown dtype '{name}'; use auto, float32, bfloat16 or float16") from None
    device = device or default_device()
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def describe() -> str:
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    return (f"device={default_device()} cpu_capability={cap} fast_bf16={cpu_has_fast_bf16()} "
            f"bf16_units={bf16_units(_cpu_flags())} threads={torch.get_num_threads()} "
            f"default_dtype={resolve_dtype('auto')}")


def cpu_times() -> dict[str, int] | None:
    """Machine-wide CPU time counters (Linux /proc/stat, clock ticks), or None where there are none.

    Why: wall times on a shared virtual machine depend on the neighbours; the share of *steal* time (CPU the
    hypervisor gave to other guests) between two readings says how much, so reports can state it.
    """
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {n: int(v) for n, v in zip(names, fields[1:], strict=False)}


def steal_share(start: dict[str, int] | None, end: dict[str, int] | None) -> float | None:
    """Fraction of all CPU ticks between two :func:`cpu_times` readings that were stolen by the hypervisor."""
    if not start or not end:
        return None
    total = sum(end.values()) - sum(start.values())
    return (end.get("steal", 0) - start.get("steal", 0)) / total if total > 0 else None
