"""The x-vector head: shapes, padding invariance, statistics pooling, a tiny learnable task."""

from __future__ import annotations

import pytest
import torch

from speechbert.errors import ConfigError
from speechbert.losses.aam_softmax import AMSoftmaxLoss
from speechbert.metrics import eer
from speechbert.models.heads.pooling import masked_mean_std
from speechbert.models.heads.sv import XvectorConfig, XvectorHead, cosine_scores, superb, tiny


def test_superb_preset_has_kaldi_contexts_and_512_embeddings() -> None:
    cfg = superb()
    assert (cfg.contexts, cfg.dilations) == ((5, 3, 3, 1, 1), (1, 2, 3, 1, 1))
    head = XvectorHead(768, cfg)
    out = head.embed(torch.randn(2, 40, 768), torch.tensor([40, 25]))
    assert out.shape == (2, 512)
    assert head.segment1.in_features == 2 * 1500


def test_statistics_pooling_is_mean_and_std_of_valid_frames() -> None:
    x = torch.tensor([[[1.0], [3.0], [50.0]]])  # (1, 3, 1)
    assert masked_mean_std(x, torch.tensor([2])).flatten().tolist() == pytest.approx([2.0, 1.0])


def test_embedding_does_not_depend_on_padding_and_short_inputs_work() -> None:
    torch.manual_seed(0)
    head = XvectorHead(8, tiny())
    x = torch.randn(1, 20, 8)
    padded = torch.cat([x, 1e3 * torch.ones(1, 7, 8)], dim=1)  # (1, 27, 8)
    alone = head.embed(x, torch.tensor([20]))
    assert torch.allclose(alone, head.embed(padded, torch.tensor([20])), atol=1e-4)
    short = head.embed(torch.randn(2, 3, 8), torch.tensor([3, 1]))  # fewer than 15 frames
    assert short.shape == (2, 64) and torch.isfinite(short).all()


def _speakers(centres: torch.Tensor, per_speaker: int,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Utterances of each speaker: 20-30 frames of its centre (first 8 dims) + a random
    per-utterance "channel" offset (last 8 dims, std 2) + unit frame noise."""
    labels = torch.arange(centres.shape[0]).repeat_interleave(per_speaker)  # (B,)
    count = labels.numel()
    lengths = torch.randint(20, 31, (count,), generator=gen)  # (B,)
    channel = torch.zeros(count, 1, 16)
    channel[..., 8:] = 2.0 * torch.randn(count, 1, 8, generator=gen)  # (B, 1, D)
    noise = torch.randn(count, 30, 16, generator=gen)  # (B, T, D)
    return centres[labels].unsqueeze(1) + channel + noise, lengths, labels


def _trial_eer(head: XvectorHead, centres: torch.Tensor, gen: torch.Generator) -> float:
    """EER of all pairs of 8 new utterances per speaker, scored by cosine."""
    feats, lengths, labels = _speakers(centres, 8, gen)
    with torch.no_grad():
        emb = head.eval().embed(feats, lengths)  # (B, E)
    head.train()
    a, b = torch.triu_indices(len(labels), len(labels), offset=1)
    return eer(cosine_scores(emb[a], emb[b]), (labels[a] == labels[b]).long())[0]


def test_embeddings_learn_to_separate_speakers_despite_channel_offsets() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    centres = torch.zeros(16, 16)
    centres[:, :8] = torch.randn(16, 8, generator=gen)  # (speakers, D)
    head = XvectorHead(16, XvectorConfig(project_dim=32, tdnn_dim=32, stats_dim=64,
                                         embed_dim=32))
    loss_fn = AMSoftmaxLoss(32, 16)
    opt = torch.optim.Adam([*head.parameters(), *loss_fn.parameters()], lr=5e-3)
    assert _trial_eer(head, centres[:8], gen) > 0.3  # the channel offsets hide the speakers
    for _ in range(200):
        feats, lengths, labels = _speakers(centres, 4, gen)
        loss = loss_fn(head(feats, lengths), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert _trial_eer(head, centres[:8], gen) < 0.1


def test_cosine_scores_of_pairs() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [-1.0, -1.0]])
    assert cosine_scores(a, b).tolist() == pytest.approx([1.0, -1.0])


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="contexts and dilations"):
        XvectorConfig(contexts=(5, 3), dilations=(1,)).validate()
    with pytest.raises(ConfigError, match="must be odd"):
        XvectorHead(8, XvectorConfig(contexts=(4,), dilations=(1,)))


def test_golden_value_of_the_tiny_head() -> None:
    torch.manual_seed(0)
    head = XvectorHead(24, tiny())
    gen = torch.Generator().manual_seed(0)
    x, lengths = torch.randn(2, 30, 24, generator=gen), torch.tensor([30, 17])
    with torch.no_grad():
        assert head.segment_a(x, lengths).abs().sum().item() == pytest.approx(2.81949, rel=1e-4)
        assert head.embed(x, lengths).abs().sum().item() == pytest.approx(10.26019, rel=1e-4)


def test_embedding_is_the_first_segment_layer_after_relu_l2_normalised() -> None:
    """s3prl's ``UtteranceExtractor.inference`` (linear1, ReLU) then ``F.normalize``."""
    torch.manual_seed(0)
    head = XvectorHead(8, tiny())
    x, lengths = torch.randn(3, 25, 8), torch.tensor([25, 20, 16])
    with torch.no_grad():
        emb = head.embed(x, lengths)  # (B, E)
        after_relu = head.segment_a(x, lengths)  # (B, E)
        trained = head(x, lengths)  # (B, E)
    assert (after_relu >= 0).all() and (emb >= 0).all()
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert torch.allclose(emb * after_relu.norm(dim=-1, keepdim=True), after_relu, atol=1e-6)
    assert torch.allclose(trained, torch.relu(head.segment2(after_relu)), atol=1e-6)
