"""Training throughput and model FLOP utilisation: tfcli's Transformer against torch.nn.Transformer.

    python benchmarks/bench_train.py                      # quickstart and base, fp32 and bf16
    python benchmarks/bench_train.py --shape quickstart --precision fp32 --steps 4 --warmup 1

Both sides run the same training step on the same batches, alternating step by step so that
noise from other work on the machine hits both alike:

    tfcli      tfcli.model.Transformer
    reference  nn.Embedding (shared, scaled by sqrt(D)) + sinusoidal positions + dropout
               + nn.Transformer(batch_first) + Linear output tied to the embedding

    step       autocast (bf16 or none) forward, label-smoothed cross-entropy summed over target
               tokens / target tokens, backward, clip when the config clips, optimizer step
               (tfcli.optim.make_optimizer: fused Adam where available). The loss: tfcli as
               tfcli trains (tfcli.model.loss.LabelSmoothedLoss: the output layer and the
               loss a slice of rows at a time); the reference from whole logits with
               F.cross_entropy (tfcli.model.loss.loss_sum).

The reference masks the source padding (src_key_padding_mask, memory_key_padding_mask) and uses a
causal target mask; like tfcli it needs no target padding mask, since padding is on the right.
nn.Transformer adds a final LayerNorm to both stacks even in post-norm: a negligible extra.

Batches are real sentence pairs (data/de-en/train.{de,en}, a sentencepiece model trained on a
20k-line sample, pairs longer than data.max_len dropped) cut by tfcli.data.batch_by_tokens at
train.batch_tokens padded tokens; without the corpus, synthetic sentences of similar lengths.
Both shapes use the same tokenization (the quickstart vocabulary); the base model's output layer
still has its full vocabulary, so its FLOPs are those of the base model.

FLOPs per training step (fwd + bwd = 3 x forward), D d_model, F d_ff, V vocabulary, Le/Ld layers,
s/t real source/target tokens of the batch, B sentences, S/T padded source/target lengths:

    matmul params per token:  encoder Le * (4 D^2 + 2 D F)            (per source token)
                              decoder Ld * (6 D^2 + 2 D F) + D V      (per target token)
                              cross-attention K/V Ld * 2 D^2          (per source token)
    attention (QK^T and AV):  2 B D (Le S^2 + Ld (T^2 + T S))        multiply-adds
    FLOPs = 6 * (params-per-token * tokens + attention multiply-adds)

Linear layers count real tokens only (padding is overhead and lowers MFU; its share is printed);
attention counts the padded (B, L, L) products the kernels compute, causal ones in full.
MFU = FLOPs per second / the matmul peak measured at start (the fastest of 10 (2048, 2048) @
(2048, 2048) products, fp32, and bf16 where the device computes it natively).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
from common import (
    Shape,
    bench_tokenizer,
    format_table,
    machine,
    matmul_peak_gflops,
    model_shape,
    sample_pairs,
    timed,
    write_json,
)
from reference_model import Reference
from torch import nn

from tfcli.config import ModelConfig, TrainConfig
from tfcli.data.batching import Batch, batch_by_tokens, collate, padding_share
from tfcli.data.pairs import Example, make_examples
from tfcli.data.tokenizer import Tokenizer
from tfcli.device import cpu_has_native_bf16, resolve_device
from tfcli.model.kernels import configure_threads_and_kernels, precision_scope
from tfcli.model.loss import LabelSmoothedLoss, loss_sum
from tfcli.model.transformer import Transformer
from tfcli.training.optim import make_optimizer


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=["quickstart", "base", "all"], default="all")
    p.add_argument("--precision", choices=["fp32", "bf16", "all"], default="all")
    p.add_argument("--steps", type=int, default=10, help="timed steps (base: a third, at least 2)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--batch-tokens", type=int, help="padded tokens per batch [train.batch_tokens]")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0: PyTorch's default")
    p.add_argument(
        "--systems",
        default="tfcli,reference,reference-compiled",
        help="alternating in this process: tfcli, reference, reference-compiled",
    )
    p.add_argument(
        "--no-own-process", action="store_true", help="skip the reference alone in a process"
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-': stdout)")
    return p.parse_args()


# --- batches -----------------------------------------------------------------------------------


def corpus_examples(tok: Tokenizer, max_len: int) -> tuple[list[Example], str]:
    """Tokenized training pairs, or synthetic ones when the corpus is absent."""
    pairs = sample_pairs()
    if pairs is not None:
        examples, _ = make_examples(pairs[0], pairs[1], tok, tok, max_len=max_len)
        return examples, "data/de-en/train"
    rng = random.Random(0)
    examples = []
    for i in range(20_000):
        n = min(max_len - 1, max(1, int(rng.lognormvariate(2.8, 0.6))))
        src = [rng.randrange(4, len(tok)) for _ in range(n)]
        tgt = [rng.randrange(4, len(tok)) for _ in range(max(1, int(n * rng.uniform(0.8, 1.2))))]
        examples.append(Example(i, src, tgt))
    return examples, "synthetic lengths (data/de-en/train not found)"


def pick_batches(examples: list[Example], batch_tokens: int, n: int) -> list[Batch]:
    """`n` batches drawn at random from one epoch's length-bucketed batches."""
    rng = random.Random(1)
    groups = batch_by_tokens(examples, batch_tokens, rng)
    return [collate(g) for g in rng.sample(groups, min(n, len(groups)))]


# --- the tfcli side ------------------------------------------------------------------------------


def tfcli_config(shape: Shape) -> ModelConfig:
    """The shape with one shared vocabulary and tied embeddings, like the reference."""
    return replace(shape.model, tie_embeddings="all")


# --- the step ----------------------------------------------------------------------------------


@dataclass
class Trainee:
    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    times: list[float]


def make_trainee(name: str, model: nn.Module, train: TrainConfig, device: torch.device) -> Trainee:
    """The model on the device with tfcli's optimizer (fused Adam where PyTorch has it)."""
    model = model.to(device).train()
    return Trainee(name, model, make_optimizer(model, train), [])


def train_step(
    t: Trainee, batch: Batch, device: torch.device, precision: str, train: TrainConfig
) -> None:
    """What tfcli's trainer does per update (accumulate 1): loss per target token, clip, Adam."""
    with precision_scope(device, precision):
        if isinstance(t.model, Transformer):  # as tfcli trains: the sliced output loss
            objective = LabelSmoothedLoss(t.model, train.label_smoothing)
            loss = objective(batch.src, batch.tgt_in, batch.tgt_out)
        else:
            logits = t.model(batch.src, batch.tgt_in)  # (B, T, V)
            loss = loss_sum(logits, batch.tgt_out, train.label_smoothing)
    (loss / batch.tgt_tokens).backward()
    if train.clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), train.clip_norm)
    t.optimizer.step()
    t.optimizer.zero_grad(set_to_none=True)


def step_flops(cfg: ModelConfig, vocab: int, batch: Batch) -> float:
    """Model FLOPs of one training step (see the module docstring)."""
    d, f = cfg.d_model, cfg.d_ff
    le, ld = cfg.encoder_layers, cfg.decoder_layers
    b, s_len = batch.src.shape
    t_len = batch.tgt_in.size(1)
    per_src = le * (4 * d * d + 2 * d * f) + ld * 2 * d * d
    per_tgt = ld * (6 * d * d + 2 * d * f) + d * vocab
    linear = per_src * batch.src_tokens + per_tgt * batch.tgt_tokens
    attention = 2 * b * d * (le * s_len**2 + ld * (t_len**2 + t_len * s_len))
    return 6.0 * (linear + attention)


# --- running -----------------------------------------------------------------------------------


@dataclass
class Result:
    shape: str
    precision: str
    system: str
    step_ms: float
    tokens_per_s: float  # source + target
    tgt_tokens_per_s: float
    gflops: float
    mfu: float | None


def trainee(name: str, shape: Shape, device: torch.device) -> Trainee:
    """tfcli's model, the reference, or the reference through torch.compile (dynamic shapes:
    batches come in many; its compilation falls in the untimed warm-up steps)."""
    cfg, train = tfcli_config(shape), shape.config.train
    torch.manual_seed(1)
    if name == "tfcli":
        return make_trainee(name, Transformer(cfg, shape.vocab, shape.vocab), train, device)
    t = make_trainee(name, Reference(cfg, shape.vocab), train, device)
    if name == "reference-compiled":
        t.model = torch.compile(t.model, dynamic=True)
    return t


def run_pair(
    shape: Shape,
    precision: str,
    batches: list[Batch],
    warmup: int,
    device: torch.device,
    peak: float | None,
    systems: list[str],
) -> list[Result]:
    """Train the systems on the same batches, alternating steps."""
    cfg, train = tfcli_config(shape), shape.config.train
    trainees = [trainee(name, shape, device) for name in systems]
    for i, batch in enumerate(batches):
        batch = batch.to(device)
        for t in trainees:
            seconds, _ = timed(partial(train_step, t, batch, device, precision, train), device)
            if i >= warmup:
                t.times.append(seconds)
        print(f"  {shape.name} {precision} step {i + 1}/{len(batches)}", file=sys.stderr)
    timed_batches = batches[warmup:]
    return [summarize(t, shape, cfg, precision, timed_batches, peak) for t in trainees]


def summarize(
    t: Trainee,
    shape: Shape,
    cfg: ModelConfig,
    precision: str,
    batches: list[Batch],
    peak: float | None,
) -> Result:
    """Medians over the timed steps of per-step rates."""

    def med(per_step: Callable[[Batch], float]) -> float:
        return statistics.median(per_step(b) / s for b, s in zip(batches, t.times))

    gflops = med(lambda b: step_flops(cfg, shape.vocab, b)) / 1e9
    return Result(
        shape.name,
        precision,
        t.name,
        1000 * statistics.median(t.times),
        med(lambda b: b.src_tokens + b.tgt_tokens),
        med(lambda b: b.tgt_tokens),
        gflops,
        gflops / peak if peak else None,
    )


def own_process(args: argparse.Namespace, shape: str, precision: str) -> Result:
    """The reference alone, in a process of its own, on the same batches."""
    cmd = [sys.executable, __file__, "--shape", shape, "--precision", precision]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device]
    cmd += ["--threads", str(args.threads), "--systems", "reference", "--no-own-process"]
    if args.batch_tokens:
        cmd += ["--batch-tokens", str(args.batch_tokens)]
    proc = subprocess.run([*cmd, "--json", "-"], capture_output=True, text=True, check=True)
    alone = Result(**json.loads(proc.stdout)["results"][0])
    alone.system = "reference (own process)"
    return alone


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def peaks(device: torch.device, precisions: list[str]) -> dict[str, float]:
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    return {p: matmul_peak_gflops(device, dtypes[p]) for p in precisions}


def report(results: list[Result], peak: dict[str, float], info: dict[str, dict]) -> None:
    by_key = {(r.shape, r.precision, r.system): r for r in results}
    rows = []
    for r in results:
        ref = by_key.get((r.shape, r.precision, "reference"))
        rows.append(
            [
                r.shape,
                r.precision,
                r.system,
                r.step_ms,
                r.tokens_per_s,
                r.tgt_tokens_per_s,
                r.gflops,
                None if r.mfu is None else 100 * r.mfu,
                r.tokens_per_s / ref.tokens_per_s if ref else None,
            ]
        )
    headers = ["shape", "precision", "system", "step ms", "tok/s", "tgt tok/s", "GFLOP/s"]
    print(format_table([*headers, "MFU %", "x reference"], rows))
    print("\nmatmul peak (2048^3): " + ", ".join(f"{p} {g:,.0f} GFLOP/s" for p, g in peak.items()))
    for name, i in info.items():
        print(
            f"{name} ({i['config']}): {i['batches']} batches of <= {i['batch_tokens']} padded "
            f"tokens from {i['data']}, padding {100 * i['padding_share']:.1f}%"
        )
    for (shape, precision, system), r in by_key.items():
        alone = by_key.get((shape, precision, "reference (own process)"))
        fp32_alone = by_key.get((shape, "fp32", "reference (own process)"))
        if system == "tfcli" and alone:
            line = f"{shape} {precision}: tfcli {r.tokens_per_s / alone.tokens_per_s:.2f}x"
            line += " the reference alone in its process"
            if fp32_alone and precision != "fp32":
                line += f", {r.tokens_per_s / fp32_alone.tokens_per_s:.2f}x its fp32"
            print(line)
    print(f"{torch.get_num_threads()} threads; medians over timed steps; tok/s = source + target")


def main() -> None:
    args = parse_args()
    configure_threads_and_kernels(args.threads)
    device = resolve_device(args.device)
    shapes = ["quickstart", "base"] if args.shape == "all" else [args.shape]
    precisions = ["fp32", "bf16"] if args.precision == "all" else [args.precision]
    if "bf16" in precisions and not bf16_supported(device):
        print("note: no native bf16 on this device; measuring fp32 only", file=sys.stderr)
        precisions = [p for p in precisions if p != "bf16"] or ["fp32"]
    peak = peaks(device, precisions)
    quick = model_shape("quickstart")
    tok = bench_tokenizer(quick.vocab)
    examples, data = corpus_examples(tok, quick.config.data.max_len)
    results: list[Result] = []
    info: dict[str, dict] = {}
    for name in shapes:
        shape = model_shape(name)
        steps = args.steps if name == "quickstart" else max(2, args.steps // 3)
        batch_tokens = args.batch_tokens or shape.config.train.batch_tokens
        batches = pick_batches(examples, batch_tokens, args.warmup + steps)
        info[name] = {
            "config": shape.source,
            "data": data,
            "batches": len(batches),
            "batch_tokens": batch_tokens,
            "padding_share": padding_share(batches),
        }
        for precision in precisions:
            systems = args.systems.split(",")
            results += run_pair(
                shape, precision, batches, args.warmup, device, peak[precision], systems
            )
            if not args.no_own_process:
                alone = own_process(args, name, precision)
                alone.mfu = alone.gflops / peak[precision]  # against this run's peak
                results.append(alone)
    with contextlib.redirect_stdout(sys.stderr if args.json == "-" else sys.stdout):
        report(results, peak, info)
    if args.json:
        payload = {
            "machine": machine(),
            "matmul_peak_gflops": peak,
            "batches": info,
            "results": [r.__dict__ for r in results],
        }
        write_json(args.json, payload)


if __name__ == "__main__":
    main()
