"""The LightHuBERT distillation module: stage 1 learns, stage 2 trains the sandwich and validates
three subnets on fixed masks, a frozen front end stays put, and checkpoints keep the contract."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from speechbert.data.collate import AudioBatch
from speechbert.errors import ConfigError
from speechbert.lightning.distill import (
    DistillConfig,
    DistillModule,
    build_distill_module,
    check_teacher,
    frozen_parameters,
    rewire_student,
)
from speechbert.lightning.pretrain import OptimConfig
from speechbert.losses.distill import DistillLossConfig
from speechbert.losses.distill_score import seeded_mask
from speechbert.models.hubert.config import tiny as hubert_tiny
from speechbert.models.hubert.convert import load_teacher
from speechbert.models.lighthubert.checkpoint import load_supernet
from speechbert.models.lighthubert.space import small, tiny
from speechbert.models.lighthubert.teacher import TeacherMismatchError
from tests.lightning.toy_distill import (
    LOSS,
    fixed_batch,
    save_teacher_checkpoint,
    tiny_teacher,
    toy_module,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _loader(batches: list[AudioBatch]) -> DataLoader:
    return DataLoader(batches, batch_size=None, collate_fn=lambda b: b)  # type: ignore[arg-type]


def _trainer(tmp_path: Path, max_steps: int, **kwargs: object) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0,
                     default_root_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


def _fixed_loss(module: DistillModule, batch: AudioBatch) -> float:
    """The full-size loss on ``batch`` with a seeded mask, no dropout."""
    module.eval()
    with torch.no_grad():
        targets = module.criterion.teacher_targets(module.teacher, batch.wavs, batch.lengths)
        mask = seeded_mask(module.criterion, targets.lengths, targets.targets.shape[1], 0)
        loss = module.criterion(module.student, batch, module.space.max_subnet(), targets, mask)
    module.train()
    return float(loss.loss)


def test_stage1_loss_decreases_on_a_fixed_batch(tmp_path: Path) -> None:
    module = toy_module(stage=1, max_steps=12)
    batch = fixed_batch()
    before = _fixed_loss(module, batch)
    _trainer(tmp_path, 12).fit(module, train_dataloaders=_loader([batch] * 12))
    after = _fixed_loss(module, batch)
    assert after < 0.8 * before, (before, after)
    assert module.train_subnets(0) == [("max", tiny().max_subnet())]
    assert not module.teacher.training, "the teacher stays in eval mode while the student trains"
    assert all(not p.requires_grad and p.grad is None for p in module.teacher.parameters())


def test_stage2_trains_the_sandwich_and_validates_three_subnets(tmp_path: Path) -> None:
    module = toy_module(stage=2, max_steps=2, sandwich=True)
    names = [name for name, _ in module.train_subnets(0)]
    assert names == ["sampled", "max", "min"]
    assert module.train_subnets(0)[1:] == [("max", tiny().max_subnet()),
                                          ("min", tiny().min_subnet())]
    assert module.train_subnets(0) == module.train_subnets(0), "a step's subnet is reproducible"
    trainer = _trainer(tmp_path, 2, val_check_interval=2, check_val_every_n_epoch=None)
    batches = [fixed_batch(0), fixed_batch(1)]
    trainer.fit(module, train_dataloaders=_loader(batches), val_dataloaders=_loader(batches))
    metrics = trainer.callback_metrics
    for key in ("train/loss_sampled", "train/loss_max", "train/loss_min", "val/loss_max",
                "val/loss_default", "val/loss_min"):
        assert torch.isfinite(metrics[key]), key
    assert "val/loss" not in metrics
    first = {k: float(v) for k, v in trainer.validate(module, _loader(batches))[0].items()}
    again = {k: float(v) for k, v in trainer.validate(module, _loader(batches))[0].items()}
    assert first == again, "validation masks are seeded per batch"
    assert first["val/loss_max"] != first["val/loss_min"]


def test_single_subnet_without_sandwich() -> None:
    module = toy_module(stage=2, sandwich=False)
    assert [name for name, _ in module.train_subnets(3)] == ["sampled"]
    drawn = {module.train_subnets(i)[0][1] for i in range(20)}
    assert len(drawn) > 5, "subnets are drawn anew for each optimizer step"


def test_frozen_front_end_gets_no_gradient_and_stays_put(tmp_path: Path) -> None:
    module = toy_module(stage=2, max_steps=2, freeze_front_end=True)
    front = {k: v.clone() for k, v in module.student.feature_extractor.state_dict().items()}
    projection = module.student.feature_projection.projection.weight.clone()
    trainer = _trainer(tmp_path, 2)
    trainer.fit(module, train_dataloaders=_loader([fixed_batch(0), fixed_batch(1)]))
    assert frozen_parameters(module) and all(
        name.startswith("student.feature_extractor.") for name in frozen_parameters(module))
    for key, value in module.student.feature_extractor.state_dict().items():
        assert torch.equal(value, front[key]), key
    assert all(p.grad is None for p in module.student.feature_extractor.parameters())
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in module.student.feature_extractor.parameters()}
    assert not torch.equal(module.student.feature_projection.projection.weight, projection)


def test_checkpoint_keeps_the_contract_and_load_supernet_reads_it(tmp_path: Path) -> None:
    module = toy_module(stage=2, max_steps=1)
    trainer = _trainer(tmp_path, 1)
    trainer.fit(module, train_dataloaders=_loader([fixed_batch()]))
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert {k.split(".")[0] for k in ckpt["state_dict"]} == {"student", "criterion"}
    assert all(k.startswith(("student.", "criterion.head.")) for k in ckpt["state_dict"])
    hparams = ckpt["hyper_parameters"]
    assert hparams["stage"] == 2 and hparams["teacher"] == "toy-teacher"
    assert DistillLossConfig(**{**hparams["loss"], "teacher_layers": tuple(
        hparams["loss"]["teacher_layers"])}) == LOSS
    loaded = load_supernet(path)
    assert loaded.space == tiny() and loaded.global_step == 1
    for key, value in module.student.state_dict().items():
        assert torch.equal(loaded.supernet.state_dict()[key], value), key
    assert torch.equal(loaded.head_state["proj.weight"], module.criterion.head.proj.weight)
    resumed = toy_module(stage=2, max_steps=2)
    _trainer(tmp_path, 2).fit(resumed, train_dataloaders=_loader([fixed_batch()] * 2),
                              ckpt_path=str(path))  # strict load without teacher weights


def test_build_module_stage1_from_teacher_then_stage2_from_stage1(tmp_path: Path) -> None:
    full_size = replace(hubert_tiny(), num_layers=4, num_heads=4, ffn_dim=512)  # tiny's supernet
    teacher_path = save_teacher_checkpoint(tmp_path / "teacher.ckpt", config=full_size)
    stage1 = build_distill_module(DistillConfig(stage=1, teacher=str(teacher_path)), tiny(),
                                  LOSS, OptimConfig())
    teacher = load_teacher(teacher_path)
    copied = stage1.student.state_dict()["encoder.layers.3.attention.k_proj.weight"]
    assert torch.equal(copied, teacher.model.state_dict()[
        "encoder.transformer.layers.3.attention.k_proj.weight"])
    with pytest.raises(TeacherMismatchError, match="encoder.num_layers: teacher 2, supernet 4"):
        build_distill_module(DistillConfig(stage=1, teacher=str(save_teacher_checkpoint(
            tmp_path / "small_teacher.ckpt"))), tiny(), LOSS, OptimConfig())
    trainer = _trainer(tmp_path, 1)
    trainer.fit(stage1, train_dataloaders=_loader([fixed_batch()]))
    trainer.save_checkpoint(tmp_path / "stage1.ckpt")
    cfg = DistillConfig(stage=2, teacher=str(teacher_path), init_from=str(tmp_path / "stage1.ckpt"))
    stage2 = build_distill_module(cfg, tiny(), LOSS, OptimConfig())
    for key, value in stage1.state_dict().items():
        assert torch.equal(stage2.state_dict()[key], value), key
    with pytest.raises(ConfigError, match="distill.init_from=.*space='small' is a space of a "
                       "different supernet"):
        build_distill_module(cfg, small(), LOSS, OptimConfig())


def test_bad_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"loss.teacher_layers must index the teacher's 3"):
        check_teacher(tiny_teacher(), tiny(), DistillLossConfig(), "t.ckpt")
    with pytest.raises(ConfigError, match="distill.init_from must name the stage-1"):
        DistillConfig(stage=2, teacher="t.ckpt").validate()
    with pytest.raises(ConfigError, match="distill.rewire_batches must be 0 in stage 1"):
        DistillConfig(stage=1, teacher="t.ckpt", rewire_batches=2).validate()
    with pytest.raises(ConfigError, match="distill.stage must be one of"):
        DistillConfig(stage=3, teacher="t.ckpt").validate()


def test_rewiring_keeps_the_full_size_output_and_the_rng() -> None:
    module = toy_module(stage=2).eval()
    batch = fixed_batch()
    full = tiny().max_subnet()
    before = module.student(batch.wavs, batch.lengths, full).hidden_states[-1]
    rng = torch.get_rng_state()
    rewire_student(module, [batch])
    assert torch.equal(torch.get_rng_state(), rng)
    after = module.student(batch.wavs, batch.lengths, full).hidden_states[-1]
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    assert all(p.grad is None for p in module.parameters())
