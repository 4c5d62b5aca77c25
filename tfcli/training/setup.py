"""How a training run starts: resumed from its newest checkpoint, fine-tuned from another
model's (`train.init_from`), or new; what it reads before its first update.

Every process loads the checkpoint that process 0 chose (the run directory must be on a
filesystem they share) and takes its own random generators from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tfcli.checkpoint import Checkpoint, load_checkpoint
from tfcli.config import Config
from tfcli.errors import ConfigError
from tfcli.run_dir import RunDir
from tfcli.training.config_changes import check_resume, save_run_config
from tfcli.training.distributed import Distributed
from tfcli.training.finetune import init_checkpoint, log_coverage, write_tokenizers
from tfcli.training.resume import drop_stale_tokenizers, find_resume, reconcile
from tfcli.training.rng import seed_rank, set_rng_state
from tfcli.training.state import TrainState
from tfcli.training.training_data import TrainingData, load_training_data

if TYPE_CHECKING:
    from tfcli.training.trainer import Trainer

log = logging.getLogger(__name__)


@dataclass
class RunSetup:
    """What a run starts from: its data, and the checkpoint it resumes or fine-tunes."""

    data: TrainingData
    resume: Checkpoint | None = None
    init: Checkpoint | None = None  # train.init_from, in a new run
    changes: dict[str, tuple[Any, Any]] | None = None  # config keys a resume changes

    def apply(self, trainer: Trainer) -> None:
        """Put the trainer (its model built) where the run starts; write config.yaml."""
        seed_rank(trainer.cfg.train.seed, trainer.dist.rank)
        if self.resume is not None:
            restore(trainer, self.resume)
            resume, st = self.resume, trainer.state
            trainer.dist.main_does(lambda: reconcile(trainer.run, resume, trainer.best))
            log.info("resuming %s from step %d (epoch %d)", trainer.run.path, st.step, st.epoch)
        else:
            if self.init is not None:
                start_from(trainer, self.init)
            log.info("training %s from step 0", trainer.run.path)
        changes = self.changes if self.resume is not None else None
        trainer.dist.main_does(lambda: save_run_config(trainer.run, trainer.cfg, changes))


def setup_run(cfg: Config, run: RunDir, dist: Distributed) -> RunSetup:
    """Find the checkpoint to resume (process 0 chooses), check the config against it, or
    prepare a fine-tuning run; then read the data."""
    found = dist.main_does(lambda: find_resume(run))
    path = dist.from_main(found[0] if found else None)
    if path is not None:
        ckpt = found[1] if found else load_checkpoint(path)
        changes = check_resume(ckpt.config, cfg, path)
        world = int(ckpt.state.get("world_size", 1))
        if world != dist.world:
            raise ConfigError(
                f"{path}: the run was trained by {world} processes, {dist.world} now: a resumed "
                f"run keeps its number of processes (torchrun --nproc_per_node)"
            )
        return RunSetup(load_training_data(cfg, run, dist), resume=ckpt, changes=changes)
    dist.main_does(lambda: drop_stale_tokenizers(run, cfg))
    init = init_checkpoint(cfg)
    if init is not None:
        dist.main_does(lambda: write_tokenizers(init, run, cfg.tokenizer.shared))
    return RunSetup(load_training_data(cfg, run, dist), init=init)


def restore(trainer: Trainer, ckpt: Checkpoint) -> None:
    """The trainer as it was when `ckpt` was written."""
    s = ckpt.state
    trainer.model.load_state_dict(ckpt.model)
    trainer.optimizer.load_state_dict(s["optimizer"])
    if s.get("scaler"):
        trainer.scaler.load_state_dict(s["scaler"])
    trainer.state = TrainState.from_state_dict(ckpt.step, s)
    trainer.best.load_state_dict(s)
    trainer.best.trim()
    trainer.last_train_loss = s.get("last_train_loss")
    trainer.saved_step = ckpt.step
    ranks = s.get("ranks", [])
    if len(ranks) == trainer.dist.world:
        trainer.ranks = ranks
        set_rng_state(ranks[trainer.dist.rank]["rng"])
        trainer.throughput.load_state_dict(ranks[trainer.dist.rank]["throughput"])
    else:
        log.warning("the checkpoint holds no random generator states: dropout starts afresh")


def start_from(trainer: Trainer, init: Checkpoint) -> None:
    """A fine-tuning run's first state: the model's weights; with train.init_optimizer, its
    optimizer (with this config's settings) and the schedule's position as well."""
    t = trainer.cfg.train
    trainer.model.load_state_dict(init.model)
    if t.init_optimizer:
        trainer.optimizer.load_state_dict(init.state["optimizer"])
        for group in trainer.optimizer.param_groups:
            group.update(betas=t.adam_betas, eps=t.adam_eps, weight_decay=t.weight_decay)
        if init.state.get("scaler") and trainer.scaler.is_enabled():
            trainer.scaler.load_state_dict(init.state["scaler"])
        trainer.state.lr_offset = init.step + int(init.state.get("lr_offset", 0))
    if trainer.dist.main:
        log_coverage(trainer.data.epoch(0), trainer.cfg.data.train)
