"""The data side of a big corpus: `tfcli prepare` time and memory, `tfcli train`'s start-up on a
prepared corpus, and an epoch of batches, on a synthetic corpus of --pairs sentence pairs.

    python benchmarks/bench_data.py                       # 5,000,000 pairs (a quiet machine)
    python benchmarks/bench_data.py --pairs 200000        # a quick check that it works

The corpus is the bundled training pairs repeated with light changes (two neighbouring words
swapped, a word dropped, numbers varied), so sentencepiece and the length filters see text
like real text rather than exact copies. Every figure is measured in its own process:

- prepare: wall time and peak RSS of `tfcli prepare` (tokenizer training on a sample of
  --tokenizer-sentences lines, then the parallel encoding). Two memory figures: the largest
  single process of its tree (ru_maxrss from wait4, which covers the workers it waited for),
  and the sum over the tree (the prepare process and its workers), sampled every 0.1 s.
- reuse: the same command again on the unchanged corpus (the cache is reused).
- start-up: `tfcli train --set train.max_steps=1` on the prepared corpus, from process start to
  the log line of its first update, and its peak RSS (VmHWM) at that moment.
- epoch: building an epoch's batch list from the index, and padding every batch (no model).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import ROOT, cpu_model, format_table
from stream_figures import STREAM_HEADERS, stream_rows, translate_figures

FIRST_UPDATE = "first update of this start"
TARGETS = {
    "prepare_s_per_m": 120.0,  # seconds per million pairs, on 2 cores
    "rss_mib": 2048.0,  # prepare and training start-up, at 5M pairs
    "startup_s": 15.0,
}


# --- the synthetic corpus -------------------------------------------------------------------


def _perturb(src: str, tgt: str, rng: random.Random) -> tuple[str, str]:
    """One light change: swap two neighbouring words, drop a word, or vary the numbers."""
    op = rng.randrange(4)
    if op == 3 or not re.search(r"\d", src + tgt):
        sides = []
        for line in (src, tgt):
            words = line.split()
            if len(words) > 2:
                i = rng.randrange(len(words) - 1)
                if op % 2:
                    words[i], words[i + 1] = words[i + 1], words[i]
                else:
                    del words[i]
            sides.append(" ".join(words))
        return sides[0], sides[1]
    number = str(rng.randrange(1, 10_000))
    return re.sub(r"\d+", number, src), re.sub(r"\d+", number, tgt)


def build_corpus(pairs: int, workdir: Path, seed: int = 1) -> Path:
    """workdir/train.{de,en}: the bundled pairs, then perturbed copies, `pairs` in all."""
    data = ROOT / "data" / "de-en"
    src = (data / "train.de").read_text(encoding="utf-8").splitlines()
    tgt = (data / "train.en").read_text(encoding="utf-8").splitlines()
    rng = random.Random(seed)
    prefix = workdir / "train"
    with (
        open(f"{prefix}.de", "w", encoding="utf-8") as fs,
        open(f"{prefix}.en", "w", encoding="utf-8") as ft,
    ):
        for i in range(pairs):
            s, t = src[i % len(src)], tgt[i % len(src)]
            if i >= len(src):
                s, t = _perturb(s, t, rng)
            fs.write(s + "\n")
            ft.write(t + "\n")
    return prefix


# --- measuring a command in its own process ---------------------------------------------------


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(root: int) -> list[int]:
    """root and its descendants, from /proc/*/stat's parent ids."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def measure(cmd: list[str], watch: str | None = None) -> dict[str, Any]:
    """Run `cmd`; wall time, ru_maxrss of its tree, the sampled peak of the tree's summed RSS,
    and (with `watch`) the time and the main process's VmHWM when stderr first shows it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    out: dict[str, Any] = {"tree_peak_kib": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            total = sum(_rss_kib(pid) for pid in _tree(proc.pid))
            out["tree_peak_kib"] = max(out["tree_peak_kib"], total)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tail: list[str] = []
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip()
        tail = (tail + [line])[-20:]
        if watch and watch in line and "watch_s" not in out:
            out["watch_s"] = time.monotonic() - t0
            out["watch_hwm_kib"] = _rss_kib(proc.pid, "VmHWM")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out["wall_s"] = time.monotonic() - t0
    done.set()
    sampler.join()
    out["maxrss_kib"] = usage.ru_maxrss  # the largest process of the tree (Linux: KiB)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n" + "\n".join(tail))
    return out


# --- the figures ----------------------------------------------------------------------------


def tfcli(command: str, config: Path, run: Path, sets: list[str], *extra: str) -> list[str]:
    flags = [arg for s in sets for arg in ("--set", s)]
    return [sys.executable, "-m", "tfcli", command, str(config), "-o", str(run), *flags, *extra]


EPOCH = """
import json, sys, time
from pathlib import Path
from tfcli.data.index_batching import EpochBatches
from tfcli.data.prepared import PreparedCorpus
corpus = PreparedCorpus(Path(sys.argv[1]))
t0 = time.monotonic()
batches = EpochBatches.of_epoch(corpus, int(sys.argv[2]), 1, 0)
t1 = time.monotonic()
for batch in batches:
    pass
t2 = time.monotonic()
print(json.dumps({"plan_s": t1 - t0, "iterate_s": t2 - t1, "batches": len(batches)}))
"""


def epoch_figures(prepared: Path, batch_tokens: int) -> dict[str, float]:
    import json

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-c", EPOCH, str(prepared), str(batch_tokens)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout)


def data_figures(args: argparse.Namespace, workdir: Path) -> list[list[Any]]:
    """The rows of the table: (figure, value, target, met)."""
    from tfcli.config import load_config

    t0 = time.monotonic()
    prefix = build_corpus(args.pairs, workdir)
    print(f"corpus: {args.pairs:,} pairs in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    cache = workdir / "cache"
    sets = [
        f"data.train={prefix}",
        "data.dev=null",
        "data.test=null",
        f"data.cache_dir={cache}",
        f"tokenizer.max_sentences={args.tokenizer_sentences}",
        "train.device=cpu",
    ]
    prep_run = workdir / "prepared-run"
    cold = measure(tfcli("prepare", args.config, prep_run, sets, "--quiet"))
    reuse = [
        measure(tfcli("prepare", args.config, prep_run, sets, "--quiet"))
        for _ in range(args.repeats)
    ]
    train_sets = [*sets, f"tokenizer.model={prep_run / 'spm.model'}", "train.max_steps=1"]
    starts = [
        measure(tfcli("train", args.config, workdir / f"train{i}", train_sets), FIRST_UPDATE)
        for i in range(args.repeats)
    ]
    (prepared,) = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    batch_tokens = load_config(args.config).train.batch_tokens
    epochs = [epoch_figures(prepared, batch_tokens) for _ in range(args.repeats)]

    mib = 1 / 1024
    per_m = cold["wall_s"] / (args.pairs / 1e6)
    startup = statistics.median(s["watch_s"] for s in starts)
    hwm = max(s["watch_hwm_kib"] for s in starts) * mib
    plan = statistics.median(e["plan_s"] for e in epochs)
    rate = statistics.median(e["batches"] / e["iterate_s"] for e in epochs)
    t = TARGETS
    return [
        ["prepare (tokenizer + encoding), s", cold["wall_s"], None, None],
        [
            "prepare, s per 1M pairs",
            per_m,
            f"<= {t['prepare_s_per_m']:.0f}",
            per_m <= t["prepare_s_per_m"],
        ],
        [
            "prepare peak RSS, one process, MiB",
            cold["maxrss_kib"] * mib,
            f"< {t['rss_mib']:.0f}",
            cold["maxrss_kib"] * mib < t["rss_mib"],
        ],
        [
            "prepare peak RSS, tree summed, MiB",
            cold["tree_peak_kib"] * mib,
            f"< {t['rss_mib']:.0f}",
            cold["tree_peak_kib"] * mib < t["rss_mib"],
        ],
        [
            "prepare again (reused), s, median",
            statistics.median(r["wall_s"] for r in reuse),
            None,
            None,
        ],
        [
            "train start-up to 1st update, s, median",
            startup,
            f"< {t['startup_s']:.0f}",
            startup < t["startup_s"],
        ],
        ["train peak RSS before 1st update, MiB", hwm, f"< {t['rss_mib']:.0f}", hwm < t["rss_mib"]],
        ["epoch batch list from the index, s, median", plan, None, None],
        ["epoch iteration (padding), batches/s, median", rate, None, None],
        ["batches in the epoch", epochs[0]["batches"], None, None],
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=5_000_000, help="sentence pairs in the corpus")
    p.add_argument(
        "--workdir", type=Path, help="where the corpus and runs go (default: a temp dir)"
    )
    p.add_argument(
        "-m",
        "--model",
        type=Path,
        default=ROOT / "runs" / "quickstart",
        help="trained run for the translate figures (skipped when it does not exist)",
    )
    p.add_argument(
        "--translate-lines", type=int, default=1_000_000, help="lines piped to tfcli translate"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--repeats", type=int, default=3, help="runs of the repeated figures")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    p.add_argument(
        "--tokenizer-sentences", type=int, default=1_000_000, help="tokenizer.max_sentences"
    )
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_data-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rows = data_figures(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"machine: {cpu_model()}, {cores} cores; {args.pairs:,} pairs; config {args.config.name}; "
        f"tokenizer sample {args.tokenizer_sentences:,} lines"
    )
    table = [
        [name, value, target or "", "" if met is None else ("yes" if met else "NO")]
        for name, value, target, met in rows
    ]
    print(format_table(["figure", "value", "target", "met"], table))
    if (args.model / "config.yaml").exists():
        # memory must not grow with the input: the same figures at 10,000 and at N lines
        figures = translate_figures(args.model, args.translate_lines, 2_000)
        print(
            f"tfcli translate, stdin, model {args.model} (target: peak RSS < 1 GiB at any length)"
        )
        print(format_table(STREAM_HEADERS, stream_rows(figures)))
    else:
        print(f"translate figures skipped: no trained run at {args.model}")
    if args.keep:
        print(f"kept {workdir}")


if __name__ == "__main__":
    main()
