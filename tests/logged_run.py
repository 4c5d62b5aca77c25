"""A run directory as training leaves it, written directly: three checkpoints and a
metrics.jsonl with train, validation and test records (the shape `tfcli train` writes)."""

from __future__ import annotations

import json
from pathlib import Path

from tfcli.checkpoint import Checkpoint, save_checkpoint
from tfcli.config import Config, DataConfig
from tfcli.run_dir import RunDir

STATE = {"optimizer": {}, "epoch": 2, "batch_in_epoch": 5, "elapsed": 93.25}
TEST = {
    "bleu": 31.5,
    "chrf": 52.25,
    "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
    "chrf_signature": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0",
    "bleu_detail": "BLEU = 31.50",
    "sentences": 20,
}
TRAIN = [
    {
        "kind": "train",
        "step": s,
        "epoch": s // 20,
        "train_loss": 6.0 - s / 10,
        "lr": s * 1e-4,
        "tgt_tok_s": 900.0,
    }
    for s in (5, 10, 15, 20, 25, 30, 35, 40)
]
VALID = [
    {
        "kind": "valid",
        "step": 20,
        "epoch": 1,
        "train_loss": 4.0,
        "elapsed_s": 40.0,
        "dev_loss": 4.5,
        "dev_ppl": 90.0,
        "dev_bleu": 3.5,
        "valid_s": 1.0,
    },
    {
        "kind": "valid",
        "step": 30,
        "epoch": 1,
        "train_loss": 3.0,
        "elapsed_s": 70.0,
        "dev_loss": 3.75,
        "dev_ppl": 42.5,
        "dev_bleu": 9.25,
        "valid_s": 1.0,
    },
    {
        "kind": "valid",
        "step": 40,
        "epoch": 2,
        "train_loss": 2.0,
        "elapsed_s": 93.0,
        "dev_loss": 3.5,
        "dev_ppl": 33.1,
        "dev_bleu": 8.0,
        "valid_s": 1.0,
    },
]


def write_logged_run(path: Path, model, tokenizer, kinds: bool = True) -> RunDir:
    """A run of `model` trained to step 40, its best checkpoint at step 30. Without `kinds`,
    the metrics log is as older runs wrote it: no "kind", no train records."""
    run = RunDir(path)
    run.path.mkdir(parents=True, exist_ok=True)
    config = Config(data=DataConfig(src_lang="fr", tgt_lang="it"), model=model.cfg)
    weights = model.state_dict()
    for target, step, state in ((run.best, 30, {}), (run.step(30), 30, {}), (run.last, 40, STATE)):
        save_checkpoint(target, Checkpoint(weights, config, tokenizer, tokenizer, step, state))
    records = (
        [*TRAIN, *VALID] if kinds else [{k: v for k, v in r.items() if k != "kind"} for r in VALID]
    )
    records.append(
        {"kind": "test", "step": 40, "test": TEST} if kinds else {"step": 40, "test": TEST}
    )
    run.metrics.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return run
