"""``speechbert-superb``: train and test one SUPERB head (ASR, KS or SV) over a frozen upstream.

    speechbert-superb upstream=fbank task=ks
    speechbert-superb upstream=hubert_mini_iter2 task=asr task.optim.max_steps=2000
    speechbert-superb upstream.name=mine upstream.kind=hubert upstream.path=x.ckpt task=sv

The config is :class:`SuperbConfig` (typed: an unknown key or a wrong type fails before any
work). ``configs/superb.yaml`` picks an ``upstream`` (``configs/upstream/*.yaml``: kind + path),
a ``task`` (``configs/task/{asr,ks,sv}.yaml`` for the bundled corpus, ``*_superb.yaml`` for the
real corpora with SUPERB's head sizes) and a ``trainer``. The cell's run folder is
``<out>/<upstream.name>/<task.name>`` with ``config.yaml``, checkpoints, logs and
``result.json``; a cell with ``result.json`` is skipped, otherwise ``resume=auto`` continues
from ``last.ckpt``. Features (``task.features``): ``cache`` computes each split's hidden states
once per upstream under ``cache_dir``; ``online`` runs the frozen upstream inside every step
(corpora too large to cache); ``auto`` (the default) estimates the cache against the free disk
of ``cache_dir``, picks, and logs why.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from speechbert.cli import CONFIG_DIR
from speechbert.cli.store import retuple
from speechbert.errors import ConfigError, SpeechbertError
from speechbert.lightning.superb import AsrTaskConfig, KsTaskConfig, SvTaskConfig, TaskConfig
from speechbert.lightning.superb_run import run_cell
from speechbert.lightning.trainer import TrainerConfig
from speechbert.models.load import UpstreamSpec

log = logging.getLogger(__name__)



@dataclass
class SuperbConfig:
    """One SUPERB cell: an upstream, a task, the trainer, and where results and caches go."""

    upstream: UpstreamSpec = field(default_factory=UpstreamSpec)
    """The frozen upstream: ``upstream=<file in configs/upstream>`` or its fields."""
    task: Any = MISSING
    """The task of the ``task`` group (asr, ks, sv, *_superb) with overrides."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Devices, precision, clipping, progress bar (the task sets validation cadence)."""
    out: str = "runs/superb"
    """Root of the cells' run folders."""
    run_dir: str = "${out}/${upstream.name}/${task.name}"
    """This cell's folder: config.yaml, checkpoints/, logs, result.json."""
    cache_dir: str = "runs/cache/superb"
    """Feature cache shared by all cells (entries keyed by upstream, subnet and manifest)."""
    resume: str = "auto"
    """``auto`` (continue from ``last.ckpt`` if any), ``never``, or a ``.ckpt`` path."""
    seed: int = 0
    """Seed of head initialisation and batch order."""
    num_threads: int = 1
    """torch CPU threads; 1 is the fastest for tiny heads on a shared CPU, 0 keeps torch's."""


def register_configs() -> None:
    """Put the schema and the typed task schemas into Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="superb_schema", node=SuperbConfig)
    for name, schema in (("asr", AsrTaskConfig), ("ks", KsTaskConfig), ("sv", SvTaskConfig)):
        cs.store(group="task", name=f"{name}_schema", node=schema)


def to_run_config(cfg: DictConfig) -> SuperbConfig:
    """The composed Hydra config as dataclasses (tuples restored in the task's parts)."""
    run = OmegaConf.to_object(cfg)
    assert isinstance(run, SuperbConfig)
    if not isinstance(run.task, TaskConfig):
        raise ConfigError(f"task must be one of the task group's configs (task=asr, ks, sv), "
                          f"got {type(run.task).__name__}")
    task = retuple(run.task)
    task = dataclasses.replace(task, optim=retuple(task.optim), head=retuple(task.head))
    return dataclasses.replace(run, task=task)


def compose_config(overrides: list[str], upstream_file: str | None = None) -> DictConfig:
    """``superb.yaml`` composed with ``overrides`` (as on the command line), without running
    Hydra's app; ``upstream_file`` (a YAML of :class:`UpstreamSpec` fields) replaces the
    upstream."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="superb", overrides=overrides)
    if upstream_file is not None:
        path = Path(upstream_file)
        if not path.is_file():
            raise ConfigError(f"{path}: upstream spec file not found; give a YAML with name, "
                              f"kind, path (see configs/upstream/) or a name in configs/upstream")
        cfg.upstream = OmegaConf.merge(cfg.upstream, OmegaConf.load(path))
    return cfg


def run(cfg: DictConfig) -> dict[str, Any]:
    """Check the config and run the cell (skipped when finished); return its result record."""
    run_cfg = to_run_config(cfg)
    run_cfg.trainer.validate()
    if run_cfg.num_threads < 0:
        raise ConfigError(f"num_threads must be >= 0 (0 keeps torch's default), "
                          f"got {run_cfg.num_threads}")
    if run_cfg.num_threads:
        torch.set_num_threads(run_cfg.num_threads)
    return run_cell(run_cfg.upstream, run_cfg.task, run_cfg.trainer, run_dir=run_cfg.run_dir,
                    cache_dir=run_cfg.cache_dir, resume=run_cfg.resume, seed=run_cfg.seed,
                    config_text=OmegaConf.to_yaml(cfg, resolve=True))


register_configs()


@hydra.main(config_path=CONFIG_DIR, config_name="superb", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Entry point of ``speechbert-superb`` (Hydra parses the command line)."""
    try:
        record = run(cfg)
    except SpeechbertError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        sys.exit(2)
    log.info("%s / %s: test %s = %.4f (%s)", record["upstream"], record["task"],
             record["metric"], record["value"],
             {k: round(v, 4) for k, v in record["metrics"].items()})


if __name__ == "__main__":
    main()
