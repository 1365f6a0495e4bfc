"""The LightHuBERT distillation loss against a hand computation, its options and helpers."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
import torch
from torch import nn

from speechbert.data.collate import AudioBatch
from speechbert.errors import ConfigError
from speechbert.losses.distill import (
    DistillCriterion,
    DistillLossConfig,
    TeacherTargets,
    build_distill_criterion,
    sandwich_subnets,
    span_mask,
)
from speechbert.models.hubert.build import build_wav2vec2
from speechbert.models.hubert.config import tiny as hubert_tiny
from speechbert.models.hubert.upstream import HubertUpstream
from speechbert.models.lighthubert.space import tiny
from speechbert.models.lighthubert.supernet import SupernetUpstream
from speechbert.models.upstream import UpstreamOutput
from speechbert.nn.elastic import SubnetConfig
from tests.models.lighthubert.tiny_supernet import padded_batch, tiny_supernet, valid_frames

SUBNET = SubnetConfig(96, (2, 4), (192, 384))


pytestmark = pytest.mark.usefixtures("one_thread")


class FixedTeacher(nn.Module):
    """An upstream returning given hidden states (B, T, D_t) and lengths."""

    downsample_rate: int = 320
    num_layers: int = 0
    hidden_size: int = 0

    def __init__(self, states: list[torch.Tensor], lengths: torch.Tensor) -> None:
        super().__init__()
        self.states, self.lengths = states, lengths
        self.num_layers, self.hidden_size = len(states), states[0].shape[-1]

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        return UpstreamOutput(hidden_states=self.states, lengths=self.lengths)


def _batch() -> AudioBatch:
    wavs, lengths = padded_batch()
    return AudioBatch(wavs=wavs, lengths=lengths, ids=["a", "b"])


def _teacher(dim: int = 24, layers: int = 4) -> FixedTeacher:
    generator = torch.Generator().manual_seed(1)
    states = [2.0 * torch.randn(2, 49, dim, generator=generator) + i for i in range(layers)]
    return FixedTeacher(states, torch.tensor([49, 34]))


def _mask() -> torch.Tensor:
    mask = torch.zeros(2, 49, dtype=torch.bool)
    mask[0, 3:13] = mask[0, 30:40] = mask[1, 5:15] = True
    mask[1, 30:40] = True  # frames 34-39 of row 1 are padding: never scored
    return mask


def _hand_layer_norm(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5)


def test_loss_equals_a_hand_computation() -> None:
    cfg = DistillLossConfig(teacher_layers=(-2, -1), cos_weight=0.5, target_output="hidden",
                            target_norm="layer_norm")
    torch.manual_seed(0)
    supernet, teacher = tiny_supernet(), _teacher()
    criterion = build_distill_criterion(cfg, 128, 24)
    batch, mask = _batch(), _mask()
    targets = criterion.teacher_targets(teacher, batch.wavs, batch.lengths)
    out = criterion(supernet, batch, SUBNET, targets, mask)

    expected_targets = (_hand_layer_norm(teacher.states[2]) + _hand_layer_norm(teacher.states[3]))
    expected_targets = expected_targets / 2
    torch.testing.assert_close(targets.targets, expected_targets, atol=1e-5, rtol=0)
    with torch.no_grad():
        last = supernet(batch.wavs, batch.lengths, SUBNET, mask).hidden_states[-1]
    weight = criterion.head.proj.weight[:, :96]  # (24, 96): the leading D input columns
    scored = mask & valid_frames(batch.lengths.new_tensor([49, 34]), 49)
    total_l1, total_cos, count = 0.0, 0.0, 0
    for b, t in scored.nonzero().tolist():
        pred, target = weight @ last[b, t], expected_targets[b, t]
        l1 = (pred - target).abs().mean().item()
        cos = (pred @ target / (pred.norm() * target.norm())).item()
        total_l1 += l1 + 0.5 * math.log1p(math.exp(-cos))
        total_cos += cos
        count += 1
    assert count == 34 == out.num_targets
    assert out.loss.item() == pytest.approx(total_l1 / count, rel=1e-5)
    assert out.metrics["cos"].item() == pytest.approx(total_cos / count, rel=1e-5)
    assert out.metrics["num_masked"].item() == 34


def test_unmasked_frames_are_added_with_their_weight() -> None:
    supernet, teacher, batch, mask = tiny_supernet(), _teacher(), _batch(), _mask()
    losses = {}
    for masked_only, weight in ((True, 1.0), (False, 0.0), (False, 0.5)):
        cfg = DistillLossConfig(teacher_layers=(-1,), masked_only=masked_only,
                                unmasked_weight=weight, target_output="hidden")
        torch.manual_seed(0)
        criterion = build_distill_criterion(cfg, 128, 24)
        targets = criterion.teacher_targets(teacher, batch.wavs, batch.lengths)
        with torch.no_grad():
            out = criterion(supernet, batch, SUBNET, targets, mask)
        losses[(masked_only, weight)] = out
    base = losses[(True, 1.0)].loss
    torch.testing.assert_close(losses[(False, 0.0)].loss, base)
    unmasked = losses[(False, 0.5)].metrics["unmasked_loss"]
    torch.testing.assert_close(losses[(False, 0.5)].loss, base + 0.5 * unmasked)
    assert "unmasked_loss" not in losses[(True, 1.0)].metrics


def test_instance_norm_targets_ignore_padding() -> None:
    teacher = _teacher(layers=2)
    criterion = build_distill_criterion(
        DistillLossConfig(teacher_layers=(0, 1), target_output="hidden"), 128, 24)
    wavs, lengths = padded_batch()
    first = criterion.teacher_targets(teacher, wavs, lengths).targets
    for state in teacher.states:
        state[1, 34:] = 1e3  # garbage in row 1's padded frames
    second = criterion.teacher_targets(teacher, wavs, lengths).targets
    torch.testing.assert_close(second[1, :34], first[1, :34], atol=1e-5, rtol=0)
    torch.testing.assert_close(first[1, :34].mean(0), torch.zeros(24), atol=1e-5, rtol=0)


def test_gradients_reach_the_head_and_the_used_slices_not_the_teacher() -> None:
    supernet = tiny_supernet()
    teacher = SupernetUpstream(tiny_supernet(seed=1), tiny().max_subnet())
    criterion = build_distill_criterion(
        DistillLossConfig(teacher_layers=(-2, -1), target_output="hidden"), 128, 128)
    batch = _batch()
    targets = criterion.teacher_targets(teacher, batch.wavs, batch.lengths)
    torch.manual_seed(0)
    criterion(supernet, batch, SUBNET, targets).loss.backward()
    head_grad = criterion.head.proj.weight.grad
    assert head_grad is not None and head_grad[:, :96].abs().sum() > 0
    assert head_grad[:, 96:].abs().sum() == 0
    assert supernet.mask_embedding is not None and supernet.mask_embedding.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_teacher_layers_must_exist_and_config_errors_name_the_field() -> None:
    criterion = build_distill_criterion(DistillLossConfig(target_output="hidden"), 128, 24)
    wavs, lengths = padded_batch()
    with pytest.raises(ConfigError, match=r"teacher_layers must index the teacher's 4 hidden "
                                          r"states \(-4..3\); got \[-8, -7, -6, -5\]"):
        criterion.teacher_targets(_teacher(), wavs, lengths)
    with pytest.raises(ConfigError, match="DistillLossConfig.target_norm must be one of"):
        DistillLossConfig(target_norm="batch_norm").validate()
    with pytest.raises(ConfigError, match=r"DistillLossConfig.mask_prob must be in \(0, 1\]"):
        DistillLossConfig(mask_prob=0.0).validate()
    with pytest.raises(ConfigError, match="must not hold 0 with target_output='ffn'"):
        DistillLossConfig(teacher_layers=(0, -1)).validate()
    ffn = build_distill_criterion(DistillLossConfig(), 128, 24)
    with pytest.raises(ConfigError, match="target_output='ffn' needs a HuBERT teacher"):
        ffn.teacher_targets(_teacher(), wavs, lengths)


def test_default_targets_are_lighthubert_s_instance_normed_ffn_outputs_of_the_last_layers() -> None:
    """The default target, by hand: each chosen layer's feed-forward output before the residual
    (fairseq's layer_result), instance-normalised over the valid frames, then averaged."""
    torch.manual_seed(0)
    teacher = HubertUpstream(build_wav2vec2(replace(hubert_tiny(), num_layers=3)))
    cfg = DistillLossConfig(teacher_layers=(1, -1))  # layers 1 and 3 of 3
    assert (cfg.target_output, cfg.target_norm, cfg.mask_prob) == ("ffn", "instance_norm", 0.65)
    criterion = build_distill_criterion(cfg, 128, 128)
    wavs, lengths = padded_batch()
    targets = criterion.teacher_targets(teacher, wavs, lengths)
    states = teacher(wavs, lengths).hidden_states  # [input, layer 1, layer 2, layer 3]
    layers = teacher.model.encoder.transformer.layers
    feats, frames = teacher.model.feature_extractor(wavs, lengths)
    _, attention_mask = teacher.model.encoder._preprocess(feats, frames)  # padding
    valid = valid_frames(targets.lengths, states[0].shape[1])[..., None].float()  # (B, T, 1)
    expected = []
    for index in (0, 2):
        ffn = layers[index].feed_forward  # post-LN: the FFN reads the layer's attention block
        layer_input, _ = layers[index].attention(states[index], attention_mask)
        normed = layers[index].layer_norm(states[index] + layer_input)
        out = ffn.output_dense(torch.nn.functional.gelu(ffn.intermediate_dense(normed)))
        count = valid.sum(1, keepdim=True)
        mean = (out * valid).sum(1, keepdim=True) / count
        var = ((out - mean) ** 2 * valid).sum(1, keepdim=True) / count
        expected.append((out - mean) / torch.sqrt(var + 1e-5))
    want = (expected[0] + expected[1]) / 2
    mask = valid[..., 0].bool()
    torch.testing.assert_close(targets.targets[mask], want[mask], atol=1e-4, rtol=0)


def test_student_and_teacher_frames_must_agree() -> None:
    criterion = build_distill_criterion(DistillLossConfig(teacher_layers=(-1,)), 128, 24)
    targets = TeacherTargets(torch.zeros(2, 40, 24), torch.tensor([40, 30]))
    with pytest.raises(ConfigError, match=r"student and teacher frames differ \(49 vs 40"):
        criterion(tiny_supernet(), _batch(), SUBNET, targets)


def test_span_mask_covers_valid_frames_only() -> None:
    torch.manual_seed(0)
    lengths = torch.tensor([200, 120])
    mask = span_mask(lengths, 200, mask_prob=0.8, mask_length=10)
    assert mask.shape == (2, 200) and not mask[1, 120:].any()
    assert mask[0].sum() == mask[1].sum() > 40  # torchaudio evens out the rows' counts


def test_sandwich_gives_sampled_then_max_and_min() -> None:
    space = tiny()
    three = sandwich_subnets(space, random.Random(0), sandwich=True)
    assert three[1:] == [space.max_subnet(), space.min_subnet()]
    assert three[0] == space.sample(random.Random(0))
    assert sandwich_subnets(space, random.Random(0), sandwich=False) == three[:1]


def test_criterion_is_a_module_holding_only_the_head() -> None:
    criterion = build_distill_criterion(DistillLossConfig(), 128, 24)
    assert isinstance(criterion, DistillCriterion)
    assert [n for n, _ in criterion.named_parameters()] == ["head.proj.weight"]
