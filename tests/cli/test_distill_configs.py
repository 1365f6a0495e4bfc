"""Every shipped distillation config composes into valid typed configs; bad keys fail fast."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from speechbert.cli.distill import (
    CONFIG_DIR,
    DistillRunConfig,
    check_inputs,
    search_space,
    to_run_config,
)
from speechbert.errors import ConfigError

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "distill_experiment").glob("*.yaml"))


def _compose(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("distill", overrides=list(overrides), return_hydra_config=False)


def _validated(*overrides: str) -> DistillRunConfig:
    run = to_run_config(_compose(*overrides))
    for part in (run.distill, run.loss, run.optim, run.data, run.trainer):
        part.validate()
    search_space(run.space)
    return run


def test_the_expected_experiments_ship() -> None:
    # one stage 1 for Base and Small: they are two spaces of one supernet
    assert set(EXPERIMENTS) == {"lighthubert_mini_stage1", "lighthubert_mini_stage2",
                                "lighthubert_base_stage1", "lighthubert_base_stage2",
                                "lighthubert_small_stage2"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment: str) -> None:
    run = _validated(f"distill_experiment={experiment}")
    assert run.name == experiment and run.run_dir == f"runs/distill/{experiment}"
    stage = int(experiment[-1])
    assert run.distill.stage == stage
    assert isinstance(run.loss.teacher_layers, tuple)
    assert run.space == ("tiny_fbank" if "_mini_" in experiment else experiment.split("_")[1])
    if stage == 2:
        first = "lighthubert_mini_stage1" if "_mini_" in experiment else "lighthubert_base_stage1"
        assert run.distill.init_from == f"runs/distill/{first}/checkpoints/last.ckpt"
    if "_mini_" in experiment:
        assert run.distill.teacher == "runs/pretrain/hubert_mini_iter2/checkpoints/last.ckpt"
        assert run.loss.teacher_layers == (-2, -1)  # the last two of the teacher's states
    else:
        assert run.data.train_manifests[0].startswith("manifests/librispeech/")
        assert run.loss.teacher_layers == (-8, -7, -6, -5, -4, -3, -2, -1)
        assert (run.loss.target_output, run.loss.target_norm, run.loss.mask_prob) == (
            "ffn", "instance_norm", 0.65)  # LightHuBERT's target (losses/distill.py)
        assert run.distill.teacher == (
            "runs/pretrain/hubert_base_librispeech_iter2/checkpoints/last.ckpt")


def test_overrides_are_typed() -> None:
    run = _validated("distill_experiment=lighthubert_mini_stage2", "distill.sandwich=false",
                     "loss.teacher_layers=[-1]", "distill.rewire_batches=4")
    assert run.distill.sandwich is False and run.loss.teacher_layers == (-1,)
    with pytest.raises(ConfigCompositionException, match="distill.nope"):
        _compose("distill_experiment=lighthubert_mini_stage1", "distill.nope=1")
    with pytest.raises(ConfigCompositionException, match="distill.stage"):
        _compose("distill_experiment=lighthubert_mini_stage1", "distill.stage=two")


def test_inputs_are_checked_before_any_work(tmp_path: Path) -> None:
    manifest, teacher = tmp_path / "m.tsv", tmp_path / "teacher.ckpt"
    manifest.write_text("id\tpath\tnum_samples\tspeaker\n")
    teacher.write_bytes(b"")
    files = [f"data.train_manifests=[{manifest}]", f"data.valid_manifests=[{manifest}]"]
    run = to_run_config(_compose("distill_experiment=lighthubert_mini_stage2", *files,
                                 f"distill.teacher={teacher}",
                                 f"distill.init_from={tmp_path}/none.ckpt"))
    with pytest.raises(ConfigError, match=r"distill.init_from=.*none.ckpt: not found; run "
                                          r"stage 1 first"):
        check_inputs(run)
    run = to_run_config(_compose("distill_experiment=lighthubert_mini_stage1", *files,
                                 f"distill.teacher={tmp_path}/none.ckpt"))
    with pytest.raises(ConfigError, match=r"distill.teacher=.*none.ckpt: not found"):
        check_inputs(run)
    run = to_run_config(_compose("distill_experiment=lighthubert_mini_stage1", *files,
                                 f"distill.teacher={teacher}", f"data.train_labels=[{teacher}]",
                                 f"data.valid_labels=[{teacher}]"))
    with pytest.raises(ConfigError, match="data.train_labels / data.valid_labels must be null"):
        check_inputs(run)
    with pytest.raises(ConfigError, match=r"space must be one of "
                       r"\['base', 'large', 'small', 'tiny', 'tiny_fbank'\]"):
        search_space("huge")
