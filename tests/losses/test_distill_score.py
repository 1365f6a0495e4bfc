"""Scoring subnets by validation distillation loss: fixed masks, cached targets, checkpoint
settings read back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speechbert.data.collate import AudioBatch
from speechbert.errors import CheckpointError
from speechbert.losses.distill import DistillLossConfig, build_distill_criterion
from speechbert.losses.distill_score import (
    SubnetScorer,
    load_prediction_head,
    loss_config_from_hparams,
    prepare_scoring_batches,
    seeded_mask,
)
from speechbert.models.lighthubert.space import tiny
from speechbert.models.lighthubert.supernet import SupernetUpstream
from speechbert.models.upstream import UpstreamOutput
from speechbert.nn.elastic import SubnetConfig
from tests.models.lighthubert.tiny_supernet import padded_batch, tiny_supernet

LOSS = DistillLossConfig(teacher_layers=(-2, -1), mask_prob=0.5, mask_length=4,
                         target_output="hidden")


pytestmark = pytest.mark.usefixtures("one_thread")


class CountingTeacher(nn.Module):
    """A tiny supernet's max subnet as the teacher, counting its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.upstream = SupernetUpstream(tiny_supernet(seed=5), tiny().max_subnet())
        self.hidden_size = self.upstream.hidden_size
        self.calls = 0

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        self.calls += 1
        return self.upstream(wavs, lengths)


def _batches() -> list[AudioBatch]:
    return [AudioBatch(wavs=w, lengths=n, ids=["a", "b"])
            for w, n in (padded_batch(0), padded_batch(1))]


def _scorer() -> tuple[SubnetScorer, CountingTeacher]:
    teacher = CountingTeacher()
    criterion = build_distill_criterion(LOSS, 128, teacher.hidden_size)
    prepared = prepare_scoring_batches(criterion, teacher, _batches(), seed=3)
    return SubnetScorer(tiny_supernet(), criterion, prepared), teacher


def test_scores_are_repeatable_and_the_teacher_runs_once_per_batch() -> None:
    scorer, teacher = _scorer()
    space = tiny()
    first = [scorer(s) for s in (space.min_subnet(), space.max_subnet())]
    torch.manual_seed(123)  # the global RNG does not reach the masks
    again = [scorer(s) for s in (space.min_subnet(), space.max_subnet())]
    assert first == again
    assert first[0] != first[1]
    assert teacher.calls == 2


def test_masks_are_seeded_per_batch_and_leave_the_global_rng_alone() -> None:
    scorer, _ = _scorer()
    lengths = scorer.batches[0].targets.lengths
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    mask = seeded_mask(scorer.criterion, lengths, 49, seed=3)
    assert torch.equal(torch.rand(1), before)
    assert torch.equal(mask, scorer.batches[0].mask)
    assert torch.equal(seeded_mask(scorer.criterion, lengths, 49, seed=4),
                       scorer.batches[1].mask)
    assert not torch.equal(scorer.batches[0].mask, scorer.batches[1].mask)


def test_score_is_the_masked_frame_weighted_mean_of_the_batch_losses() -> None:
    scorer, _ = _scorer()
    subnet = SubnetConfig(96, (2, 4), (192, 384))
    losses, weights = [], []
    with torch.no_grad():
        for b in scorer.batches:
            out = scorer.criterion(scorer.supernet, b.batch, subnet, b.targets, b.mask)
            losses.append(float(out.loss))
            weights.append(out.num_targets)
    want = sum(loss * w for loss, w in zip(losses, weights, strict=True)) / sum(weights)
    assert scorer(subnet) == pytest.approx(want, rel=1e-6)
    assert [b.num_masked for b in scorer.batches] == weights


def test_loss_config_and_head_come_back_from_checkpoint_values() -> None:
    values = {"teacher_layers": [-2, -1], "target_norm": "layer_norm", "mask_prob": 0.5}
    cfg = loss_config_from_hparams(values, "last.ckpt")
    assert cfg.teacher_layers == (-2, -1) and cfg.mask_prob == 0.5
    with pytest.raises(CheckpointError, match=r"last.ckpt: .*\['wobble'\]"):
        loss_config_from_hparams({**values, "wobble": 1}, "last.ckpt")
    with pytest.raises(CheckpointError, match="last.ckpt: .*target_norm must be one of"):
        loss_config_from_hparams({**values, "target_norm": "bad"}, "last.ckpt")
    head = build_distill_criterion(LOSS, 128, 24).head
    loaded = load_prediction_head(head.state_dict(), 128, 24, "last.ckpt")
    assert torch.equal(loaded.proj.weight, head.proj.weight)
    with pytest.raises(CheckpointError, match="last.ckpt: the criterion.head"):
        load_prediction_head(head.state_dict(), 128, 32, "last.ckpt")
