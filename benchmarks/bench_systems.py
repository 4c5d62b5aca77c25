"""Translation speed, each system in its own process: tfcli's precisions against CTranslate2's
compute types, on the same weights, sentences and batches.

    python benchmarks/bench_systems.py -m runs/quickstart
    python benchmarks/bench_systems.py --random-base --sentences 200    # configs/base.yaml shape

Every measurement is a fresh process (system_run.py): load, one untimed batch, then all of
the sentences timed. Two passes:

1. the batch size: each system and batching (token-based, sentence-based) tries every size of
   --token-sizes / --sentence-sizes on the first --sweep-sentences sentences, once; the
   fastest size is kept;
2. the figures: every system at its best size of each batching, on all --sentences, --repeats
   times, the systems interleaved (one run of each, then the next round), so that drift on
   the machine hits all alike. Medians are reported.

Rows: sent/s, generated target tokens/s, peak resident memory of the process (model and
decoding), and the BLEU of the output; `x ct2 best` is the speed relative to CTranslate2's
fastest compute type and batching. A compute type that CTranslate2 refuses on this machine is
listed with its reason.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import DATA, ROOT, format_table, machine, write_json

TFCLI = ("fp32", "bf16", "int8")
CT2 = ("float32", "int8", "int8_float32", "bfloat16", "int8_bfloat16")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-m", "--model", type=Path, help="run directory or checkpoint [runs/quickstart]")
    p.add_argument("--random-base", action="store_true", help="configs/base.yaml, random weights")
    p.add_argument("--src", type=Path, default=DATA / "test.de")
    p.add_argument("--ref", type=Path, default=DATA / "test.en")
    p.add_argument("--sentences", type=int, default=0, help="first N sentences (0: all)")
    p.add_argument("--sweep-sentences", type=int, default=500)
    p.add_argument("--token-sizes", default="1000,2000,4000,8000")
    p.add_argument("--sentence-sizes", default="16,32,64,128")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="0: PyTorch's default (all cores)")
    p.add_argument("--systems", default="all", help="e.g. tfcli:int8,ctranslate2:int8")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-': stdout)")
    return p.parse_args()


@dataclass(frozen=True)
class System:
    name: str  # tfcli or ctranslate2
    precision: str  # tfcli precision or CTranslate2 compute type

    def __str__(self) -> str:
        return f"{self.name} {self.precision}"


def systems(args: argparse.Namespace) -> tuple[list[System], list[str]]:
    """The systems to run, and notes on the compute types CTranslate2 refuses here."""
    import ctranslate2

    from tfcli.device import cpu_has_native_bf16

    supported = ctranslate2.get_supported_compute_types("cpu")
    found, notes = [], []
    for precision in TFCLI:
        if precision == "bf16" and not cpu_has_native_bf16():
            # Without AVX512-BF16 or AMX, PyTorch emulates bf16 in fp32 arithmetic: slower
            # than fp32, so no one would choose it here.
            notes.append("tfcli bf16: no native bf16 on this CPU (AVX512-BF16 or AMX)")
            continue
        found.append(System("tfcli", precision))
    for compute in CT2:
        if compute in supported:
            found.append(System("ctranslate2", compute))
        else:
            notes.append(
                f"ctranslate2 {compute}: not supported by this CPU or build ({sorted(supported)})"
            )
    if args.systems != "all":
        wanted = {tuple(s.split(":")) for s in args.systems.split(",")}
        found = [s for s in found if (s.name, s.precision) in wanted]
    return found, notes


def run_sizes(
    args: argparse.Namespace,
    run: Path,
    ct2: Path,
    system: System,
    batching: str,
    sizes: list[int],
    n: int,
) -> list[dict]:
    """One process of `system`, timing each batch size in turn: a result per size."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "system_run.py"), "--run", str(run)]
    cmd += ["--system", system.name, "--precision", system.precision, "--ct2-dir", str(ct2)]
    cmd += ["--batching", batching, "--size", ",".join(map(str, sizes)), "--src", str(args.src)]
    cmd += ["--ref", str(args.ref), "--sentences", str(n), "--beam", str(args.beam)]
    cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"error: {system} {batching} {sizes} failed: {last}")
    return [json.loads(line) for line in proc.stdout.strip().splitlines()[-len(sizes) :]]


def best_sizes(args, run, ct2, found) -> dict[tuple[System, str], int]:
    """The fastest size of each system and batching, from one run each on the sweep sentences
    (one process per system and batching, timing its sizes in turn)."""
    sizes = {
        "tokens": [int(s) for s in args.token_sizes.split(",")],
        "sentences": [int(s) for s in args.sentence_sizes.split(",")],
    }
    best = {}
    for system, batching in itertools.product(found, sizes):
        speed = {}
        for r in run_sizes(args, run, ct2, system, batching, sizes[batching], args.sweep_sentences):
            speed[r["size"]] = r["sentences"] / r["seconds"]
            rate = speed[r["size"]]
            print(f"  sweep {system} {batching} {r['size']}: {rate:.1f} sent/s", file=sys.stderr)
        best[(system, batching)] = max(speed, key=speed.get)
    return best


def measure(args, run, ct2, best) -> dict[tuple[System, str], list[dict]]:
    """--repeats interleaved rounds of every (system, batching) at its best size."""
    results: dict[tuple[System, str], list[dict]] = {key: [] for key in best}
    for round_ in range(args.repeats):
        for (system, batching), size in best.items():
            [r] = run_sizes(args, run, ct2, system, batching, [size], args.sentences)
            results[(system, batching)].append(r)
            rate = r["sentences"] / r["seconds"]
            print(
                f"  round {round_ + 1} {system} {batching} {size}: {rate:.1f} sent/s",
                file=sys.stderr,
            )
    return results


def report(best, results, notes, subject: str) -> dict:
    rows = []
    for (system, batching), runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        first = runs[0]
        rows.append(
            {
                "system": system.name,
                "precision": system.precision,
                "batching": batching,
                "size": best[(system, batching)],
                "sentences_per_s": first["sentences"] / seconds,
                "tokens_per_s": statistics.median(r["tokens"] / r["seconds"] for r in runs),
                "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                "bleu": first["bleu"],
                "seconds": [r["seconds"] for r in runs],
            }
        )
    ct2_top = max(
        (r for r in rows if r["system"] == "ctranslate2"),
        key=lambda r: r["sentences_per_s"],
        default=None,
    )
    table = [
        [
            r["system"],
            r["precision"],
            r["batching"],
            r["size"],
            r["sentences_per_s"],
            r["tokens_per_s"],
            r["peak_rss_mib"],
            r["bleu"],
            r["sentences_per_s"] / ct2_top["sentences_per_s"] if ct2_top else None,
        ]
        for r in rows
    ]
    headers = ["system", "precision", "batching", "size", "sent/s", "tok/s", "peak MiB"]
    print(format_table([*headers, "BLEU", "x ct2 best"], table))
    for note in notes:
        print(note)
    tf_best = max(
        (r for r in rows if r["system"] == "tfcli"),
        key=lambda r: r["sentences_per_s"],
        default=None,
    )
    if tf_best and ct2_top:
        # Round by round the two ran within seconds of each other, so the spread of these
        # ratios shows how far the machine's drift moves the headline.
        rounds = ", ".join(
            f"{c / t:.2f}" for t, c in zip(tf_best["seconds"], ct2_top["seconds"], strict=True)
        )
        print(
            f"fastest tfcli ({tf_best['precision']}, {tf_best['batching']} {tf_best['size']}): "
            f"{tf_best['sentences_per_s'] / ct2_top['sentences_per_s']:.2f}x CTranslate2's fastest "
            f"({ct2_top['precision']}, {ct2_top['batching']} {ct2_top['size']}); "
            f"round by round {rounds}"
        )
    print(f"{subject}; medians of the rounds; size: tokens or sentences per batch")
    return {"machine": machine(), "subject": subject, "rows": rows, "notes": notes}


def main() -> None:
    args = parse_args()
    from workload import base_checkpoint_run

    from tfcli.translation.export import export_ctranslate2

    with tempfile.TemporaryDirectory(prefix="tfcli-systems-") as tmp:
        if args.random_base:
            run = base_checkpoint_run(Path(tmp))
            subject = "configs/base.yaml shape, random weights (outputs run to the max length)"
        else:
            run = args.model or ROOT / "runs" / "quickstart"
            subject = f"trained model {run}"
        ct2 = export_ctranslate2(run, Path(tmp) / "ct2")
        found, notes = systems(args)
        best = best_sizes(args, run, ct2, found)
        results = measure(args, run, ct2, best)
        payload = report(best, results, notes, subject)
    if args.json:
        write_json(args.json, payload)


if __name__ == "__main__":
    main()
