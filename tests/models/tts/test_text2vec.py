"""text2vec: length regulator, duration rounding, config rules, speakers, overfitting."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from speechbert.errors import ConfigError
from speechbert.losses.text2vec import text2vec_loss
from speechbert.models.tts.text import TtsVocab, normalize_text
from speechbert.models.tts.text2vec import (
    Text2VecConfig,
    base,
    batch_mas_durations,
    build_text2vec,
    durations_from_log,
    length_regulator,
    tiny,
)


def test_length_regulator_repeats_the_right_rows() -> None:
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)  # (B, N, D)
    durations = torch.tensor([[2, 0, 3], [1, 1, 0]])  # row 1: last token is padding
    expanded, lengths = length_regulator(hidden, durations)
    assert expanded.shape == (2, 5, 2) and lengths.tolist() == [5, 2]
    assert expanded[0].tolist() == [hidden[0, i].tolist() for i in (0, 0, 2, 2, 2)]
    assert expanded[1, :2].tolist() == [hidden[1, 0].tolist(), hidden[1, 1].tolist()]
    assert expanded[1, 2:].abs().sum() == 0  # zero past the row's length


def test_length_regulator_max_len_pads_or_truncates_and_passes_gradients() -> None:
    hidden = torch.randn(3, 4, 8, requires_grad=True)
    durations = torch.tensor([[1, 2, 3, 4], [5, 0, 0, 0], [2, 2, 2, 0]])
    expanded, lengths = length_regulator(hidden, durations, max_len=12)
    assert expanded.shape == (3, 12, 8) and lengths.tolist() == [10, 5, 6]
    short, short_lengths = length_regulator(hidden, durations, max_len=4)
    assert short.shape == (3, 4, 8) and short_lengths.tolist() == [4, 4, 4]
    expanded.sum().backward()
    assert hidden.grad is not None
    assert hidden.grad[0, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0]  # each row used d times


def test_predicted_durations_are_rounded_at_least_one_and_scaled_by_speed() -> None:
    log_d = torch.log1p(torch.tensor([[0.2, 3.4, 9.0, 5.0]]))
    mask = torch.tensor([[True, True, True, False]])
    assert durations_from_log(log_d, mask).tolist() == [[1, 3, 9, 0]]
    assert durations_from_log(log_d, mask, speed=2.0).tolist() == [[1, 2, 4, 0]]
    with pytest.raises(ConfigError, match="speed"):
        durations_from_log(log_d, mask, speed=0.0)


def test_config_rules_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"model_dim must be even and divisible by num_heads"):
        Text2VecConfig(model_dim=66, num_heads=4).validate()
    with pytest.raises(ConfigError, match="ffn_kernel must be odd"):
        Text2VecConfig(ffn_kernel=4).validate()
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\); got 1.5"):
        Text2VecConfig(dropout=1.5).validate()
    assert base().output_dim == 768 and tiny().validate().vocab_size == len(TtsVocab.characters())


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tokens = torch.tensor([[5, 6, 7, 8, 9], [3, 4, 5, 0, 0]])
    lengths = torch.tensor([5, 3])
    durations = torch.tensor([[2, 1, 3, 1, 2], [4, 1, 1, 0, 0]])
    return tokens, lengths, durations


def test_forward_shapes_with_given_and_predicted_durations() -> None:
    torch.manual_seed(0)
    model = build_text2vec(tiny()).eval()
    tokens, lengths, durations = _batch()
    out = model(tokens, lengths, durations)
    assert out.features.shape == (2, 9, 128) and out.lengths.tolist() == [9, 6]
    assert out.log_durations.shape == (2, 5) and out.features[1, 6:].abs().sum() == 0
    with torch.no_grad():
        slow, fast = model(tokens, lengths), model(tokens, lengths, speed=4.0)
    assert int(slow.durations[1, 3:].sum()) == 0 and int(slow.durations[0].min()) >= 1
    assert bool((fast.lengths <= slow.lengths).all())


def test_output_does_not_depend_on_padding() -> None:
    torch.manual_seed(0)
    model = build_text2vec(tiny()).eval()
    tokens, lengths, durations = _batch()
    alone = model(tokens[1:, :3], lengths[1:], durations[1:, :3]).features  # (1, 6, 128)
    batched = model(tokens, lengths, durations).features[1:, :6]
    assert torch.allclose(alone, batched, atol=1e-5)


def test_golden_value() -> None:
    torch.manual_seed(0)
    model = build_text2vec(tiny()).eval()
    tokens, lengths, durations = _batch()
    with torch.no_grad():
        out = model(tokens, lengths, durations)
    assert float(out.features.abs().sum()) == pytest.approx(GOLDEN_FEATURE_ABS_SUM, rel=1e-4)


GOLDEN_FEATURE_ABS_SUM = 937.0543
"""sum |features| of the tiny model (seed 0) on :func:`_batch`; a refactor must keep it."""


def test_speaker_table_and_external_vectors() -> None:
    torch.manual_seed(0)
    model = build_text2vec(replace(tiny(), num_speakers=3, speaker_dim=16)).eval()
    tokens, lengths, durations = _batch()
    by_id = model(tokens, lengths, durations, speaker_ids=torch.tensor([0, 2])).features
    other = model(tokens, lengths, durations, speaker_ids=torch.tensor([1, 2])).features
    assert not torch.allclose(by_id[0], other[0]) and torch.allclose(by_id[1], other[1])
    by_vector = model(tokens, lengths, durations, speaker_vectors=torch.randn(2, 16))
    assert by_vector.features.shape == by_id.shape
    with pytest.raises(ConfigError, match="pass speaker_ids"):
        model(tokens, lengths, durations)
    with pytest.raises(ConfigError, match="num_speakers=0"):
        build_text2vec(tiny())(tokens, lengths, durations, speaker_ids=torch.tensor([0, 1]))


def test_tiny_model_overfits_one_utterance() -> None:
    torch.manual_seed(0)
    vocab = TtsVocab.characters()
    tokens = torch.tensor([vocab.encode(normalize_text("Hello there, world."))])  # (1, N)
    n = tokens.shape[1]
    durations = torch.randint(1, 5, (1, n))  # (1, N)
    frames = int(durations.sum())
    targets = torch.randn(1, frames, 128)  # (1, T, D) stand-in upstream features
    model = build_text2vec(tiny())
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = model(tokens, torch.tensor([n]), durations)
        step = text2vec_loss(out, targets, torch.tensor([frames]), torch.tensor([n]))
        optimiser.zero_grad()
        step.loss.backward()
        optimiser.step()
        losses.append(float(step.loss.detach()))
    assert losses[-1] < 0.25 * losses[0], losses  # 3.04 -> 0.50 when written
    assert float(step.metrics["duration_loss"]) < 0.1


def test_forward_aligned_durations_sum_to_each_rows_frames() -> None:
    torch.manual_seed(0)
    model = build_text2vec(replace(tiny(), output_dim=8)).eval()
    tokens = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    token_lengths, frame_lengths = torch.tensor([4, 2]), torch.tensor([11, 5])
    targets = torch.randn(2, 11, 8)
    aligned = model.forward_aligned(tokens, token_lengths, targets, frame_lengths)
    durations = aligned.output.durations
    assert durations.sum(1).tolist() == [11, 5]
    assert bool((durations[0] >= 1).all()) and durations[1, :2].min() >= 1
    assert durations[1, 2:].tolist() == [0, 0]
    assert aligned.output.features.shape == aligned.aligned_means.shape == (2, 11, 8)
    assert torch.equal(aligned.output.lengths, frame_lengths)


def test_mas_durations_follow_targets_built_from_the_means() -> None:
    means = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [-5.0, 0.0]]])  # (1, 3, 2)
    want = torch.tensor([2, 4, 3])
    frames = means[0].repeat_interleave(want, dim=0).unsqueeze(0)  # (1, 9, 2)
    got = batch_mas_durations(means, torch.tensor([3]), frames, torch.tensor([9]))
    assert got[0].tolist() == want.tolist()
