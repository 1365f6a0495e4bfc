"""``speechbert-distill``: LightHuBERT stage 1 (pre-distillation) or stage 2 (supernet training).

    speechbert-distill distill_experiment=lighthubert_mini_stage1
    speechbert-distill distill_experiment=lighthubert_mini_stage2 distill.rewire_batches=8

The config is :class:`DistillRunConfig` (typed: an unknown key or a wrong type fails before any
work); ``configs/distill.yaml`` picks ``data``, ``trainer`` and a ``distill_experiment``. The search
space is a preset name (``space=tiny|tiny_fbank|small|base|large``); stage 1 puts it on a supernet
with the teacher's front end, stage 2 on the stage-1 checkpoint's supernet (so ``space=small`` reads
a ``space=base`` stage 1: they share one supernet). Everything a run writes goes to ``run_dir``
(``runs/distill/<name>/``): the resolved ``config.yaml``, ``checkpoints/`` (``last.ckpt`` is what
``speechbert-subnet``, ``speechbert-export`` and stage 2 read), TensorBoard and CSV logs,
``metrics.json``. ``resume=auto`` continues from ``checkpoints/last.ckpt`` when it exists (then the
stage-2 rewiring, already in the saved weights, is not repeated). Run from the repo root.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from speechbert.cli import CONFIG_DIR
from speechbert.cli.common import run_main, write_run_config
from speechbert.cli.store import retuple
from speechbert.errors import ConfigError, ManifestError
from speechbert.lightning.datamodule import DataConfig, PretrainDataModule
from speechbert.lightning.distill import (
    DistillConfig,
    DistillModule,
    build_distill_module,
    rewire_student,
)
from speechbert.lightning.pretrain import OptimConfig
from speechbert.lightning.trainer import (
    TrainerConfig,
    build_trainer,
    fit,
    resume_checkpoint,
    seed_everything,
)
from speechbert.losses.distill import DistillLossConfig
from speechbert.models.lighthubert import space as spaces
from speechbert.models.lighthubert.space import SearchSpace

log = logging.getLogger(__name__)



@dataclass
class DistillRunConfig:
    """One distillation run: stage, teacher, space, loss, data, optimizer, trainer, run folder."""

    name: str = MISSING
    """Run name (experiments set it); the run folder is ``runs/distill/<name>``."""
    run_dir: str = "runs/distill/${name}"
    """Run folder: config.yaml, checkpoints/, tensorboard/, csv/, metrics.json."""
    resume: str = "auto"
    """``auto`` (continue from ``last.ckpt`` if any), ``never``, or a ``.ckpt`` path."""
    seed: int = 0
    """Seed of initialisation, masks and dropout (data order: data.seed; subnets: distill)."""
    num_threads: int = 1
    """torch CPU threads; 1 is the fastest for the tiny space on a shared CPU, 0 keeps torch's."""
    space: str = "tiny"
    """Search-space preset: ``tiny`` / ``tiny_fbank`` (tests, demo), ``small`` or ``base``
    (LightHuBERT, one supernet), ``large`` (a HuBERT Large teacher)."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Stage, teacher, stage-1 checkpoint, sandwich rule, frozen front end, rewiring."""
    loss: DistillLossConfig = field(default_factory=DistillLossConfig)
    """Teacher target layers and normalisation, masking, loss terms."""
    data: DataConfig = field(default_factory=DataConfig)
    """Manifests (no labels needed), crops and batching."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW and the learning-rate schedule; ``optim.max_steps`` ends the run."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Devices, precision, clipping, validation and checkpoint cadence."""


def register_configs() -> None:
    """Put the schema into Hydra's ConfigStore."""
    ConfigStore.instance().store(name="distill_schema", node=DistillRunConfig)


def to_run_config(cfg: DictConfig) -> DistillRunConfig:
    """The composed Hydra config as dataclasses, tuple fields restored."""
    run = OmegaConf.to_object(cfg)
    assert isinstance(run, DistillRunConfig)
    return dataclasses.replace(run, loss=retuple(run.loss), optim=retuple(run.optim))


def search_space(name: str) -> SearchSpace:
    """The preset ``name``; :class:`ConfigError` lists the choices."""
    if name not in spaces.PRESETS:
        raise ConfigError(f"space must be one of {sorted(spaces.PRESETS)}, got {name!r}")
    return spaces.PRESETS[name]()


def check_inputs(run: DistillRunConfig) -> None:
    """Fail early on a bad setting or a missing manifest, teacher or stage-1 checkpoint."""
    run.distill.validate()
    run.loss.validate()
    run.optim.validate()
    run.data.validate()
    run.trainer.validate()
    if run.num_threads < 0:
        raise ConfigError(f"num_threads must be >= 0 (0 keeps torch's default), "
                          f"got {run.num_threads}")
    if run.data.train_labels is not None or run.data.valid_labels is not None:
        raise ConfigError("data.train_labels / data.valid_labels must be null: distillation "
                          "learns from the teacher, not from frame labels")
    for path in [*run.data.train_manifests, *run.data.valid_manifests]:
        if not Path(path).is_file():
            raise ManifestError(f"{path}: manifest not found (data.train_manifests / "
                                f"data.valid_manifests); run the corpus's data_prep command")
    inputs = {"distill.teacher": run.distill.teacher, "distill.init_from": run.distill.init_from}
    for key, where in inputs.items():
        if where and not Path(where).exists():
            hint = ("train it with speechbert-pretrain" if key == "distill.teacher" else
                    "run stage 1 first (speechbert-distill distill_experiment=<..._stage1>)")
            raise ConfigError(f"{key}={where}: not found; {hint}")


def rewire_from_data(module: DistillModule, data: PretrainDataModule, num_batches: int) -> None:
    """Rewire the student on the first ``num_batches`` training batches (stage 2, fresh runs)."""
    data.setup("fit")
    batches = itertools.islice(data.train_dataloader(), num_batches)
    importance = rewire_student(module, batches)
    top = [int(h.argmax()) for h in importance.heads]
    log.info("rewired heads and FFN units on %d batches (most important head per layer: %s)",
             num_batches, top)


def run(cfg: DictConfig) -> dict[str, float]:
    """Check the config, build everything, write ``config.yaml`` and train."""
    run_cfg = to_run_config(cfg)
    check_inputs(run_cfg)
    space = search_space(run_cfg.space)
    ckpt_path = resume_checkpoint(run_cfg.run_dir, run_cfg.resume)
    write_run_config(run_cfg.run_dir, cfg)
    if run_cfg.num_threads:
        torch.set_num_threads(run_cfg.num_threads)
    seed_everything(run_cfg.seed)
    module = build_distill_module(run_cfg.distill, space, run_cfg.loss, run_cfg.optim)
    data = PretrainDataModule(run_cfg.data)
    if run_cfg.distill.rewire_batches and ckpt_path is None:
        rewire_from_data(module, data, run_cfg.distill.rewire_batches)
    trainer = build_trainer(run_cfg.trainer, run_cfg.run_dir, run_cfg.optim.max_steps)
    return fit(trainer, module, data, ckpt_path)


register_configs()


@hydra.main(config_path=CONFIG_DIR, config_name="distill", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Entry point of ``speechbert-distill`` (Hydra parses the command line)."""
    run_main(run, cfg)


if __name__ == "__main__":
    main()
