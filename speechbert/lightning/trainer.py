"""The Trainer of a pretraining run and its run folder: checkpoints, logs, metrics, resume.

A run folder holds ``checkpoints/`` (``last.ckpt`` plus the newest numbered ones),
``tensorboard/version_N/`` and ``csv/version_N/metrics.csv`` (one version per launch, so a
resume never overwrites earlier logs) and ``metrics.json`` (the final logged values).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from speechbert.errors import ConfigError
from speechbert.lightning.callbacks import FinalCheckpoint, RngStateCallback

log = logging.getLogger(__name__)

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "bf16-true")
"""Values of ``trainer.precision`` Lightning accepts here."""
LAST_CHECKPOINT = "last.ckpt"
"""Name of the checkpoint ``resume=auto`` continues from."""


@dataclass
class TrainerConfig:
    """Hardware, precision, clipping, validation and checkpoint cadence of a run.

    ``strategy=ddp`` runs Lightning's DDP with ``find_unused_parameters`` on by default:
    HuBERT's LayerDrop skips whole layers at random, and so does a stage-2 distillation subnet
    shallower than its supernet; without it the ranks' gradient all-reduces fall out of step
    and the run hangs or stops (the distillation module refuses it off when that can happen).
    """

    accelerator: str = "auto"
    """``cpu``, ``gpu`` or ``auto`` (a GPU when there is one)."""
    devices: str = "auto"
    """Devices per node: a count (``"2"``), a list (``"0,1"``) or ``auto``."""
    num_nodes: int = 1
    """Machines; each runs ``devices`` processes (torchrun or SLURM starts them)."""
    strategy: str = "auto"
    """Lightning strategy: ``auto`` (one process), ``ddp`` (one process per device)."""
    find_unused_parameters: bool = True
    """DDP: allow parameters without gradient in a step (LayerDrop, shallower subnets)."""
    precision: str = "32"
    """``32``, ``bf16-mixed`` (GPUs with bfloat16) or ``16-mixed``."""
    gradient_clip_val: float = 10.0
    """Clip the gradient norm to this (0 disables)."""
    accumulate_grad_batches: int = 1
    """Batches per optimizer step."""
    val_every_n_steps: int = 1000
    """Training batches between validations (counted across epochs)."""
    limit_val_batches: int | None = None
    """Validation batches per rank; None for all."""
    num_sanity_val_steps: int = 2
    """Validation batches run before training to catch errors early (0 disables)."""
    checkpoint_every_n_steps: int = 1000
    """Optimizer steps between checkpoints (``last.ckpt`` is also written at the end)."""
    keep_checkpoints: int = 1
    """Numbered checkpoints kept besides ``last.ckpt``: 1 the newest, -1 all, 0 none."""
    log_every_n_steps: int = 50
    """Optimizer steps between logged training metrics."""
    progress_bar: bool = True
    """Show the progress bar (loss and masked accuracy)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision must be one of {PRECISIONS}, "
                              f"got {self.precision!r}")
        if self.keep_checkpoints not in (-1, 0, 1):
            raise ConfigError(f"trainer.keep_checkpoints must be -1, 0 or 1, "
                              f"got {self.keep_checkpoints}")
        for name in ("checkpoint_every_n_steps", "val_every_n_steps", "log_every_n_steps",
                     "accumulate_grad_batches", "num_nodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"trainer.{name} must be >= 1, got {getattr(self, name)}")


def build_trainer(cfg: TrainerConfig, run_dir: str | Path, max_steps: int,
                  extra_callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    """A Trainer that stops at ``max_steps`` and writes checkpoints and logs into ``run_dir``."""
    cfg.validate()
    run = Path(run_dir)
    checkpoints = FinalCheckpoint(
        dirpath=run / "checkpoints", filename="{step}", save_top_k=cfg.keep_checkpoints,
        save_last=True, every_n_train_steps=cfg.checkpoint_every_n_steps)
    callbacks = [checkpoints, RngStateCallback(), LearningRateMonitor("step"),
                 *extra_callbacks]
    return L.Trainer(
        accelerator=cfg.accelerator, devices=_devices(cfg.devices), num_nodes=cfg.num_nodes,
        strategy=_strategy(cfg), precision=cfg.precision,  # type: ignore[arg-type]
        max_steps=max_steps, max_epochs=-1, use_distributed_sampler=False,
        gradient_clip_val=cfg.gradient_clip_val or None,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        val_check_interval=cfg.val_every_n_steps, check_val_every_n_epoch=None,
        limit_val_batches=cfg.limit_val_batches, num_sanity_val_steps=cfg.num_sanity_val_steps,
        log_every_n_steps=cfg.log_every_n_steps, enable_progress_bar=cfg.progress_bar,
        callbacks=callbacks, default_root_dir=run,
        logger=[TensorBoardLogger(run, name="tensorboard"), CSVLogger(run, name="csv")])


def _strategy(cfg: TrainerConfig) -> str:
    """``ddp`` becomes Lightning's ``ddp_find_unused_parameters_true`` when asked for."""
    if cfg.strategy == "ddp" and cfg.find_unused_parameters:
        return "ddp_find_unused_parameters_true"
    return cfg.strategy


def _devices(devices: str) -> int | str:
    return int(devices) if devices.strip().isdigit() else devices


def resume_checkpoint(run_dir: str | Path, resume: str) -> str | None:
    """The checkpoint to continue from: ``auto`` -> ``last.ckpt`` if present, ``never`` -> None
    (refusing a folder that already has checkpoints), anything else -> that path."""
    last = Path(run_dir) / "checkpoints" / LAST_CHECKPOINT
    if resume == "auto":
        return str(last) if last.is_file() else None
    if resume == "never":
        if last.parent.is_dir() and any(last.parent.glob("*.ckpt")):
            raise ConfigError(f"resume=never but {last.parent} already has checkpoints; use "
                              f"resume=auto to continue, another name=..., or delete the folder")
        return None
    if not Path(resume).is_file():
        raise ConfigError(f"resume={resume!r}: no such checkpoint; use auto, never or a "
                          f".ckpt path")
    return resume


def fit(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule,
        ckpt_path: str | None) -> dict[str, float]:
    """Train (continuing from ``ckpt_path`` if given); write and return the final metrics."""
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["global_step"] = float(trainer.global_step)
    if trainer.callback_metrics:  # a finished run resumed again trains and logs nothing
        _write_metrics(Path(trainer.default_root_dir) / "metrics.json", metrics)
    return metrics


@rank_zero_only
def _write_metrics(path: Path, metrics: dict[str, float]) -> None:
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's generators (the same seed on every rank)."""
    L.seed_everything(seed, workers=False, verbose=False)


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 (read from the launcher's environment)."""
    return getattr(rank_zero_only, "rank", 0) == 0
