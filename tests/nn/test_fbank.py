"""batched_fbank against a hand computation with torchaudio's kaldi fbank."""

from __future__ import annotations

import torch
import torchaudio.compliance.kaldi as kaldi

from speechbert.nn.fbank import batched_fbank, utterance_fbank


def reference_fbank(wav: torch.Tensor) -> torch.Tensor:
    """seamless's recipe by hand: kaldi fbank at 16-bit scale, per-bin mean/std over time."""
    fbank = kaldi.fbank(wav.unsqueeze(0) * 2**15, num_mel_bins=80, sample_frequency=16000)
    std, mean = torch.std_mean(fbank, dim=0)  # unbiased, as fairseq2n
    return (fbank - mean) / std


def test_batched_fbank_matches_torchaudio_per_utterance() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([16000, 9000, 12345])
    wavs = 0.1 * torch.randn(3, 16000, generator=gen)  # (B, T)
    wavs[1, 9000:] = 0.0
    wavs[2, 12345:] = 0.0
    fbank, frames = batched_fbank(wavs, lengths)
    assert fbank.shape == (3, 98, 80) and fbank.dtype == torch.float32
    assert frames.tolist() == [1 + (n - 400) // 160 for n in lengths.tolist()]
    for b, n in enumerate(lengths.tolist()):
        expected = reference_fbank(wavs[b, :n])
        torch.testing.assert_close(fbank[b, : frames[b]], expected, atol=2e-3, rtol=1e-3)
        assert fbank[b, frames[b]:].abs().sum() == 0
        torch.testing.assert_close(fbank[b, : frames[b]], utterance_fbank(wavs[b, :n]))


def test_silence_and_very_short_utterances_stay_finite() -> None:
    wavs = torch.zeros(2, 8000)
    wavs[1, :450] = 0.1
    fbank, frames = batched_fbank(wavs, torch.tensor([8000, 450]))
    assert frames.tolist() == [48, 1]
    assert torch.isfinite(fbank).all() and fbank.abs().sum() == 0


def test_dtype_follows_the_waveforms() -> None:
    wavs = 0.1 * torch.randn(1, 4000, dtype=torch.float64)
    fbank, frames = batched_fbank(wavs, torch.tensor([4000]))
    assert fbank.dtype == torch.float64 and frames.dtype == torch.int64
