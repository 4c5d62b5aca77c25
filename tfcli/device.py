"""Devices and numeric precision: the `auto` choices and autocast."""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
from collections.abc import Iterator
from pathlib import Path

import torch

from tfcli.errors import TfcliError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TfcliError(f"device {name!r} asked for, but no CUDA GPU is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise TfcliError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX), where bf16 pays off."""
    if platform.system() != "Linux":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 where the device runs it natively, else fp32; fp16 needs CUDA."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise TfcliError(f"precision {precision!r} is not one of auto, fp32, bf16, fp16")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise TfcliError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        # PyTorch then converts around fp32 arithmetic: on an AVX2 CPU, `tfcli eval` of 200
        # test sentences took 2.3-2.8 times as long as in fp32.
        log.warning(
            "precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), so it is "
            "emulated and runs slower than fp32"
        )
    return precision


def resolve_inference_precision(precision: str, device: torch.device) -> str:
    """Translation's precision: training's choices and int8 (the CPU's int8 kernels); `auto` ->
    int8 on the CPU, bf16 (else fp16) on CUDA."""
    if precision == "auto":
        return "int8" if device.type == "cpu" else resolve_precision("auto", device)
    if precision == "int8":
        if device.type != "cpu":
            raise TfcliError("precision int8 runs on the CPU; use --device cpu, or fp16/bf16")
        return precision
    return resolve_precision(precision, device)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes in on this kind of device right now, or None when it is off."""
    on = torch.is_autocast_enabled(device_type)
    return torch.get_autocast_dtype(device_type) if on else None


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision for `bf16`/`fp16`; nothing for `fp32`."""
    if precision not in DTYPES:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=DTYPES[precision]):
        yield
