"""The FBANK baseline upstream: kaldi frame counts per padded row, values, CMVN, deltas."""

from __future__ import annotations

import pytest
import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi

from speechbert.data.collate import pad_batch
from speechbert.errors import ConfigError
from speechbert.models.fbank import FbankConfig, FbankUpstream, kaldi_frame_count
from speechbert.models.upstream import Upstream

LENGTHS = [16_000, 399, 400, 559, 560, 7_321, 1]


def _batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return pad_batch([0.1 * torch.randn(n, generator=gen) for n in lengths], 0.0, torch.float32)


def test_is_a_parameter_free_one_layer_upstream_at_100_hz() -> None:
    up = FbankUpstream()
    assert isinstance(up, Upstream)
    assert (up.downsample_rate, up.num_layers, up.hidden_size) == (160, 1, 240)
    assert list(up.parameters()) == []
    assert FbankUpstream(FbankConfig(delta_order=0)).hidden_size == 80


def test_frame_counts_match_kaldi_for_each_row_of_a_padded_batch() -> None:
    wavs, lengths = _batch(LENGTHS)  # (B, T), (B,)
    out = FbankUpstream(FbankConfig(normalize=False, delta_order=0))(wavs, lengths)
    expected = [kaldi.fbank(wavs[b:b + 1, :n], num_mel_bins=80).shape[0] if n >= 400 else 0
                for b, n in enumerate(LENGTHS)]
    assert out.lengths.tolist() == expected
    assert out.lengths.dtype == torch.int64
    assert kaldi_frame_count(lengths).tolist() == expected
    (states,) = out.hidden_states
    assert states.shape == (len(LENGTHS), max(expected), 80)
    for b, n in enumerate(LENGTHS):
        frames = expected[b]
        if frames:
            ref = kaldi.fbank(wavs[b:b + 1, :n], num_mel_bins=80)  # (N, 80)
            assert torch.allclose(states[b, :frames], ref, atol=1e-5)
        assert (states[b, frames:] == 0).all()


def test_cmvn_normalises_each_utterance_over_its_valid_frames() -> None:
    wavs, lengths = _batch([8_000, 3_000])
    out = FbankUpstream()(wavs, lengths)
    for b, frames in enumerate(out.lengths.tolist()):
        valid = out.hidden_states[0][b, :frames]  # (N, 240)
        assert valid.mean(0).abs().max() < 1e-4
        assert torch.allclose(valid.std(0), torch.ones(240), atol=1e-3)  # unbiased, as s3prl


def test_default_is_s3prl_baseline_fbank_240_dims() -> None:
    """s3prl ``upstream/baseline/fbank.yaml``: kaldi fbank 80, deltas of order 2 (window 5),
    CMVN ``(x - mean) / (1e-10 + std)`` with torch's unbiased std (``extracter.py``)."""
    assert FbankConfig() == FbankConfig.s3prl()
    wavs, lengths = _batch([4_000, 2_000])
    out = FbankUpstream()(wavs, lengths)
    for b, n in enumerate(lengths.tolist()):
        feats = kaldi.fbank(wavs[b:b + 1, :n], num_mel_bins=80, sample_frequency=16_000)
        delta = torchaudio.transforms.ComputeDeltas(win_length=5)
        d1 = delta(feats.T[None])[0].T  # (N, 80)
        d2 = delta(d1.T[None])[0].T  # (N, 80)
        x = torch.cat([feats, d1, d2], dim=-1)  # (N, 240)
        ref = (x - x.mean(0, keepdim=True)) / (1e-10 + x.std(0, keepdim=True))
        frames = int(out.lengths[b])
        assert torch.allclose(out.hidden_states[0][b, :frames], ref, atol=1e-4)


def test_one_frame_utterance_normalises_to_zeros_not_nan() -> None:
    wavs, lengths = _batch([400])
    (states,) = FbankUpstream()(wavs, lengths).hidden_states
    assert states.shape == (1, 1, 240) and torch.isfinite(states).all()


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="delta_order must be 0, 1 or 2"):
        FbankUpstream(FbankConfig(delta_order=3))
