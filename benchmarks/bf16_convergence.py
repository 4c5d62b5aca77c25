"""Does bf16 autocast train as well as fp32? The quickstart recipe, both ways, side by side.

    python benchmarks/bf16_convergence.py --steps 300 --every 50

Trains configs/quickstart.yaml twice from the same seed on the same batches, once under bf16
autocast and once in fp32, and prints the training loss (label-smoothed, per target token) and
the dev loss at every validation, plus the wall time of each run. The two curves should agree
within the noise of a different rounding: a difference far below the loss drop between two
validations.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from tfcli.config import load_config
from tfcli.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def run(precision: str, steps: int, every: int, workdir: Path) -> tuple[list[dict], float]:
    """Train the quickstart for `steps` updates; return its validation records and seconds."""
    overrides = [
        f"train.precision={precision}",
        f"train.max_steps={steps}",
        f"train.valid_every={every}",
        f"train.log_every={every}",
        "train.max_minutes=0",
        "train.valid_bleu_sentences=50",
        "train.average_best=false",
        "data.test=null",
    ]
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", overrides)
    run_dir = workdir / precision
    start = time.perf_counter()
    train(cfg, run_dir)
    seconds = time.perf_counter() - start
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {p: run(p, args.steps, args.every, Path(tmp)) for p in ("bf16", "fp32")}
    print(f"{'step':>6} {'train bf16':>11} {'train fp32':>11} {'dev bf16':>9} {'dev fp32':>9}")
    for a, b in zip(runs["bf16"][0], runs["fp32"][0]):
        print(
            f"{a['step']:>6} {a['train_loss']:>11} {b['train_loss']:>11} "
            f"{a['dev_loss']:>9} {b['dev_loss']:>9}"
        )
    bf16_s, fp32_s = runs["bf16"][1], runs["fp32"][1]
    print(f"wall time: bf16 {bf16_s:.0f} s, fp32 {fp32_s:.0f} s ({fp32_s / bf16_s:.2f}x)")


if __name__ == "__main__":
    main()
