"""The training loop: updates, validation, checkpoints, stopping, resuming.

checkpoint_last.pt, written at every validation and when a signal stops training, holds what
the loop needs to go on as if it had never stopped: weights, optimizer, GradScaler, every
process's random generators and log window, the position in the data, the kept checkpoints and
the size of the metrics log. Rerunning the same command resumes from it (resume.py), bitwise.

Run under `torchrun` it trains with DistributedDataParallel: each process takes every
WORLD_SIZE-th batch, and only rank 0 validates, logs and writes files.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from tfcli.atomic import copy_atomic
from tfcli.checkpoint import Checkpoint, save_checkpoint
from tfcli.config import Config
from tfcli.data.batching import Batch
from tfcli.device import resolve_device, resolve_precision
from tfcli.errors import TfcliError
from tfcli.model.kernels import configure_threads_and_kernels
from tfcli.model.loss import LabelSmoothedLoss
from tfcli.model.transformer import Transformer, count_parameters
from tfcli.run_dir import RunDir
from tfcli.training import validation
from tfcli.training.best import BestCheckpoints
from tfcli.training.distributed import Distributed
from tfcli.training.optim import learning_rate, make_optimizer
from tfcli.training.resume import prepare_run_dir
from tfcli.training.rng import rng_state, seed_everything
from tfcli.training.run_log import run_log
from tfcli.training.setup import RunSetup, setup_run
from tfcli.training.signals import Interrupted, StopSignals, TrainingStopped
from tfcli.training.state import (
    Progress,
    TrainResult,
    TrainState,
    already_trained,
    fraction_done,
    stop_reason,
)
from tfcli.training.throughput import Throughput
from tfcli.training.update import Updater, nonfinite_error
from tfcli.training.validation import Evaluator

log = logging.getLogger(__name__)

MAX_NONFINITE = 10  # skipped updates in a row before training gives up


class Trainer:
    """Trains one run directory; `train()` resumes it when it already holds a checkpoint."""

    def __init__(
        self, cfg: Config, run_dir: Path, progress: Progress | None = None, overwrite: bool = False
    ) -> None:
        self.cfg, self.run, self.progress = cfg, RunDir(run_dir), progress
        self.overwrite = overwrite
        self.dist = Distributed()
        self.device = self.dist.device(resolve_device(cfg.train.device))
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.dist.setup(self.device)
        configure_threads_and_kernels(cfg.train.threads)
        seed_everything(cfg.train.seed)
        self.state = TrainState()
        self.best = BestCheckpoints(cfg.train.keep_best)
        self.throughput = Throughput()
        self.signals = StopSignals()
        self.ranks: list[dict[str, object]] = []  # each process's generators and log window
        self.last_train_loss: float | None = None
        self.saved_step = -1  # the step of checkpoint_last.pt
        self.updated = False  # an update was made since this process started

    def _build(self, setup: RunSetup) -> None:
        cfg, self.data = self.cfg, setup.data
        vocab = len(self.data.src_tok), len(self.data.tgt_tok)
        self.model = Transformer(cfg.model, *vocab).to(self.device)
        layers = f"{cfg.model.encoder_layers}+{cfg.model.decoder_layers} layers"
        size = f"{count_parameters(self.model):,}"
        log.info("model: %s parameters, %s on %s, %s", size, layers, self.device, self.precision)
        self.optimizer = make_optimizer(self.model, cfg.train)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        objective: torch.nn.Module = LabelSmoothedLoss(self.model, cfg.train.label_smoothing)
        if cfg.train.compile:
            objective = torch.compile(objective)
        objective = self.dist.wrap(objective, self.device)
        self.evaluate = Evaluator(cfg, self.data, self.device, self.precision)
        args = self.optimizer, self.scaler, self.dist, self.precision, cfg.train.clip_norm
        self.updater = Updater(self.model, objective, *args)

    # --- the loop ----------------------------------------------------------------------

    def train(self) -> TrainResult:
        self.dist.main_does(lambda: prepare_run_dir(self.run, self.overwrite))
        with run_log(self.run, self.dist.main), self.signals:
            setup = setup_run(self.cfg, self.run, self.dist)
            self._build(setup)
            setup.apply(self)
            self.start_time = time.monotonic() - self.state.elapsed
            if self.saved_step < 0:  # a new run: step 0 is a checkpoint too, so that a run
                self._save_last()  # directory with records always has one to resume from
            stop = self.dist.from_main(self._stop_reason())
            if stop is not None and self.state.finished:
                return self._already_trained(stop)
            self.state.finished = False
            if stop is None and self._validation_due():
                self.validate()  # the one a signal interrupted
            while stop is None:
                stop = self._train_epoch()
                if stop is None:
                    self.state.epoch += 1
                    self.state.batch_in_epoch = 0
                    stop = self.dist.from_main(self._stop_reason())
            log.info("training stopped at step %d: %s", self.state.step, stop)
            return self._finish()

    def _stop_reason(self) -> str | None:
        return stop_reason(self.cfg.train, self.state, self._elapsed(), self.best)

    def _already_trained(self, stop: str) -> TrainResult:
        message = already_trained(self.state.step, stop)
        log.info("%s", message)
        return TrainResult(self.run.path, self.state.step, self.best.best_bleu, None, [], message)

    def _validation_due(self) -> bool:
        s = self.state
        due = s.step > 0 and s.step % self.cfg.train.valid_every == 0
        return self.dist.from_main(due and s.last_validated != s.step)

    def _train_epoch(self) -> str | None:
        t, s = self.cfg.train, self.state
        batches = self.dist.share(self.data.epoch(s.epoch))
        if s.batch_in_epoch and s.epoch_batches and len(batches) != s.epoch_batches:
            raise TfcliError(
                f"{self.run.path}: epoch {s.epoch} now has {len(batches)} batches per process, "
                f"{s.epoch_batches} when the run was saved: the training data changed"
            )
        s.epoch_batches = len(batches)
        for first in range(s.batch_in_epoch, len(batches) - t.accumulate + 1, t.accumulate):
            applied = self._update(list(batches[first : first + t.accumulate]))  # padded now
            s.batch_in_epoch = first + t.accumulate
            if applied and s.step % t.log_every == 0:
                self._log()
            if applied and s.step % t.valid_every == 0:
                self.validate()
            stop = self._after_update()
            if stop is not None:
                return stop
        return None

    def _update(self, group: Sequence[Batch]) -> bool:
        """One optimizer update; False when it was skipped for a non-finite loss."""
        t, s = self.cfg.train, self.state
        lr = learning_rate(s.step + s.lr_offset, t.lr, t.warmup_steps, t.lr_schedule)
        result = self.updater(group, lr, self.device)
        if result.applied:
            s.nonfinite = 0
            s.step += 1
            if not self.updated:  # start-up time, for a reader of the log (bench_data.py)
                self.updated = True
                log.info("first update of this start: step %d", s.step)
            self.throughput.add(result.loss, result.tokens, result.src_tokens, lr)
            return True
        s.nonfinite += 1
        skipped = "update %d: the loss or its gradient is not finite; skipped (%d in a row)"
        log.warning(skipped, s.step + 1, s.nonfinite)
        if s.nonfinite < MAX_NONFINITE:
            return False
        what = f"update {s.step + 1}: the loss was not finite in {MAX_NONFINITE} updates in a row"
        raise self._nonfinite(what)

    def _nonfinite(self, what: str) -> TfcliError:
        kept = (self.run.last, self.saved_step) if self.saved_step >= 0 else None
        return nonfinite_error(what, self.cfg.train, self.precision, kept)

    def _after_update(self) -> str | None:
        """Rank 0's reason to stop, on every process; a stop signal (on any process) saves and
        raises TrainingStopped."""
        reason = self._stop_reason() if self.dist.main else None
        flags = torch.tensor([self.signals.received is not None, reason is not None])
        signalled, stop = self.dist.any(flags)
        if signalled:
            if self.saved_step != self.state.step:
                self._save_last()
            if self.dist.main:
                name = self.signals.name or "a stop signal on another process"
                log.info("%s: checkpoint_last.pt holds step %d", name, self.state.step)
            self.dist.barrier()  # process 0 has written before any process exits
            raise TrainingStopped(self.state.step, self.signals.received or signal.SIGTERM)
        return (reason or "process 0 stopped training") if stop else None

    # --- reporting, validation, checkpoints ----------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self.start_time

    def _log(self) -> None:
        """The training loss and rate since the last report (every process takes part)."""
        stats = self.throughput.report(self.dist.total if self.dist.world > 1 else None)
        self.dist.main_does(lambda: self._log_main(stats))

    def _log_main(self, stats: dict[str, float]) -> None:
        s = self.state
        self.last_train_loss = stats["loss"]
        validation.append_metrics(self.run.metrics, validation.train_record(s.step, s.epoch, stats))
        if self.progress is not None:
            done = fraction_done(self.cfg.train, s.step, self._elapsed())
            self.progress.update(s.step, done, stats | {"epoch": s.epoch})
            return
        line = "step %d | loss %.3f | lr %.2e | %.0f tgt tok/s"
        log.info(line, s.step, stats["loss"], stats["lr"], stats["tgt_tok_s"])

    def validate(self) -> None:
        """Dev loss and BLEU, the metrics record and the checkpoints; every process takes part
        (their generators go into the checkpoints), rank 0 alone computes and writes."""
        self._gather_ranks()
        self.dist.main_does(self._validate_main)
        self.state.last_validated = self.saved_step = self.state.step
        self.throughput.pause_ended()

    def _validate_main(self) -> None:
        s, t0 = self.state, time.monotonic()
        try:
            with self.signals.interruptible():  # nothing is written before the scores are in
                record = validation.valid_record(s.step, s.epoch, self.last_train_loss)
                record["elapsed_s"] = round(self._elapsed(), 1)
                bleu = self.evaluate.dev_scores(self.model, record)
        except Interrupted:
            log.warning("validation at step %d interrupted: it is done on resuming", s.step)
            save_checkpoint(self.run.last, self._checkpoint())
            return
        record["valid_s"] = round(time.monotonic() - t0, 1)
        s.last_validated = s.step
        validation.append_metrics(self.run.metrics, record)
        log.info("validation %s", " | ".join(f"{k} {v}" for k, v in record.items() if k != "kind"))
        update = self.best.record(bleu, s.step) if bleu is not None else None
        ckpt = self._checkpoint()  # its kept list includes this step, its metrics this record
        if update is not None and self.best.save(self.run, s.step, update, ckpt):
            copy_atomic(self.run.step(s.step), self.run.last, "checkpoint")
        else:
            save_checkpoint(self.run.last, ckpt)
        if update is not None:
            self.best.drop(self.run, update)

    def _gather_ranks(self) -> None:
        """Every process's generators and log window, for the checkpoint about to be written."""
        self.ranks = self.dist.gather(
            {"rng": rng_state(), "throughput": self.throughput.state_dict()}
        )

    def _checkpoint(self, elapsed: float | None = None) -> Checkpoint:
        s = self.state
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        if not all(bool(v.isfinite().all()) for v in weights.values() if v.is_floating_point()):
            raise self._nonfinite(f"step {s.step}: the weights are not finite")
        metrics = self.run.metrics
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ranks": self.ranks,
            "world_size": self.dist.world,
            **s.state_dict(),
            **self.best.state_dict(),
            "elapsed": self._elapsed() if elapsed is None else elapsed,
            "last_train_loss": self.last_train_loss,
            "metrics_bytes": metrics.stat().st_size if metrics.exists() else 0,
        }
        return Checkpoint(weights, self.cfg, self.data.src_tok, self.data.tgt_tok, s.step, state)

    def _save_last(self) -> None:
        """checkpoint_last.pt now (every process takes part)."""
        self._gather_ranks()
        self.dist.main_does(lambda: save_checkpoint(self.run.last, self._checkpoint()))
        self.saved_step = self.state.step

    # --- the end -----------------------------------------------------------------------

    def _finish(self) -> TrainResult:
        """The last validation, then (rank 0) averaging and the test set; the checkpoint that
        marks the run finished is written when they are done."""
        s, ev = self.state, self.evaluate
        if self.dist.from_main(s.last_validated != s.step):
            self.validate()
        if self.signals.received is not None:
            raise TrainingStopped(s.step, self.signals.received)
        if not self.dist.main:
            return TrainResult(self.run.path, s.step, None, None)
        elapsed, best = self._elapsed(), self.best.best_bleu
        try:
            with self.signals.interruptible():  # what it writes is redone on resuming
                if self.cfg.train.average_best and len(self.best.best) > 1:
                    best = self.best.average(
                        self.run, s.step, lambda c: ev.dev_bleu(ev.model_of(c))
                    )
                test, samples = ev.test(self.model, self.run, s.step)
        except Interrupted:
            raise TrainingStopped(s.step, self.signals.received or signal.SIGTERM) from None
        s.finished = True
        save_checkpoint(self.run.last, self._checkpoint(elapsed))
        return TrainResult(self.run.path, s.step, best, test, samples)


def train(
    cfg: Config, run_dir: Path, progress: Progress | None = None, overwrite: bool = False
) -> TrainResult:
    """Train (or resume) the run in `run_dir` with `cfg`."""
    trainer = Trainer(cfg, run_dir, progress, overwrite)
    result = trainer.train()
    trainer.dist.close()  # the other processes may have left already: this is local
    return result
