"""The CPU speed work under the model: kernel choices and replacements that change how fast it
runs, never what it computes. The measurements behind each are in benchmarks/README.md.

- `linear` / `Linear`: F.linear, with the rows padded to a few shapes for bf16 training on
  the CPU, where oneDNN builds (and caches) a kernel per matrix shape.
- `dropout` / `Dropout`: inverted dropout whose CPU mask takes four 16-bit lanes from each
  64-bit random draw, instead of a Bernoulli draw per element.
- `configure_threads_and_kernels`: the oneDNN kernel-cache size and the thread count, set
  when training or translation starts.
- `on_own_thread`: work run on a thread that ends with it, so that a long-lived decoding
  thread is the only one holding a pool of OpenMP threads.
- `precision_scope`: autocast, and the attention kernel that suits the precision.
- `attend_few`: attention for the few queries of a decoding step, as two batched matmuls.
- `top_k`: torch.topk over a vocabulary, through the maxima of chunks of it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from tfcli.device import autocast, autocast_dtype

BF16_ROWS = 256  # matmul rows are padded to a multiple of this (see pad_rows_for_bf16)
ONEDNN_KERNELS = 64  # oneDNN kernel-cache entries: about one training step's matrix shapes

T = TypeVar("T")


def configure_threads_and_kernels(threads: int = 0) -> None:
    """Set the CPU thread count (0: PyTorch's default) and the oneDNN kernel cache.

    oneDNN caches a kernel per matrix shape, and batches of sentences come in hundreds of
    shapes: its default of 1024 entries grows a training process step by step. It reads the
    setting at its first use, so this is called before the first matmul of a run.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_KERNELS))
    if threads:
        torch.set_num_threads(threads)


def on_own_thread(work: Callable[[], T]) -> T:
    """work() run on a new thread that ends with it; its result returned, its error raised.

    OpenMP (libgomp) keeps a pool of worker threads for each thread that has run a parallel
    operation, until that thread ends. Once it manages more threads than there are cores,
    every pool sleeps between operations instead of spinning, and each of a decoding step's
    hundred small operations pays a wake-up: a server decoding on its worker thread after
    loading the model on the main one ran at half speed on 2 cores. Loading on a thread of
    its own leaves the decoding thread the only pool.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="tfcli-load") as one:  # joined on exit
        return one.submit(work).result()


def pad_rows_for_bf16(x: torch.Tensor) -> bool:
    """True when x's matmuls run in bf16 on the CPU for training, where they pay per shape.

    Padding the rows of each matmul (the linear layers and the loss) up to a multiple of
    BF16_ROWS leaves oneDNN a handful of shapes instead of hundreds. fp32 matmuls do not pay
    per shape, and translation (no grad) has few rows, so both go without.
    """
    return (
        x.device.type == "cpu"
        and torch.is_grad_enabled()
        and autocast_dtype("cpu") == torch.bfloat16
    )


def padded_rows(x: torch.Tensor) -> int:
    """How many zero rows (first dimension) bring x's rows up to a multiple of BF16_ROWS."""
    return -x.size(0) % BF16_ROWS


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear; for bf16 training on the CPU over rows padded to few shapes.

    Shape: x (..., in), weight (out, in) -> (..., out)
    """
    if not pad_rows_for_bf16(x):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.size(-1))  # (M, in)
    out = F.linear(pad_rows(rows), weight, bias)  # (M + pad, out)
    return out[: rows.size(0)].reshape(*x.shape[:-1], weight.size(0))


def pad_rows(x: torch.Tensor, value: float = 0) -> torch.Tensor:
    """x (M, ...) with rows of `value` after it, up to a multiple of BF16_ROWS rows.

    A concatenation writes the added rows only (F.pad fills the whole result first).
    """
    extra = padded_rows(x)
    if extra == 0:
        return x
    return torch.cat([x, x.new_full((extra, *x.shape[1:]), value)])


class Linear(nn.Linear):
    """nn.Linear through `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

    def rows(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """x through output rows start:stop of the weight alone: (..., in) -> (..., stop - start)"""
        bias = None if self.bias is None else self.bias[start:stop]
        return linear(x, self.weight[start:stop], bias)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1 / (1 - p).

    On the CPU the keep mask comes from 16-bit random numbers, four to each 64-bit draw of
    PyTorch's generator (so it follows torch.manual_seed), with p rounded to a multiple of
    1/65536. Elsewhere (CUDA), F.dropout.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    n = x.numel()
    # random_(-2**63, None) draws all 64 bits; a bare random_() never sets the sign bit
    draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    lanes = draws.view(torch.int16)[:n].view(x.shape)  # uniform over -32768 .. 32767
    keep = lanes >= round(p * 65536) - 32768  # P(keep) = 1 - p
    return x * torch.where(keep, 1.0 / (1.0 - p), 0.0).to(x.dtype)


class Dropout(nn.Module):
    """`dropout` as a module (active in training mode), in place of nn.Dropout."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def attend_few(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention of a few queries per row over contiguous keys and values: softmax(q k^T / sqrt(E)) v.

    A decoding step has one query per hypothesis (self-attention) or one per beam of a
    sentence (encoder-decoder attention); at such sizes SDPA's CPU kernels cost several times
    the arithmetic, and two batched matmuls over B*H rows do not.

    Shape: q (B, H, Q, E), k and v (B, H, K, E) contiguous, mask broadcastable to
    (B, H, Q, K), True = may attend -> (B, H, Q, E)
    """
    b, h, n_q, e = q.shape
    n_k = k.size(2)
    q = q.reshape(b * h, n_q, e) * e**-0.5  # (B*H, Q, E), a copy: queries are few
    scores = torch.bmm(q, k.view(b * h, n_k, e).transpose(1, 2))  # (B*H, Q, K)
    if mask is not None:
        scores.view(b, h, n_q, n_k).masked_fill_(~mask, float("-inf"))
    weights = torch.softmax(scores, -1)
    return torch.bmm(weights, v.view(b * h, n_k, e)).view(b, h, n_q, e)


TOP_K_CHUNK = 32  # vocabulary entries per chunk in top_k


def top_k(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest values of each row of x and their indices, best first: torch.topk.

    A row's k largest values lie in the k chunks (of TOP_K_CHUNK entries) with the largest
    maxima, so top_k takes the chunk maxima (a plain max reduction, which PyTorch vectorizes),
    then the top k of those k chunks alone. On the CPU, topk with indices over a whole
    8,000-word row took 3-4 times as long (a search step's largest operation after the
    matmuls). Small rows, and rows with too few chunks, go to torch.topk.

    Shape: x (N, V) -> values and indices (N, k)
    """
    n, v = x.shape
    if v < 16 * k * TOP_K_CHUNK:
        return x.topk(k, dim=1)
    pad = -v % TOP_K_CHUNK
    if pad:
        x = F.pad(x, (0, pad), value=float("-inf"))
    chunks = x.view(n, -1, TOP_K_CHUNK)  # (N, V/C, C)
    # in index order, so that ties among the candidates keep the order they have in x
    best = chunks.amax(2).topk(k, dim=1).indices.sort(1).values  # (N, k)
    cand = chunks.gather(1, best[:, :, None].expand(-1, -1, TOP_K_CHUNK)).view(n, -1)  # (N, k*C)
    values, at = cand.topk(k, dim=1)  # (N, k)
    ids = best.gather(1, at // TOP_K_CHUNK) * TOP_K_CHUNK + at % TOP_K_CHUNK
    return values, ids


@contextlib.contextmanager
def precision_scope(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast for `precision`; on the CPU under bf16 also SDPA's math kernel for attention.

    The math kernel's bf16 matmuls use the CPU's matrix units, while the CPU flash kernel's
    backward pass is several times slower at translation's short sequence lengths.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(autocast(device, precision))
        if device.type == "cpu" and precision == "bf16":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        yield
