"""Which precision a device computes fast: ``dtype="auto"`` (the default) resolved per device and CPU.

bf16 pays only where the CPU computes it natively (AVX-512 BF16 or AMX): measured 3.2x faster than fp32
on an AMD EPYC with AVX-512 BF16, and 5.7x *slower* on an AVX2-only AMD EPYC, where PyTorch emulates it.
On an Intel Xeon with AMX: 2.7x faster natively, 5.0x slower with oneDNN capped at AVX2. So ``auto`` is
bf16 where the CPU has AVX-512 BF16 or AMX (and ``$ONEDNN_MAX_CPU_ISA`` leaves them on), fp32 elsewhere,
and bf16 (fp16 before Ampere) on CUDA.
``$CLAMP2_DTYPE`` sets what ``auto`` means (e.g. ``fp32`` to keep the reference's exact numbers).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

AUTO = "auto"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that compute bf16 natively
log = logging.getLogger("clamp2_engine")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux's ``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


# oneDNN's instruction-set caps (``$ONEDNN_MAX_CPU_ISA``) below AVX-512 BF16: bf16 is emulated under them
# (measured on an AMX Xeon capped at AVX2: 5.0x slower than fp32, where it is 2.7x faster uncapped)
CAPS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX), and oneDNN may use it."""
    flags = cpu_flags() if flags is None else flags
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper() in CAPS_WITHOUT_BF16
    return any(f in flags for f in BF16_FLAGS) and not capped


def device_type(device: str | torch.device | None) -> str:
    """``cpu``, ``cuda``, ``mps`` ... of a ``torch.device`` or its spelling (``None``: ``cpu``)."""
    return str(getattr(device, "type", device) or "cpu").split(":")[0]


def check(dtype: str | None, source: str = "dtype") -> str | None:
    """``dtype`` when it names a precision (or is ``None``), else a ``ValueError`` naming the choices."""
    from clamp2_engine.errors import about
    from clamp2_engine.types import DTYPES

    if dtype is not None and dtype not in DTYPES:
        raise about(ValueError(f"unknown {source} {dtype!r}; choose from {', '.join(DTYPES)}"), "dtype")
    return dtype


def auto_dtype(device: str | torch.device | None = "cpu") -> str:
    """What ``auto`` picks on ``device`` (``$CLAMP2_DTYPE`` first, when it names a precision): bf16 (fp16
    before Ampere) on CUDA; on a CPU bf16 where it is native, else fp32."""
    chosen = env_dtype()
    if chosen:
        return check(chosen, "$CLAMP2_DTYPE") or chosen
    if device_type(device) == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if native_bf16() else "fp32"


def env_dtype() -> str | None:
    """The precision ``$CLAMP2_DTYPE`` names, if any."""
    chosen = os.environ.get("CLAMP2_DTYPE", "").strip().lower()
    return chosen if chosen and chosen != AUTO else None


INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # CPUs with int8 dot-product instructions


def native_int8(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI or AMX), where int8 graphs pay."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in INT8_FLAGS)


def check_int8(on_cpu: bool) -> None:
    """A one-line warning when int8 graphs run on a CPU without VNNI or AMX: there they measured no faster
    than fp32, and less accurate (an AVX2-only EPYC: 1.72x the reference against fp32's 1.66x, cosine
    0.998; with VNNI: 4.61x against 1.70x)."""
    if on_cpu and not native_int8():
        log.warning(
            "int8 on this CPU (no VNNI or AMX) ran no faster than fp32 on an AVX2-only EPYC (1.72x the "
            "reference against 1.66x) and is less accurate (cosine 0.998): an fp32 export is the better choice"
        )


def resolve(dtype: str | None, device: str | torch.device | None = "cpu") -> str:
    """The one precision resolver (inference, query planning and training): ``dtype`` checked, ``auto``
    (or ``None``) resolved for ``device``; fp16 on a CPU is refused; an explicit bf16 on a CPU that
    emulates it runs, with a one-line warning."""
    if check(dtype) in (None, AUTO):
        dtype = auto_dtype(device)
    on_cpu = device_type(device) == "cpu"
    if dtype == "fp16" and on_cpu:
        from clamp2_engine.errors import about

        raise about(ValueError("fp16 is not supported on CPU; use bf16 or fp32"), "dtype")
    if dtype == "bf16" and on_cpu and not native_bf16():
        log.warning(
            "bf16 on this CPU (no AVX-512 BF16 or AMX) is emulated: it ran 5.7x slower than fp32 on an "
            "AVX2-only EPYC; --dtype auto picks fp32 here"
        )
    return dtype
