"""Run a toy pretraining with the real Lightning pieces (for subprocess tests).

    python -m tests.lightning.toy_pretrain --corpus DIR --run-dir DIR [--devices 2 ...]

``--pause-at-step N`` blocks the training process at the start of step N (after writing
``<run-dir>/paused``) so a test can SIGKILL it at a known point; a resumed run (the marker
exists) does not pause. ``--nan-at-step N [--nan-rank R]`` makes the loss of step N NaN (on
rank R only). Each rank writes its training losses to ``losses_rank<r>.json``.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

import lightning as L

from speechbert.lightning.datamodule import DataConfig, PretrainDataModule
from speechbert.lightning.pretrain import OptimConfig, PretrainModule
from speechbert.lightning.trainer import TrainerConfig, build_trainer, fit, resume_checkpoint
from tests.lightning.child_process import run_with_threads
from tests.lightning.toy import ToyCriterion, ToyModel


class PauseAtStep(L.Callback):
    """Blocks forever at the start of ``step`` the first time the run gets there."""

    def __init__(self, step: int, marker: Path) -> None:
        self.step = step
        self.marker = marker

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.write_text(f"paused at step {self.step}\n")
            threading.Event().wait()


class NanAtStep(L.Callback):
    """Makes the criterion's loss NaN at ``step`` on ``rank`` (every rank when None)."""

    def __init__(self, criterion: ToyCriterion, step: int, rank: int | None) -> None:
        self.criterion = criterion
        self.step = step
        self.rank = rank

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            self.criterion.nan_next = True


class WriteLosses(L.Callback):
    """Records the (unscaled) loss of every training batch; writes them when training ends."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self.losses.append(float(outputs["loss"]) * trainer.accumulate_grad_batches)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = self.run_dir / f"losses_rank{trainer.global_rank}.json"
        out.write_text(json.dumps(self.losses))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--max-steps", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=4)
    p.add_argument("--val-every", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--devices", default="1")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--accumulate", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--seeded-masks", action="store_true")
    p.add_argument("--pause-at-step", type=int)
    p.add_argument("--nan-at-step", type=int)
    p.add_argument("--nan-rank", type=int)
    return p


def main(argv: list[str] | None = None) -> None:
    """Run (or resume) the toy pretraining; torch's thread count is restored afterwards."""
    args = build_parser().parse_args(argv)
    run_with_threads(run, args, args.threads)


def run(args: argparse.Namespace) -> None:
    """Build the toy module, data and trainer from ``args`` and fit."""
    L.seed_everything(0)
    data = DataConfig(train_manifests=[str(args.corpus / "train.tsv")],
                      valid_manifests=[str(args.corpus / "valid.tsv")],
                      train_labels=[str(args.corpus / "train.km")],
                      valid_labels=[str(args.corpus / "valid.km")],
                      min_samples=8_000, max_samples=24_000, max_batch_seconds=2.0,
                      max_batch_size=2, num_workers=0, strict=False)
    optim = OptimConfig(lr=5e-3, warmup_steps=3, max_steps=args.max_steps, decay="cosine")
    trainer_cfg = TrainerConfig(accelerator="cpu", devices=args.devices, strategy=args.strategy,
                                accumulate_grad_batches=args.accumulate, gradient_clip_val=1.0,
                                val_every_n_steps=args.val_every, num_sanity_val_steps=1,
                                checkpoint_every_n_steps=args.checkpoint_every,
                                log_every_n_steps=1, progress_bar=False)
    criterion = ToyCriterion(seeded_masks=args.seeded_masks)
    module = PretrainModule(ToyModel(dropout=args.dropout), criterion, optim,
                            model_config={"kind": "toy", "dropout": args.dropout})
    callbacks: list[L.Callback] = [WriteLosses(args.run_dir)]
    if args.nan_at_step is not None:
        callbacks.append(NanAtStep(criterion, args.nan_at_step, args.nan_rank))
    if args.pause_at_step is not None:
        callbacks.append(PauseAtStep(args.pause_at_step, args.run_dir / "paused"))
    trainer = build_trainer(trainer_cfg, args.run_dir, optim.max_steps, callbacks)
    fit(trainer, module, PretrainDataModule(data), resume_checkpoint(args.run_dir, "auto"))


if __name__ == "__main__":
    main()
