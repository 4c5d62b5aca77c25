"""Devices and numeric precision: `auto` choices and the autocast context."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import torch

from tfcli.errors import TfcliError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# oneDNN (PyTorch's CPU bf16 matmuls) caches a kernel per matrix shape, and batches of
# sentences come in hundreds of shapes: the default cache of 1024 grew a training process by
# ~8 MB per step and slowed it down. 64 kernels hold the shapes of about one training step:
# measured over 200 quickstart updates, bf16 trained 8% faster than with 16 for +170 MB of
# memory, and no faster with 256. Read by oneDNN at its first use, so setting it here (before
# any matmul) takes effect.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")


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
    return precision


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes in on this kind of device right now, or None when it is off."""
    try:
        on = torch.is_autocast_enabled(device_type)
        return torch.get_autocast_dtype(device_type) if on else None
    except TypeError:  # torch < 2.4: per-device functions
        if device_type == "cpu":
            on = torch.is_autocast_cpu_enabled()
            return torch.get_autocast_cpu_dtype() if on else None
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


BF16_ROWS = 256  # see pad_rows_for_bf16


def pad_rows_for_bf16(x: torch.Tensor) -> bool:
    """True when x's matmuls run in bf16 on the CPU for training, where they pay per shape.

    oneDNN, which runs PyTorch's bf16 matmuls on the CPU, builds a kernel for every matrix
    shape, and batches of sentences come in hundreds of shapes: the quickstart's bf16 step
    took 220 ms on one batch seen again and again, 310 ms on a stream of new batches. Padding
    the rows of each matmul (the linear layers and the loss) up to a multiple of BF16_ROWS
    leaves a handful of shapes: 5,264 -> 7,410 target tokens/s over 150 updates. fp32, whose
    matmuls do not pay per shape, was 7% slower with the padding, so it goes without.
    Translation (no grad) goes without too: its rows are few and the padding would dominate.
    """
    return (
        x.device.type == "cpu"
        and torch.is_grad_enabled()
        and autocast_dtype("cpu") == torch.bfloat16
    )


def padded_rows(x: torch.Tensor) -> int:
    """How many zero rows (first dimension) bring x's rows up to a multiple of BF16_ROWS."""
    return -x.size(0) % BF16_ROWS


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision for `bf16`/`fp16`; nothing for `fp32`.

    On the CPU under bf16, attention runs on SDPA's math kernel: its bf16 matmuls use the
    CPU's matrix units, while the CPU flash kernel's backward pass is several times slower
    at translation's short sequence lengths (measured: a training step 1.7x faster).
    """
    if precision not in DTYPES:
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast(device_type=device.type, dtype=DTYPES[precision]))
        if device.type == "cpu":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        yield
