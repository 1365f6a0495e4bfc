"""A toy stage-2 distillation run across processes (for the subprocess DDP tests).

    python -m tests.lightning.toy_distill_ddp --corpus DIR --run-dir DIR [--devices 2
        --strategy ddp | --accumulate 2] [--no-find-unused-parameters]

Stage 2 of the tiny space, one sampled subnet per step (no sandwich, so shallower subnets leave
whole layers without gradient), dropout off so a batch is scored the same in any process. Each
rank writes ``trace_rank<r>.json``: per training batch the optimizer step, the batch's utterance
ids, the trained subnets and the (unscaled) loss.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch

from speechbert.lightning.datamodule import PretrainDataModule
from speechbert.lightning.distill import DistillConfig, DistillModule
from speechbert.lightning.pretrain import OptimConfig
from speechbert.lightning.trainer import TrainerConfig, build_trainer, fit
from speechbert.losses.distill import build_distill_criterion
from speechbert.models.lighthubert.space import SearchSpace, tiny
from speechbert.models.lighthubert.supernet import build_supernet
from tests.lightning.child_process import run_with_threads, start_module
from tests.lightning.toy_distill import LOSS, tiny_teacher, toy_data


def dropout_free_tiny() -> SearchSpace:
    """The tiny space with every dropout at 0 (dropout draws from each process's own RNG)."""
    space = tiny()
    encoder = replace(space.arch.encoder, dropout=0.0, attention_dropout=0.0,
                      activation_dropout=0.0, projection_dropout=0.0)
    return replace(space, arch=replace(space.arch, encoder=encoder)).validate()


class TraceBatches(L.Callback):
    """Records, per training batch, the step, the utterance ids, the subnets and the loss."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.rows: list[dict[str, Any]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        assert isinstance(pl_module, DistillModule)
        subnets = pl_module.train_subnets(trainer.global_step)  # what training_step trains
        self.rows.append({"step": trainer.global_step, "ids": list(batch.ids),
                          "subnets": [subnet.to_dict() for _, subnet in subnets]})

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self.rows[-1]["loss"] = float(outputs["loss"]) * trainer.accumulate_grad_batches

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = self.run_dir / f"trace_rank{trainer.global_rank}.json"
        out.write_text(json.dumps(self.rows))


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the toy run."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--max-steps", type=int, default=6)
    p.add_argument("--devices", default="1")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--accumulate", type=int, default=1)
    p.add_argument("--no-find-unused-parameters", dest="find_unused", action="store_false")
    return p


def main(argv: list[str] | None = None) -> None:
    """Run the toy stage 2 on one thread; torch's thread count is restored afterwards."""
    run_with_threads(run, build_parser().parse_args(argv), 1)


def run(args: argparse.Namespace) -> None:
    """Build the module (seeded student, no dropout), data and trainer from ``args`` and fit."""
    L.seed_everything(0, verbose=False)
    space = dropout_free_tiny()
    teacher = tiny_teacher()
    torch.manual_seed(0)
    student = build_supernet(space.arch)
    criterion = build_distill_criterion(LOSS, space.arch.encoder.embed_dim, teacher.hidden_size)
    cfg = DistillConfig(stage=2, teacher="toy-teacher", init_from="toy-stage1.ckpt")
    optim = OptimConfig(lr=2e-3, warmup_steps=2, max_steps=args.max_steps, decay="cosine")
    module = DistillModule(student, teacher, criterion, space, cfg, optim)
    trainer_cfg = TrainerConfig(
        accelerator="cpu", devices=args.devices, strategy=args.strategy,
        find_unused_parameters=args.find_unused, accumulate_grad_batches=args.accumulate,
        gradient_clip_val=1.0, val_every_n_steps=4 * args.max_steps, num_sanity_val_steps=0,
        checkpoint_every_n_steps=args.max_steps, log_every_n_steps=1, progress_bar=False)
    trainer = build_trainer(trainer_cfg, args.run_dir, args.max_steps,
                            [TraceBatches(args.run_dir)])
    fit(trainer, module, PretrainDataModule(toy_data(args.corpus)), None)


def start(corpus: Path, run_dir: Path, *args: str) -> subprocess.Popen[str]:
    """Start this module as a child process with ``args``; its output goes to
    ``<run_dir>.log`` (read it with :func:`tests.lightning.child_process.finish`)."""
    return start_module("tests.lightning.toy_distill_ddp", corpus, run_dir, *args)


if __name__ == "__main__":
    main()
