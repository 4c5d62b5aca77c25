"""The training loop: inverse-sqrt schedule, label-smoothed loss, AMP, validation, checkpoints.

Run under `torchrun` it trains with DistributedDataParallel: each process takes every
WORLD_SIZE-th batch, and only rank 0 validates, logs and writes files.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import torch

from tfcli import validation
from tfcli.checkpoint import (
    AVERAGE,
    BEST,
    LAST,
    Checkpoint,
    average_weights,
    build_model,
    load_checkpoint,
    step_checkpoint,
)
from tfcli.checkpoint import save_checkpoint as write_checkpoint
from tfcli.config import Config, save_config
from tfcli.data import Batch, epoch_batches
from tfcli.device import autocast, resolve_device, resolve_precision
from tfcli.distributed import Distributed
from tfcli.errors import CheckpointError
from tfcli.model import Transformer, count_parameters
from tfcli.optim import learning_rate, make_optimizer
from tfcli.training_data import load_training_data, read_eval_set
from tfcli.translate import Translator

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Where the loop reports progress (the CLI draws a progress bar)."""

    def update(self, step: int, fraction: float, stats: dict[str, float]) -> None: ...


@dataclass
class TrainState:
    """What resuming needs beyond the weights and the optimizer."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: list[tuple[float, int]] = field(default_factory=list)  # (dev BLEU, step), best first
    bad_validations: int = 0
    elapsed: float = 0.0


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    best_bleu: float | None
    test: dict[str, object] | None
    samples: list[tuple[str, str, str]] = field(default_factory=list)  # (source, reference, output)


class Trainer:
    """Trains one run directory; `run()` resumes it when it already holds a checkpoint."""

    def __init__(self, cfg: Config, run_dir: Path, progress: Progress | None = None) -> None:
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.dist = Distributed()
        device = resolve_device(cfg.train.device)
        if device.type == "cuda" and self.dist.world > 1:
            device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.precision = resolve_precision(cfg.train.precision, device)
        self.dist.setup(device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.state = TrainState()

    # --- setup -------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.cfg
        vocab = len(self.data.src_tok), len(self.data.tgt_tok)
        self.model = Transformer(cfg.model, *vocab).to(self.device)
        log.info(
            "model: %s parameters, %s on %s, %s",
            f"{count_parameters(self.model):,}",
            f"{cfg.model.encoder_layers}+{cfg.model.decoder_layers} layers",
            self.device,
            self.precision,
        )
        self.optimizer = make_optimizer(self.model, cfg.train)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.step_model: torch.nn.Module = self.model
        if cfg.train.compile:
            self.step_model = torch.compile(self.model)
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_model = torch.nn.parallel.DistributedDataParallel(
                self.step_model, device_ids=ids
            )

    def _resume(self) -> None:
        path = self.run_dir / LAST
        if not path.exists():
            return
        ckpt = load_checkpoint(path)
        for section in ("model", "tokenizer"):  # the run's spm.model is kept as it is
            if getattr(ckpt.config, section) != getattr(self.cfg, section):
                raise CheckpointError(
                    f"{path}: the run was trained with different {section} settings; "
                    f"use a new --output-dir or the same {section} section"
                )
        self.model.load_state_dict(ckpt.model)
        self.optimizer.load_state_dict(ckpt.state["optimizer"])
        s = ckpt.state
        self.state = TrainState(
            step=ckpt.step,
            epoch=int(s.get("epoch", 0)),
            batch_in_epoch=int(s.get("batch_in_epoch", 0)),
            best=[(float(b), int(st)) for b, st in s.get("best", [])],
            bad_validations=int(s.get("bad_validations", 0)),
            elapsed=float(s.get("elapsed", 0.0)),
        )
        log.info("resuming %s from step %d (epoch %d)", self.run_dir, ckpt.step, self.state.epoch)

    # --- the loop ----------------------------------------------------------------------

    def run(self) -> TrainResult:
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        self.data = load_training_data(self.cfg, self.run_dir, self.dist)
        self._build()
        self._resume()  # refuses a run trained with other model settings: keep its config.yaml
        if self.dist.main:
            save_config(self.cfg, self.run_dir / "config.yaml")
        t = self.cfg.train
        self.start_time = time.monotonic() - self.state.elapsed
        self.window = {"loss": 0.0, "tokens": 0, "src_tokens": 0, "time": time.monotonic()}
        stop = self.dist.from_main(self._stop_reason())
        while stop is None:
            stop = self._train_epoch()
            if stop is None:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
                if t.max_epochs and self.state.epoch >= t.max_epochs:
                    stop = f"reached train.max_epochs ({t.max_epochs})"
        log.info("training stopped at step %d: %s", self.state.step, stop)
        if self.dist.main and self._last_validated != self.state.step:
            self.validate()
        return self._finish()

    _last_validated = -1

    def _stop_reason(self) -> str | None:
        t, s = self.cfg.train, self.state
        if s.step >= t.max_steps:
            return f"reached train.max_steps ({t.max_steps})"
        if t.max_minutes and time.monotonic() - self.start_time >= t.max_minutes * 60:
            return f"reached train.max_minutes ({t.max_minutes:g})"
        if t.patience and s.bad_validations >= t.patience:
            return f"no better dev BLEU in {t.patience} validations (train.patience)"
        return None

    def _train_epoch(self) -> str | None:
        t, s = self.cfg.train, self.state
        batches = list(epoch_batches(self.data.train, t.batch_tokens, t.seed, s.epoch))
        usable = len(batches) - len(batches) % self.dist.world  # as many batches on every rank
        batches = batches[self.dist.rank : usable : self.dist.world]
        per_update = t.accumulate
        start = s.batch_in_epoch
        for first in range(start, len(batches) - per_update + 1, per_update):
            self._update(batches[first : first + per_update])
            s.batch_in_epoch = first + per_update
            if self.dist.main and s.step % t.log_every == 0:
                self._log_window()
            if s.step % t.valid_every == 0:
                if self.dist.main:
                    self.validate()
                self.dist.barrier()
            stop = self.dist.from_main(self._stop_reason())
            if stop is not None:
                return stop
        return None

    def _update(self, group: Sequence[Batch]) -> None:
        """One optimizer update over `accumulate` batches; the loss is per target token."""
        t, s = self.cfg.train, self.state
        self.model.train()
        lr = learning_rate(s.step, t.lr, t.warmup_steps, t.lr_schedule)
        for pg in self.optimizer.param_groups:
            pg["lr"] = lr
        tokens = sum(b.tgt_tokens for b in group)
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(group):
            batch = batch.to(self.device)
            sync = i == len(group) - 1 or self.dist.world == 1
            ctx = self.step_model.no_sync() if not sync else contextlib.nullcontext()
            with ctx, autocast(self.device, self.precision):
                loss = self.step_model(batch.src, batch.tgt_in, batch.tgt_out, t.label_smoothing)
            self.scaler.scale(loss / tokens).backward()
            total += loss.detach()
        self.scaler.unscale_(self.optimizer)
        if t.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        s.step += 1
        self.window["loss"] += total  # stays on the device: no sync per step
        self.window["tokens"] += tokens
        self.window["src_tokens"] += sum(b.src_tokens for b in group)
        self.window["lr"] = lr

    # --- reporting, validation, checkpoints ----------------------------------------------

    def _fraction(self) -> float:
        """How far training is, by steps or by time, whichever is further."""
        t, s = self.cfg.train, self.state
        by_steps = s.step / t.max_steps
        by_time = (
            (time.monotonic() - self.start_time) / (t.max_minutes * 60) if t.max_minutes else 0
        )
        return min(1.0, max(by_steps, by_time))

    def _log_window(self) -> None:
        w, now = self.window, time.monotonic()
        seconds = max(now - w["time"], 1e-9)
        loss = float(w["loss"]) / max(w["tokens"], 1)
        stats = {
            "loss": loss,
            "ppl": math.exp(min(loss, 50.0)),
            "lr": w.get("lr", 0.0),
            "tgt_tok_s": w["tokens"] / seconds,
            "tok_s": (w["tokens"] + w["src_tokens"]) / seconds,
            "epoch": self.state.epoch,
        }
        self.last_train_loss = loss
        if self.progress is not None:
            self.progress.update(self.state.step, self._fraction(), stats)
        else:
            log.info(
                "step %d | loss %.3f | lr %.2e | %.0f tgt tok/s",
                self.state.step,
                loss,
                stats["lr"],
                stats["tgt_tok_s"],
            )
        self.window = {"loss": 0.0, "tokens": 0, "src_tokens": 0, "time": now}

    def _translator(self, model: Transformer, beam: int) -> Translator:
        decode = replace(self.cfg.decode, beam=beam, n_best=1)
        src_tok, tgt_tok = self.data.src_tok, self.data.tgt_tok
        return Translator(model, src_tok, tgt_tok, decode, self.device, self.precision)

    def _dev_bleu(self, model: Transformer) -> float:
        assert self.data.dev is not None
        translator = self._translator(model, self.cfg.train.valid_beam)
        return validation.dev_bleu(translator, self.data.dev, self.cfg.train.valid_bleu_sentences)

    def validate(self) -> None:
        """Dev loss, perplexity and BLEU; write metrics.jsonl and checkpoints (rank 0 only)."""
        self._last_validated = self.state.step
        t0 = time.monotonic()
        train_loss = getattr(self, "last_train_loss", None)
        record: dict[str, object] = {
            "step": self.state.step,
            "epoch": self.state.epoch,
            "train_loss": None if train_loss is None else round(train_loss, 4),  # null: not yet
            "elapsed_s": round(time.monotonic() - self.start_time, 1),
        }
        bleu = None
        if self.data.dev is not None:
            dev_loss = validation.dev_loss(
                self.model, self.data.dev_batches, self.device, self.precision
            )
            bleu = self._dev_bleu(self.model)
            record |= {
                "dev_loss": round(dev_loss, 4),
                "dev_ppl": round(math.exp(min(dev_loss, 50.0)), 2),
                "dev_bleu": round(bleu, 2),
            }
        record["valid_s"] = round(time.monotonic() - t0, 1)
        validation.append_metrics(self.run_dir, record)
        log.info("validation %s", " | ".join(f"{k} {v}" for k, v in record.items()))
        self._save_checkpoints(bleu)
        self.window["time"] = time.monotonic()  # validation time is not training throughput

    def _checkpoint(self, with_state: bool) -> Checkpoint:
        s = self.state
        state = {}
        if with_state:
            state = {
                "optimizer": self.optimizer.state_dict(),
                "epoch": s.epoch,
                "batch_in_epoch": s.batch_in_epoch,
                "best": [[b, st] for b, st in s.best],
                "bad_validations": s.bad_validations,
                "elapsed": time.monotonic() - self.start_time,
            }
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return Checkpoint(weights, self.cfg, self.data.src_tok, self.data.tgt_tok, s.step, state)

    def _save_checkpoints(self, bleu: float | None) -> None:
        s = self.state
        if bleu is not None:
            update = validation.update_best(s.best, bleu, s.step, self.cfg.train.keep_best)
            s.best = update.best
            s.bad_validations = 0 if update.improved else s.bad_validations + 1
            if update.kept:
                ckpt = self._checkpoint(with_state=False)
                write_checkpoint(self.run_dir / step_checkpoint(s.step), ckpt)
                if update.improved:
                    write_checkpoint(self.run_dir / BEST, ckpt)
            for step in update.dropped:
                (self.run_dir / step_checkpoint(step)).unlink(missing_ok=True)
        write_checkpoint(self.run_dir / LAST, self._checkpoint(with_state=True))

    # --- the end -----------------------------------------------------------------------

    def _finish(self) -> TrainResult:
        best = self.state.best[0][0] if self.state.best else None
        test, samples = None, []
        if self.dist.main:
            if self.cfg.train.average_best and len(self.state.best) > 1:
                best = self._average(best)
            test, samples = self._test()
        self.dist.barrier()
        return TrainResult(self.run_dir, self.state.step, best, test, samples)

    def _average(self, best: float | None) -> float | None:
        """Average the kept best checkpoints; it becomes the best one if its dev BLEU is higher."""
        paths = [self.run_dir / step_checkpoint(st) for _, st in self.state.best]
        averaged = average_weights([p for p in paths if p.exists()])
        bleu = self._dev_bleu(build_model(averaged).to(self.device))
        log.info(
            "average of %d best checkpoints: dev BLEU %.2f (best single %.2f)",
            len(paths),
            bleu,
            best or 0.0,
        )
        write_checkpoint(self.run_dir / AVERAGE, averaged)
        if best is None or bleu > best:
            write_checkpoint(self.run_dir / BEST, averaged)
            return bleu
        return best

    def _test(self) -> tuple[dict[str, object] | None, list[tuple[str, str, str]]]:
        """Translate the test set with the best checkpoint; return scores and a few samples."""
        test = read_eval_set(self.cfg.data, self.cfg.data.test)
        if test is None:
            return None, []
        path = self.run_dir / BEST
        model = self.model.eval()
        if path.exists():
            model = build_model(load_checkpoint(path, with_state=False)).to(self.device)
        translator = self._translator(model, self.cfg.decode.beam)
        return validation.translate_test_set(translator, test, self.run_dir, self.state.step)


def train(cfg: Config, run_dir: Path, progress: Progress | None = None) -> TrainResult:
    """Train (or resume) the run in `run_dir` with `cfg`."""
    return Trainer(cfg, run_dir, progress).run()
