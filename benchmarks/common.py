"""Helpers shared by the benchmark scripts: timing, matmul peak, memory, model shapes, tables.

Importing this module puts the repository root on `sys.path`, so the scripts run from a plain
checkout (`python benchmarks/bench_train.py`) as well as from an installed package.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tfcli.config import Config, ModelConfig, TokenizerConfig, load_config  # noqa: E402
from tfcli.data.text import read_lines  # noqa: E402
from tfcli.data.tokenizer import Tokenizer, train_tokenizer  # noqa: E402

DATA = ROOT / "data" / "de-en"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tfcli-bench"


# --- timing -----------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Wall time of one call (the device is synchronized before and after) and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def call_times(
    fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 0
) -> tuple[list[float], Any]:
    """Wall times of `repeats` calls after `warmup` untimed ones, and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(max(repeats, 1)):
        t, result = timed(fn, device)
        times.append(t)
    return times, result


def median_time(
    fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 0
) -> tuple[float, Any]:
    """Median wall time over `repeats` calls after `warmup` untimed ones, and the last result."""
    times, result = call_times(fn, repeats, device, warmup)
    return statistics.median(times), result


def matmul_peak_gflops(
    device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10
) -> float:
    """Measured dense matmul throughput: 2 n^3 FLOPs per (n, n) @ (n, n), the fastest of
    `repeats`. A peak is the best the machine does: on a shared VM the median of a few products
    swung from 80 to 144 GFLOP/s between runs and put a training step above "100%"."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    times, _ = call_times(lambda: a @ b, repeats, device, warmup=2)
    seconds = min(times)
    return 2 * n**3 / seconds / 1e9


# --- memory -----------------------------------------------------------------------------------


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA allocator stats, or the process's resident-set high-water mark."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc: give freed heap back to the OS
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError):  # Linux: writing 5 to clear_refs resets VmHWM
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory since `reset_peak_memory`: CUDA allocated, else resident set size (VmHWM).

    Without /proc (not Linux) this is the process's peak RSS so far (getrusage), which never
    resets.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


# --- model shapes and data ---------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A model shape to benchmark: its config (model, training settings) and vocabulary size."""

    name: str
    config: Config
    vocab: int
    source: str  # where the numbers come from

    @property
    def model(self) -> ModelConfig:
        return self.config.model


def model_shape(name: str) -> Shape:
    """The model and training settings of configs/{name}.yaml."""
    path = ROOT / "configs" / f"{name}.yaml"
    cfg: Config = load_config(path)
    return Shape(name, cfg, cfg.tokenizer.vocab_size, str(path.relative_to(ROOT)))


def sample_pairs(n: int | None = None, seed: int = 1) -> tuple[list[str], list[str]] | None:
    """`n` random pairs (None: all) of data/de-en/train.{de,en}; None without the corpus."""
    src_path, tgt_path = DATA / "train.de", DATA / "train.en"
    if not (src_path.is_file() and tgt_path.is_file()):
        return None
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if n is None or n >= len(src):
        return src, tgt
    idx = sorted(random.Random(seed).sample(range(len(src)), n))
    return [src[i] for i in idx], [tgt[i] for i in idx]


def bench_tokenizer(vocab: int, lines: int = 20_000) -> Tokenizer:
    """A shared sentencepiece model trained on a sample of the corpus, cached between runs.

    Trained on `lines` lines (half source, half target); without the corpus, on synthetic text.
    """
    pairs = sample_pairs(lines // 2)
    text = pairs[0] + pairs[1] if pairs else _synthetic_text(lines)
    key = hashlib.sha1(f"{vocab}\n".encode() + "\n".join(text).encode()).hexdigest()[:12]
    path = CACHE / f"spm-{vocab}-{key}.model"
    if path.is_file():
        return Tokenizer.load(path)
    tok = train_tokenizer(text, TokenizerConfig(vocab_size=vocab))
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(path)
    return tok


def _synthetic_text(lines: int) -> list[str]:
    rng = random.Random(0)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(4000)
    ]
    return [" ".join(rng.choices(words, k=rng.randint(3, 40))) for _ in range(lines)]


# --- reporting --------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (platform.processor() says only "x86_64" on Linux)."""
    try:
        for line in (
            Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines()
        ):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: numbers right-aligned, text left-aligned."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(r[i], int | float) or r[i] is None for r in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write `payload` to `path`, or to stdout for `-`."""
    text = json.dumps(payload, indent=2, default=str) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text, encoding="utf-8")
