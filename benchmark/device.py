"""Pick the device and dtype: CUDA bf16 when there is a GPU, bf16 on CPUs with native bf16
matmuls (about 4.5x faster than fp32 on this project's CPU), fp32 elsewhere."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}


@dataclass(frozen=True)
class Placement:
    """Where a model runs: `device` ("cpu", "cuda", "cuda:1", ...) and its compute dtype."""

    device: str
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def parse_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(set(_DTYPES))}") from None


def choose_placement(device: str | None = None, dtype: str | None = None) -> Placement:
    """Resolve `device`/`dtype` ("auto" or None means choose); MARINEBENCH_DEVICE/_DTYPE override."""
    device = device or os.environ.get("MARINEBENCH_DEVICE") or "auto"
    dtype = dtype or os.environ.get("MARINEBENCH_DTYPE") or "auto"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    if dtype == "auto":
        if device.startswith("cuda"):
            chosen = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            chosen = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    else:
        chosen = parse_dtype(dtype)
    return Placement(device=device, dtype=chosen)
