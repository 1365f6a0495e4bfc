"""The supernet: parity with torchaudio's HuBERT at full size, teacher init, masking, compute."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from torchaudio.models import hubert_pretrain_model

from speechbert.data.frames import receptive_field
from speechbert.errors import ConfigError
from speechbert.models.lighthubert.space import SearchSpace, count_macs, tiny
from speechbert.models.lighthubert.supernet import SupernetUpstream, build_supernet
from speechbert.models.lighthubert.teacher import TeacherMismatchError, copy_teacher, teacher_key
from speechbert.models.upstream import Upstream
from speechbert.nn.elastic import SubnetConfig
from tests.models.lighthubert.tiny_supernet import (
    dense_torchaudio,
    padded_batch,
    randomise,
    tiny_pre_ln_space,
    tiny_supernet,
    valid_frames,
)


@pytest.mark.parametrize("space_fn", [tiny, tiny_pre_ln_space], ids=["post_ln", "pre_ln"])
def test_max_subnet_hidden_states_equal_torchaudio_hubert_with_the_same_weights(
        space_fn: Callable[[], SearchSpace]) -> None:
    space = space_fn()
    torch.manual_seed(0)
    reference = dense_torchaudio(space.arch)
    randomise(reference)
    supernet = build_supernet(space.arch).eval()
    report = copy_teacher(supernet, reference)
    assert report.dropped == [] and report.untouched == ["mask_embedding"]
    wavs, lengths = padded_batch()
    with torch.no_grad():
        out = SupernetUpstream(supernet, space.max_subnet())(wavs, lengths)
        feats, frames = reference.feature_extractor(wavs, lengths)
        x, attention_mask = reference.encoder._preprocess(feats, frames)
        transformer = reference.encoder.transformer
        expected = [transformer._preprocess(x)]
        expected += reference.encoder.extract_features(feats, frames)
        if space.arch.encoder.layer_norm_first:  # the last state carries the final LayerNorm
            expected[-1] = transformer.layer_norm(expected[-1])
    torch.testing.assert_close(out.lengths, frames)
    assert len(out.hidden_states) == len(expected) == 5
    valid = valid_frames(frames, feats.shape[1])
    for got, want in zip(out.hidden_states, expected, strict=True):
        torch.testing.assert_close(got[valid], want[valid], atol=1e-5, rtol=0)


def test_init_from_a_pretraining_model_copies_the_mask_embedding_and_reports_the_rest() -> None:
    space = tiny()
    arch, enc = space.arch, space.arch.encoder
    teacher = hubert_pretrain_model(
        arch.extractor_mode, list(arch.conv_layers), arch.conv_bias, enc.embed_dim, 0.0,
        enc.pos_conv_kernel, enc.pos_conv_groups, enc.num_layers, enc.num_heads, 0.0,
        enc.ffn_dim, 0.0, 0.0, enc.layer_norm_first, 0.0, 0.8, "static", 0.0, 10, False, 1,
        0.0, "static", 0.0, 10, False, 1, False, False, 100, 64, None)
    supernet = build_supernet(arch)
    report = copy_teacher(supernet, teacher)
    assert report.untouched == []
    assert set(report.dropped) == {"logit_generator.label_embeddings",
                                   "logit_generator.final_proj.weight",
                                   "logit_generator.final_proj.bias"}
    assert len(report.copied) == len(supernet.state_dict())
    mask_embedding = teacher.mask_generator.mask_embedding
    torch.testing.assert_close(supernet.mask_embedding, mask_embedding, atol=0, rtol=0)
    assert "copied 83 tensors (every supernet tensor); dropped 3" in report.summary()


def test_a_teacher_of_another_width_is_refused_naming_each_difference() -> None:
    supernet, arch = tiny_supernet(), tiny().arch
    narrow = replace(arch.encoder, embed_dim=96, num_heads=3, ffn_dim=384, ffn_chunk=96)
    teacher = dense_torchaudio(replace(arch, encoder=narrow))
    with pytest.raises(TeacherMismatchError, match=r"encoder\.embed_dim: teacher 96, supernet "
                       r"128; encoder\.num_heads: teacher 3, supernet 4; encoder\.ffn_dim"):
        copy_teacher(supernet, teacher, "toy.ckpt")


def test_a_teacher_with_another_front_end_is_refused_before_any_copy() -> None:
    supernet, arch = tiny_supernet(), tiny().arch  # group_norm: HuBERT Base's layout
    teacher = dense_torchaudio(replace(arch, extractor_mode="layer_norm"))
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    with pytest.raises(TeacherMismatchError, match="extractor_mode: teacher layer_norm, "
                       "supernet group_norm"):
        copy_teacher(supernet, teacher, "large.pt")
    for key, value in supernet.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=0, rtol=0)


def test_teacher_key_map() -> None:
    assert teacher_key("wav2vec2.encoder.transformer.layers.3.attention.q_proj.weight") == (
        "encoder.layers.3.attention.q_proj.weight")
    assert teacher_key("encoder.feature_projection.layer_norm.bias") == (
        "feature_projection.layer_norm.bias")
    assert teacher_key("mask_generator.mask_embedding") == "mask_embedding"
    assert teacher_key("aux.weight") is None


def test_mask_puts_the_sliced_embedding_on_masked_frames_only() -> None:
    supernet = tiny_supernet()
    assert supernet.mask_embedding is not None
    x = torch.randn(2, 7, 96)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, 2:5] = True
    masked = supernet.apply_mask(x, mask)
    torch.testing.assert_close(masked[0, 3], supernet.mask_embedding[:96].detach())
    torch.testing.assert_close(masked[~mask], x[~mask], atol=0, rtol=0)
    with pytest.raises(ConfigError, match=r"mask must have shape \(B, T'\) = \(2, 7\)"):
        supernet.apply_mask(x, mask[:, :5])


def test_masking_changes_the_output_and_the_subnet_is_an_argument() -> None:
    supernet, (wavs, lengths) = tiny_supernet(), padded_batch()
    subnet = tiny().default_subnet()
    with torch.no_grad():
        plain = supernet(wavs, lengths, subnet).hidden_states[-1]
        mask = torch.zeros(plain.shape[:2], dtype=torch.bool)
        mask[:, 10:20] = True
        masked = supernet(wavs, lengths, subnet, mask).hidden_states[-1]
        supernet(wavs, lengths, tiny().max_subnet())
        again = supernet(wavs, lengths, subnet).hidden_states[-1]
    assert plain.shape == (2, 49, 96)
    assert (masked - plain).abs().max() > 1e-2
    torch.testing.assert_close(again, plain, atol=0, rtol=0)


def test_upstream_view_implements_the_protocol() -> None:
    supernet, (wavs, lengths) = tiny_supernet(), padded_batch()
    subnet = SubnetConfig(96, (2, 4, 2), (192, 384, 288))
    upstream = SupernetUpstream(supernet, subnet)
    assert isinstance(upstream, Upstream)
    assert (upstream.downsample_rate, upstream.num_layers, upstream.hidden_size) == (320, 4, 96)
    with torch.no_grad():
        out = upstream(wavs, lengths)
    assert [tuple(h.shape) for h in out.hidden_states] == [(2, 49, 96)] * 4
    assert out.lengths.tolist() == [49, 34]
    with pytest.raises(ConfigError, match="embed_dim must be <= 128"):
        SupernetUpstream(supernet, SubnetConfig.uniform(160, 2, 320, 2))


@pytest.mark.parametrize("pick", [SearchSpace.max_subnet, SearchSpace.min_subnet],
                         ids=["max", "min"])
def test_forward_computes_exactly_the_macs_count_macs_counts(
        pick: Callable[[SearchSpace], SubnetConfig]) -> None:
    space = tiny()
    supernet, subnet = tiny_supernet(), pick(space)
    field, hop = receptive_field()
    samples = field + 48 * hop  # the shortest waveform of 49 frames, as count_macs assumes
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as f:
        out = supernet(torch.randn(1, samples), torch.tensor([samples]), subnet)
    assert out.hidden_states[0].shape[1] == 49
    assert f.get_total_flops() // 2 == count_macs(space, subnet, 49)


def test_golden_output_at_the_default_subnet() -> None:
    """Catches a refactor that changes the numbers (init order, slicing, front end)."""
    supernet, (wavs, lengths) = tiny_supernet(), padded_batch()
    with torch.no_grad():
        out = supernet(wavs, lengths, tiny().default_subnet())
    golden = torch.tensor([-0.1875, 0.0219, 0.0915, 0.3710])
    torch.testing.assert_close(out.hidden_states[-1][0, 5, :4], golden, atol=1e-4, rtol=0)
