"""The training loop: inverse-sqrt schedule, label-smoothed loss, AMP, validation, checkpoints.

Run under `torchrun` it trains with DistributedDataParallel: each process takes every
WORLD_SIZE-th batch, and only rank 0 validates, logs and writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from tfcli.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from tfcli.config import Config, save_config
from tfcli.data.batching import Batch
from tfcli.device import resolve_device, resolve_precision
from tfcli.errors import CheckpointError
from tfcli.model.kernels import configure_threads_and_kernels, precision_scope
from tfcli.model.loss import LabelSmoothedLoss
from tfcli.model.transformer import Transformer, count_parameters
from tfcli.run_dir import RunDir
from tfcli.training import validation
from tfcli.training.best import BestCheckpoints
from tfcli.training.distributed import Distributed
from tfcli.training.optim import learning_rate, make_optimizer
from tfcli.training.state import Progress, TrainResult, TrainState
from tfcli.training.throughput import Throughput
from tfcli.training.training_data import load_training_data, read_eval_set
from tfcli.translation.translator import Translator

log = logging.getLogger(__name__)


class Trainer:
    """Trains one run directory; `run()` resumes it when it already holds a checkpoint."""

    def __init__(self, cfg: Config, run_dir: Path, progress: Progress | None = None) -> None:
        self.cfg, self.run, self.progress = cfg, RunDir(run_dir), progress
        self.dist = Distributed()
        self.device = self.dist.device(resolve_device(cfg.train.device))
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.dist.setup(self.device)
        configure_threads_and_kernels(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.state = TrainState()
        self.best = BestCheckpoints(cfg.train.keep_best)
        self.throughput = Throughput()
        self.last_validated = -1
        self.last_train_loss: float | None = None

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
        objective: torch.nn.Module = LabelSmoothedLoss(self.model, cfg.train.label_smoothing)
        if cfg.train.compile:
            objective = torch.compile(objective)
        self.objective = self.dist.wrap(objective, self.device)

    def _resume(self) -> None:
        path = self.run.last
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
            elapsed=float(s.get("elapsed", 0.0)),
        )
        self.best.load_state_dict(s)
        log.info("resuming %s from step %d (epoch %d)", self.run.path, ckpt.step, self.state.epoch)

    # --- the loop ----------------------------------------------------------------------

    def train(self) -> TrainResult:
        if self.dist.main:
            self.run.path.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        self.data = load_training_data(self.cfg, self.run, self.dist)
        self._build()
        self._resume()  # refuses a run trained with other model settings: keep its config.yaml
        if self.dist.main:
            save_config(self.cfg, self.run.config)
        t = self.cfg.train
        self.start_time = time.monotonic() - self.state.elapsed
        self.throughput.reset()
        stop = self.dist.from_main(self._stop_reason())
        while stop is None:
            stop = self._train_epoch()
            if stop is None:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
                if t.max_epochs and self.state.epoch >= t.max_epochs:
                    stop = f"reached train.max_epochs ({t.max_epochs})"
        log.info("training stopped at step %d: %s", self.state.step, stop)
        if self.dist.main and self.last_validated != self.state.step:
            self.validate()
        return self._finish()

    def _stop_reason(self) -> str | None:
        t, s = self.cfg.train, self.state
        if s.step >= t.max_steps:
            return f"reached train.max_steps ({t.max_steps})"
        if t.max_minutes and time.monotonic() - self.start_time >= t.max_minutes * 60:
            return f"reached train.max_minutes ({t.max_minutes:g})"
        if self.best.out_of_patience(t.patience):
            return f"no better dev BLEU in {t.patience} validations (train.patience)"
        return None

    def _train_epoch(self) -> str | None:
        t, s = self.cfg.train, self.state
        batches = self.dist.share(self.data.epoch(s.epoch))
        for first in range(s.batch_in_epoch, len(batches) - t.accumulate + 1, t.accumulate):
            self._update(batches[first : first + t.accumulate])
            s.batch_in_epoch = first + t.accumulate
            if self.dist.main and s.step % t.log_every == 0:
                self._log()
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
            ctx = self.objective.no_sync() if not sync else contextlib.nullcontext()
            with ctx, precision_scope(self.device, self.precision):
                loss = self.objective(batch.src, batch.tgt_in, batch.tgt_out)
            self.scaler.scale(loss / tokens).backward()
            total += loss.detach()
        self.scaler.unscale_(self.optimizer)
        if t.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        s.step += 1
        self.throughput.add(total, tokens, sum(b.src_tokens for b in group), lr)

    # --- reporting, validation, checkpoints ----------------------------------------------

    def _fraction(self) -> float:
        """How far training is, by steps or by time, whichever is further."""
        t, s = self.cfg.train, self.state
        by_steps = s.step / t.max_steps
        by_time = (
            (time.monotonic() - self.start_time) / (t.max_minutes * 60) if t.max_minutes else 0
        )
        return min(1.0, max(by_steps, by_time))

    def _log(self) -> None:
        stats = self.throughput.report() | {"epoch": self.state.epoch}
        self.last_train_loss = stats["loss"]
        if self.progress is not None:
            self.progress.update(self.state.step, self._fraction(), stats)
            return
        log.info(
            "step %d | loss %.3f | lr %.2e | %.0f tgt tok/s",
            self.state.step,
            stats["loss"],
            stats["lr"],
            stats["tgt_tok_s"],
        )

    def _translator(self, model: Transformer, beam: int) -> Translator:
        settings = dataclasses.replace(self.cfg.decode, beam=beam, n_best=1)
        src_tok, tgt_tok = self.data.src_tok, self.data.tgt_tok
        return Translator(model, src_tok, tgt_tok, settings, self.device, self.precision)

    def _dev_bleu(self, model: Transformer) -> float:
        assert self.data.dev is not None
        translator = self._translator(model, self.cfg.train.valid_beam)
        return validation.dev_bleu(translator, self.data.dev, self.cfg.train.valid_bleu_sentences)

    def validate(self) -> None:
        """Dev loss, perplexity and BLEU; write metrics.jsonl and checkpoints (rank 0 only)."""
        self.last_validated = self.state.step
        t0 = time.monotonic()
        train_loss = self.last_train_loss
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
        validation.append_metrics(self.run.metrics, record)
        log.info("validation %s", " | ".join(f"{k} {v}" for k, v in record.items()))
        self._save_checkpoints(bleu)
        self.throughput.pause_ended()

    def _checkpoint(self, with_state: bool) -> Checkpoint:
        s = self.state
        state = {}
        if with_state:
            state = {
                "optimizer": self.optimizer.state_dict(),
                "epoch": s.epoch,
                "batch_in_epoch": s.batch_in_epoch,
                "elapsed": time.monotonic() - self.start_time,
                **self.best.state_dict(),
            }
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return Checkpoint(weights, self.cfg, self.data.src_tok, self.data.tgt_tok, s.step, state)

    def _save_checkpoints(self, bleu: float | None) -> None:
        step = self.state.step
        if bleu is not None:
            update = self.best.record(bleu, step)
            self.best.save(self.run, step, update, lambda: self._checkpoint(with_state=False))
        save_checkpoint(self.run.last, self._checkpoint(with_state=True))

    # --- the end -----------------------------------------------------------------------

    def _finish(self) -> TrainResult:
        best = self.best.best_bleu
        test, samples = None, []
        if self.dist.main:
            if self.cfg.train.average_best and len(self.best.best) > 1:
                best = self.best.average(self.run, lambda c: self._dev_bleu(self._model_of(c)))
            test, samples = self._test()
        self.dist.barrier()
        return TrainResult(self.run.path, self.state.step, best, test, samples)

    def _model_of(self, ckpt: Checkpoint) -> Transformer:
        return build_model(ckpt).to(self.device)

    def _test(self) -> tuple[dict[str, object] | None, list[tuple[str, str, str]]]:
        """Translate the test set with the best checkpoint; return scores and a few samples."""
        test = read_eval_set(self.cfg.data, self.cfg.data.test)
        if test is None:
            return None, []
        model = self.model.eval()
        if self.run.best.exists():
            model = self._model_of(load_checkpoint(self.run.best, with_state=False))
        translator = self._translator(model, self.cfg.decode.beam)
        return validation.translate_test_set(translator, test, self.run, self.state.step)


def train(cfg: Config, run_dir: Path, progress: Progress | None = None) -> TrainResult:
    """Train (or resume) the run in `run_dir` with `cfg`."""
    return Trainer(cfg, run_dir, progress).train()
