"""The BiLSTM CTC head: greedy decoding, CTC loss, padding invariance, a tiny learnable task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from speechbert.data.collate import IGNORE_INDEX
from speechbert.data.text import CharVocab
from speechbert.errors import ConfigError
from speechbert.models.heads.asr import AsrHead, AsrHeadConfig, ctc_loss, greedy_decode, tiny

VOCAB = CharVocab()


def _one_hot_logits(alignments: list[list[int]]) -> torch.Tensor:
    """(B, T, V) logits whose argmax is each alignment, right-padded with id 5."""
    longest = max(len(a) for a in alignments)
    ids = torch.tensor([a + [5] * (longest - len(a)) for a in alignments])  # (B, T)
    return 10.0 * F.one_hot(ids, len(VOCAB)).float()  # (B, T, V)


def test_greedy_decode_of_a_known_alignment() -> None:
    h, i, l_, sep = VOCAB.encode("H")[0], VOCAB.encode("I")[0], VOCAB.encode("L")[0], 1
    alignments = [[0, h, h, 0, sep, i, 0], [l_, 0, l_, l_, sep, sep, 0]]
    logits = _one_hot_logits(alignments)
    assert greedy_decode(logits, torch.tensor([7, 7]), VOCAB) == ["H I", "LL"]
    # frames past the valid length are never read (they decode to 'D' here)
    assert greedy_decode(logits, torch.tensor([3, 2]), VOCAB) == ["H", "L"]


def test_ctc_loss_ignores_target_padding_and_is_small_on_a_perfect_alignment() -> None:
    a, b, c = (VOCAB.encode(ch)[0] for ch in "ABC")
    logits = _one_hot_logits([[a, 0, b, c], [c, c, 0, 0]])
    targets = torch.tensor([[a, b, c], [c, IGNORE_INDEX, IGNORE_INDEX]])
    loss = ctc_loss(logits, torch.tensor([4, 4]), targets, torch.tensor([3, 1]))
    assert 0.0 <= loss.item() < 1e-2
    row2 = ctc_loss(logits[1:], torch.tensor([4]), targets[1:, :1], torch.tensor([1]))
    row1 = ctc_loss(logits[:1], torch.tensor([4]), targets[:1], torch.tensor([3]))
    assert loss.item() == pytest.approx((row1.item() + row2.item()) / 2, abs=1e-6)


def test_ctc_loss_is_finite_when_the_target_is_longer_than_the_input() -> None:
    logits = torch.randn(1, 2, len(VOCAB), requires_grad=True)
    loss = ctc_loss(logits, torch.tensor([2]), torch.tensor([[3, 4, 5]]), torch.tensor([3]))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == 0.0  # zero_infinity


def test_padding_does_not_change_the_valid_frames() -> None:
    torch.manual_seed(0)
    head = AsrHead(12, tiny()).eval()
    x = torch.randn(1, 9, 12)  # (1, T, D)
    padded = torch.cat([x, 1e3 * torch.ones(1, 6, 12)], dim=1)  # (1, T + 6, D)
    batch = torch.cat([padded, torch.randn(1, 15, 12)])  # (2, 15, D)
    alone = head(x, torch.tensor([9]))  # (1, 9, V)
    together = head(batch, torch.tensor([9, 15]))  # (2, 15, V)
    assert together.shape == (2, 15, len(VOCAB))
    assert torch.allclose(alone[0], together[0, :9], atol=1e-5)


def _symbol_batch(patterns: torch.Tensor, symbols: list[int], batch: int,
                  gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Utterances of 3 distinct symbols, each 2-4 frames of its pattern + noise, silence between."""
    rows, targets = [], []
    for _ in range(batch):
        picks = torch.randperm(len(symbols), generator=gen)[:3].tolist()
        frames = [torch.zeros(int(torch.randint(0, 3, (1,), generator=gen)), patterns.shape[1])]
        for k in picks:
            span = int(torch.randint(2, 5, (1,), generator=gen))
            frames += [patterns[k].expand(span, -1), torch.zeros(1, patterns.shape[1])]
        x = torch.cat(frames)
        rows.append(x + 0.3 * torch.randn(x.shape, generator=gen))
        targets.append([symbols[k] for k in picks])
    lengths = torch.tensor([r.shape[0] for r in rows])
    feats = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, T, D)
    return feats, lengths, torch.tensor(targets), torch.full((batch,), 3)


def test_head_learns_to_transcribe_symbols_from_frame_patterns() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    symbols = VOCAB.encode("ABCDE")
    patterns = 2.0 * torch.randn(len(symbols), 16, generator=gen)  # (K, D)
    head = AsrHead(16, AsrHeadConfig(project_dim=32, hidden_size=32, dropout=0.0))
    opt = torch.optim.Adam(head.parameters(), lr=2e-2)
    for _ in range(80):
        feats, lengths, targets, target_lengths = _symbol_batch(patterns, symbols, 16, gen)
        loss = ctc_loss(head(feats, lengths), lengths, targets, target_lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
    feats, lengths, targets, _ = _symbol_batch(patterns, symbols, 32, gen)
    with torch.no_grad():
        hyps = greedy_decode(head.eval()(feats, lengths), lengths, VOCAB)
    refs = [VOCAB.decode(t.tolist()) for t in targets]
    correct = sum(h == r for h, r in zip(hyps, refs, strict=True))
    assert correct >= 30, list(zip(refs, hyps, strict=True))[:5]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="dropout must be in"):
        AsrHeadConfig(dropout=1.0).validate()
    with pytest.raises(ConfigError, match="hidden_size must be >= 1"):
        AsrHead(8, AsrHeadConfig(hidden_size=0))


def test_golden_value_of_the_tiny_head() -> None:
    torch.manual_seed(0)
    head = AsrHead(24, tiny()).eval()
    gen = torch.Generator().manual_seed(0)
    x, lengths = torch.randn(2, 30, 24, generator=gen), torch.tensor([30, 17])
    with torch.no_grad():
        out = head(x, lengths)  # (2, 30, 29)
    valid = out[0].abs().sum() + out[1, :17].abs().sum()
    assert valid.item() == pytest.approx(83.0407, rel=1e-4)


def _packed_reference(head: AsrHead, features: torch.Tensor,
                      lengths: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of the previous, packed implementation with ``head``'s weights."""
    x = head.project(features)  # (B, T, P)
    packed_lengths = lengths.clamp(min=1)
    for lstm in head.lstms:
        packed = pack_padded_sequence(x, packed_lengths, batch_first=True, enforce_sorted=False)
        out, _ = lstm(packed)
        x, _ = pad_packed_sequence(out, batch_first=True, total_length=features.shape[1])
        x = head.dropout(x)  # (B, T, 2H)
    return head.output(x)  # (B, T, V)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_unpacked_bilstm_equals_the_packed_one_at_valid_frames(num_layers: int) -> None:
    torch.manual_seed(0)
    config = AsrHeadConfig(project_dim=16, hidden_size=12, num_layers=num_layers, dropout=0.0)
    head = AsrHead(10, config)
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 41, (7,), generator=gen)
    lengths[0], lengths[1] = 40, 0  # a full row and an empty one (it reads frame 0)
    x = torch.randn(7, 40, 10, generator=gen)  # (B, T, D)
    new, old = head(x, lengths), _packed_reference(head, x, lengths)  # (B, T, V)
    for b, n in enumerate(lengths.clamp(min=1).tolist()):
        assert torch.allclose(new[b, :n], old[b, :n], atol=1e-5), (b, n)
        assert torch.allclose(new[b, n:], old[b, n:], atol=1e-6)  # both the output bias
    targets, target_lengths = torch.randint(2, 29, (7, 3), generator=gen), torch.full((7,), 3)
    ctc_loss(new, lengths.clamp(min=1), targets, target_lengths).backward()
    for name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_state_dict_keys_are_those_of_a_bidirectional_lstm() -> None:
    head = AsrHead(8, AsrHeadConfig(project_dim=8, hidden_size=4, num_layers=2))
    keys = set(head.state_dict())
    for layer in (0, 1):
        for suffix in ("", "_reverse"):
            assert f"lstms.{layer}.weight_hh_l0{suffix}" in keys
            assert f"lstms.{layer}.bias_ih_l0{suffix}" in keys
