"""One timed translation run in a process of its own, for bench_systems.py.

    python benchmarks/system_run.py --run RUN --system tfcli --precision int8 \
        --batching tokens --size 4000 --src data/de-en/test.de --ref data/de-en/test.en

Loads one system (tfcli at a precision, or CTranslate2 at a compute type, on the same
weights), cuts the source sentences into batches by the shared rule below, decodes one batch
untimed (warm-up), then times the decoding of all of them, and prints one JSON line: seconds,
sentences, generated target tokens (EOS excluded), the process's peak resident memory, and the
BLEU of the output against the references (when given). With several sizes (a sweep: one
model load for all of them) it prints a line for each; the peak memory is then the process's
peak so far.

Batches, the same for every system: the sentences sorted by source length (longest first),
then cut either into groups of `--size` sentences or by tfcli's `token_batches` rule into
groups of at most `--size` padded source tokens. Each batch gets one length limit,
decode.max_len_a * longest source + decode.max_len_b, since CTranslate2 takes one per batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tfcli.checkpoint import find_checkpoint, load_checkpoint  # noqa: E402
from tfcli.data.batching import pad_sources, token_batches  # noqa: E402
from tfcli.data.text import read_lines  # noqa: E402
from tfcli.model.kernels import configure_threads_and_kernels  # noqa: E402
from tfcli.translation.scoring import bleu  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="run directory or checkpoint")
    p.add_argument("--system", choices=["tfcli", "ctranslate2"], required=True)
    p.add_argument("--precision", required=True, help="tfcli precision or CT2 compute type")
    p.add_argument("--batching", choices=["tokens", "sentences"], required=True)
    p.add_argument(
        "--size",
        required=True,
        help="tokens or sentences per batch; a comma-separated list times each in turn",
    )
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--ref", type=Path, help="references for BLEU")
    p.add_argument("--sentences", type=int, default=0, help="first N lines (0: all)")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--ct2-dir", type=Path, help="the float32 CTranslate2 export of --run")
    return p.parse_args()


def make_batches(ids: list[list[int]], batching: str, size: int) -> list[list[int]]:
    """Row numbers per batch, longest sentences first."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    if batching == "sentences":
        return [order[i : i + size] for i in range(0, len(order), size)]
    return token_batches(order, [len(s) + 1 for s in ids], size)


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Tfcli:
    """tfcli's Translator, fed the prepared batches (its own batching is bypassed)."""

    def __init__(self, run: Path, precision: str, beam: int) -> None:
        from tfcli.translation.translator import load_translator

        self.translator = load_translator(run, beam=beam, n_best=1, precision=precision)
        self.tok = self.translator.src_tokenizer

    def decode(self, batch: list[list[int]], limit: int) -> list[list[int]]:
        import dataclasses

        from tfcli.model.kernels import precision_scope
        from tfcli.translation.search import search

        t = self.translator
        settings = dataclasses.replace(t.settings, max_len_a=0.0, max_len_b=limit)
        src = pad_sources(batch).to(t.device)
        with precision_scope(t.device, t.autocast_precision):
            return [h[0].tokens for h in search(t.model, src, settings)]

    def text(self, out: list[int]) -> str:
        return self.translator.tgt_tokenizer.decode(out)


class CTranslate2:
    """CTranslate2 on the same weights (exported as float32, converted at load)."""

    def __init__(self, ct2_dir: Path, compute_type: str, beam: int, alpha: float) -> None:
        import ctranslate2
        import sentencepiece as spm

        threads = torch.get_num_threads()
        self.translator = ctranslate2.Translator(
            str(ct2_dir), device="cpu", compute_type=compute_type, intra_threads=threads
        )
        self.src = spm.SentencePieceProcessor(model_file=str(ct2_dir / "source.spm"))
        self.tgt = spm.SentencePieceProcessor(model_file=str(ct2_dir / "target.spm"))
        self.beam, self.alpha = beam, alpha
        self.banned = [[self.tgt.id_to_piece(i)] for i in (0, 2)]  # PAD, BOS: tfcli's bans

    def decode(self, batch: list[list[int]], limit: int) -> list[list[str]]:
        pieces = [[self.src.id_to_piece(i) for i in ids] for ids in batch]
        results = self.translator.translate_batch(
            pieces,
            beam_size=self.beam,
            length_penalty=self.alpha,
            max_decoding_length=limit - 1,  # CTranslate2 does not count EOS
            max_batch_size=0,
            suppress_sequences=self.banned,
        )
        return [r.hypotheses[0] for r in results]

    def text(self, out: list[str]) -> str:
        return self.tgt.decode_pieces(out)


def main() -> None:
    args = parse_args()
    configure_threads_and_kernels(args.threads)
    ckpt = load_checkpoint(find_checkpoint(args.run), with_state=False)
    decode, positions = ckpt.config.decode, ckpt.config.model.max_positions
    if args.system == "tfcli":
        system = Tfcli(args.run, args.precision, args.beam)
    else:
        system = CTranslate2(args.ct2_dir, args.precision, args.beam, decode.length_penalty)
    lines = read_lines(args.src)
    refs = read_lines(args.ref) if args.ref else None
    if args.sentences:
        lines, refs = lines[: args.sentences], refs and refs[: args.sentences]
    ids = [s[: positions - 1] for s in ckpt.src_tokenizer.encode(lines)]
    for size in (int(x) for x in args.size.split(",")):
        batches = [
            (rows, min(positions, int(decode.max_len_a * len(ids[rows[0]]) + decode.max_len_b)))
            for rows in make_batches(ids, args.batching, size)
            if ids[rows[0]]
        ]
        result = timed_run(system, ids, batches, refs, len(lines))
        print(json.dumps({"size": size, **result}), flush=True)


def timed_run(system, ids, batches, refs, n_lines: int) -> dict:
    """Warm up on the shortest batch, then time the decoding of all `batches`."""
    system.decode([ids[i] for i in batches[-1][0]], batches[-1][1])
    outputs: dict[int, object] = {}
    start = time.perf_counter()
    for rows, limit in batches:
        for row, out in zip(rows, system.decode([ids[i] for i in rows], limit)):
            outputs[row] = out
    seconds = time.perf_counter() - start
    texts = [system.text(outputs[i]) if i in outputs else "" for i in range(n_lines)]
    return {
        "seconds": seconds,
        "sentences": len(outputs),
        "tokens": sum(len(o) for o in outputs.values()),
        "peak_rss_mib": peak_rss_mib(),
        "bleu": bleu(texts, refs) if refs else None,
        "batches": len(batches),
    }


if __name__ == "__main__":
    main()
