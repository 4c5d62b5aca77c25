"""Translation throughput: tfcli's cached search against two decoders without a cache and CTranslate2.

    python benchmarks/bench_translate.py -m runs/quickstart
    python benchmarks/bench_translate.py --random-model --sentences 200 --repeats 1

Measured as CTranslate2 measures its own benchmarks: the source is tokenized and the model
loaded before timing; sentences are sorted by length and cut into batches of 32; the figure is
sentences (and generated target tokens, EOS excluded) per second of decoding, the median over
`--repeats` passes after a warm-up batch. The systems decode the same batches with the same
beam and max length (one per batch: a * longest source + b from the decode settings):

    tfcli        tfcli.search (greedy / batched beam with a key/value cache)
    cache-free   the same search, but every step re-runs the decoder layers over the whole
                 prefix (cache_free.py): what the key/value cache alone buys
    plain        beam search without any of the decoding speed work (plain_decoder.py): no
                 cache, the encoder output copied per beam, every batch decoded until its last
                 sentence ends: what the cache and the search's batching buy together
                 Both baselines are slow, so they decode every k-th batch
                 (--baseline-sentences) and their speed ratios are taken against tfcli on
                 those same batches.
    ctranslate2  the same weights exported with tfcli.export (float32), when installed; PAD and
                 BOS are suppressed, as tfcli.search never produces them

Length penalty: tfcli uses GNMT's ((5 + len) / 6)^alpha, CTranslate2 len^alpha, so beam
outputs may differ slightly; greedy outputs should agree. A random-weight model (`--random-model`,
or when no trained run exists) rarely emits EOS: outputs run to the max length, which measures
throughput fine but says nothing about translation quality.

Also measured: the cold start of `tfcli translate -m RUN "one sentence"` as a subprocess
(process start, imports, model load, one translation; same thread count) and peak memory per
system (resident set on the CPU, reset before each system; allocated memory on CUDA).
On a machine shared with other work, `--threads 1` gives the steadiest figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from cache_free import CacheFree
from common import (
    DATA,
    ROOT,
    format_table,
    machine,
    median_time,
    peak_memory_mib,
    reset_peak_memory,
    write_json,
)
from ct2_system import ct2_translator, run_ct2
from plain_decoder import plain_beam_search
from torch import nn
from workload import BATCH_SENTENCES, Subject, Workload, load_subject, make_workload

from tfcli.config import DecodeConfig
from tfcli.data.text import read_lines
from tfcli.data.tokenizer import BOS_ID, PAD_ID, Tokenizer
from tfcli.device import resolve_device
from tfcli.errors import TfcliError
from tfcli.model.kernels import configure_threads_and_kernels
from tfcli.translation.search import Hypothesis, search

SEARCHES = {"greedy": 1, "beam 4": 4}
BASELINES = ("cache-free", "plain")  # decoders without a cache, timed on a share of the batches


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-m", "--model", type=Path, help="run directory or checkpoint [runs/quickstart]")
    p.add_argument("--random-model", action="store_true", help="random weights, quickstart shape")
    p.add_argument("--src", type=Path, default=DATA / "test.de", help="source sentences")
    p.add_argument("--sentences", type=int, default=1000, help="first N lines of --src")
    p.add_argument("--repeats", type=int, default=3, help="timed passes (median)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0: PyTorch's default")
    p.add_argument(
        "--baseline-sentences",
        type=int,
        default=256,
        help="the baselines' share: this many sentences spread over all lengths (0: all)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip both cache-free baselines")
    p.add_argument("--no-ctranslate2", action="store_true", help="skip CTranslate2")
    p.add_argument("--no-cold-start", action="store_true", help="skip the subprocess timing")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-': stdout)")
    return p.parse_args()


# --- the systems -------------------------------------------------------------------------------


def run_batches(
    work: Workload, decode: Callable[[torch.Tensor, int], list[list[int]]]
) -> list[list[int]]:
    """decode(src, limit) every batch; returns the best token ids per sentence."""
    return [ids for src, limit in zip(work.ids, work.limits) for ids in decode(src, limit)]


def run_torch(model: nn.Module, work: Workload, beam: int, alpha: float) -> list[list[int]]:
    """Decode every batch with tfcli.search (model: tfcli's or CacheFree, same interface)."""

    def decode(src: torch.Tensor, limit: int) -> list[list[int]]:
        settings = DecodeConfig(beam=beam, length_penalty=alpha, max_len_a=0.0, max_len_b=limit)
        hyps: list[list[Hypothesis]] = search(model, src, settings)  # type: ignore[arg-type]
        return [h[0].tokens for h in hyps]

    return run_batches(work, decode)


def run_plain(model: nn.Module, work: Workload, beam: int, alpha: float) -> list[list[int]]:
    """Decode every batch with the plain decoder."""

    def decode(src: torch.Tensor, limit: int) -> list[list[int]]:
        return plain_beam_search(model, src, beam, alpha, limit)  # type: ignore[arg-type]

    return run_batches(work, decode)


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Row:
    system: str
    search: str
    seconds: float
    sentences: int
    tokens: int
    peak_mib: float
    same_as_tfcli: float | None = None  # share of sentences with identical output
    # tfcli only: speed relative to each baseline, on the baseline's batches
    speedups: dict[str, float] = field(default_factory=dict)

    @property
    def sentences_per_s(self) -> float:
        return self.sentences / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


# A system decodes a workload with a beam size and returns the best output per sentence.
Decoder = Callable[[Workload, int], list[list[Any]]]


def measure(
    system: str,
    decoder: Decoder,
    work: Workload,
    search_name: str,
    args: argparse.Namespace,
    device: torch.device,
) -> tuple[Row, list[list[Any]]]:
    """Warm up on the shortest batch, then time `--repeats` passes over the whole workload (median)."""
    beam = SEARCHES[search_name]
    decoder(work.shortest(), beam)
    reset_peak_memory(device)
    seconds, outputs = median_time(lambda: decoder(work, beam), args.repeats, device)
    tokens = sum(len(o) for o in outputs)
    row = Row(system, search_name, seconds, len(outputs), tokens, peak_memory_mib(device))
    print(
        f"  {system:12s} {search_name:7s} {len(outputs):5d} sentences {seconds:8.2f} s",
        file=sys.stderr,
    )
    return row, outputs


def cold_start(run: Path, repeats: int) -> tuple[float | None, str]:
    """Median wall time of `tfcli translate -m RUN "..."` in a fresh process, and the command."""
    exe = shutil.which("tfcli")
    cmd = [exe] if exe else [sys.executable, "-m", "tfcli"]
    shown = "tfcli" if exe else "python -m tfcli"
    cmd += ["translate", "-m", str(run), "--device", "cpu", "Guten Morgen, wie geht es Ihnen?"]
    # the same thread count as the in-process measurements
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            return None, f"{shown} translate failed: {last}"
    return statistics.median(times), f"{shown} translate -m RUN '...'"


def agreement(outputs: list[list[Any]], ours: list[list[int]], tok: Tokenizer) -> float:
    """Share of sentences whose output equals tfcli's (as ids, or as pieces for CTranslate2)."""
    same = 0
    for out, mine in zip(outputs, ours):
        if out and isinstance(out[0], str):
            mine = [tok.sp.id_to_piece(i) for i in mine]
        same += out == mine
    return same / max(len(ours), 1)


def torch_decoders(args: argparse.Namespace, subject: Subject) -> dict[str, Decoder]:
    """tfcli, and the two baselines (BASELINES) unless skipped."""
    alpha, model = subject.decode.length_penalty, subject.model
    found: dict[str, Decoder] = {"tfcli": lambda w, b: run_torch(model, w, b, alpha)}
    if not args.no_baseline:
        cache_free = CacheFree(model)
        found["cache-free"] = lambda w, b: run_torch(cache_free, w, b, alpha)
        found["plain"] = lambda w, b: run_plain(model, w, b, alpha)
    return found


def ct2_decoder(
    args: argparse.Namespace, subject: Subject, workdir: Path, device: torch.device
) -> Decoder | None:
    """CTranslate2 on the same weights, when asked for and installed."""
    translator = None if args.no_ctranslate2 else ct2_translator(subject.run, workdir, device)
    if translator is None:
        return None
    alpha = subject.decode.length_penalty
    banned = [[subject.tgt_tok.sp.id_to_piece(i)] for i in (PAD_ID, BOS_ID)]
    return lambda w, b: run_ct2(translator, w.pieces, w.limits, b, alpha, banned)


def benchmark(
    args: argparse.Namespace, subject: Subject, workdir: Path, device: torch.device
) -> list[Row]:
    """Time every system on every search; the baselines on a spread of the batches, against
    tfcli on the same batches.

    CTranslate2 runs last: once its thread pool has run, PyTorch in the same process decodes
    slower (benchmarks/README.md), so measuring it between PyTorch systems would slow those.
    """
    work = make_workload(subject, read_lines(args.src)[: args.sentences], device)
    few = work.spread(args.baseline_sentences)
    systems = torch_decoders(args, subject)
    rows: list[Row] = []
    ours_by_search: dict[str, list[list[int]]] = {}
    for name in SEARCHES:
        ours, ours_out = measure("tfcli", systems["tfcli"], work, name, args, device)
        rows.append(ours)
        ours_by_search[name] = ours_out
        baselines = [b for b in BASELINES if b in systems]
        if baselines:
            same, same_out = ours, ours_out
            if few is not work:
                same, same_out = measure("tfcli", systems["tfcli"], few, name, args, device)
            for baseline in baselines:
                row, out = measure(baseline, systems[baseline], few, name, args, device)
                row.same_as_tfcli = agreement(out, same_out, subject.tgt_tok)
                ours.speedups[baseline] = row.seconds / same.seconds
                rows.append(row)
    ct2 = ct2_decoder(args, subject, workdir, device)
    if ct2 is not None:
        for name in SEARCHES:
            row, out = measure("ctranslate2", ct2, work, name, args, device)
            row.same_as_tfcli = agreement(out, ours_by_search[name], subject.tgt_tok)
            rows.append(row)
    return sorted(rows, key=lambda r: list(SEARCHES).index(r.search))  # stable: systems in order


def report(rows: list[Row], cold: tuple[float | None, str] | None, subject: Subject) -> dict:
    """Print the table (to stdout) and return the figures as plain data."""
    table = []
    for r in rows:
        ct2 = next((c for c in rows if c.search == r.search and c.system == "ctranslate2"), None)
        comparable = ct2 is not None and r.system not in BASELINES  # same sentences
        table.append(
            [
                r.system,
                r.search,
                r.sentences,
                r.sentences_per_s,
                r.tokens_per_s,
                *(1.0 if r.system == b else r.speedups.get(b) for b in BASELINES),
                ct2.seconds / r.seconds if comparable and ct2 else None,
                r.peak_mib,
                None if r.same_as_tfcli is None else 100 * r.same_as_tfcli,
            ]
        )
    headers = ["system", "search", "sentences", "sent/s", "tok/s", *(f"x {b}" for b in BASELINES)]
    print(format_table([*headers, "x ctranslate2", "peak MiB", "% same as tfcli"], table))
    print(
        "x cache-free, x plain, x ctranslate2: speed relative to that system on the same "
        "sentences; % same: sentences whose output equals tfcli's"
    )
    if cold is not None:
        seconds, what = cold
        print(f"cold start ({what}): " + (f"{seconds:.2f} s" if seconds else "skipped"))
    weights = "random weights (outputs run to the max length)" if subject.random else "trained"
    threads = torch.get_num_threads()
    print(f"model: {weights}; batches of {BATCH_SENTENCES} sentences; {threads} threads")
    return {
        "machine": machine(),
        "random_weights": subject.random,
        "batch_sentences": BATCH_SENTENCES,
        "rows": [
            {**r.__dict__, "sentences_per_s": r.sentences_per_s, "tokens_per_s": r.tokens_per_s}
            for r in rows
        ],
        "cold_start_s": cold[0] if cold else None,
    }


def main() -> None:
    args = parse_args()
    configure_threads_and_kernels(args.threads)
    try:
        device = resolve_device(args.device)
        if not args.src.is_file():
            raise TfcliError(f"{args.src}: source file not found; give one with --src")
        with tempfile.TemporaryDirectory(prefix="tfcli-bench-") as tmp:
            workdir = Path(tmp)
            subject = load_subject(args.model, args.random_model, workdir, device)
            rows = benchmark(args, subject, workdir, device)
            cold = None if args.no_cold_start else cold_start(subject.run, args.repeats)
            table_out = sys.stderr if args.json == "-" else sys.stdout  # keep JSON clean
            with contextlib.redirect_stdout(table_out):
                payload = report(rows, cold, subject)
    except TfcliError as e:
        sys.exit(f"error: {e}")
    if args.json:
        write_json(args.json, payload)


if __name__ == "__main__":
    main()
