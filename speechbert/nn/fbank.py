"""Normalised kaldi fbank of padded 16 kHz waveforms: the input of w2v-BERT and of the fbank
HuBERT front end (:mod:`speechbert.models.hubert.fbank_frontend`).

Follows seamless_communication's w2v-BERT 2.0 recipe, i.e. fairseq2's
``WaveformToFbankConverter(num_mel_bins=80, waveform_scale=2**15, channel_last=True,
standardize=True)``: kaldi fbank (25 ms povey window, 10 ms shift, ``snip_edges``, no dither)
of each utterance's valid samples scaled to the 16-bit integer range, then per-utterance
mean/variance normalisation of every mel bin over time (unbiased std, as fairseq2n's
``std_mean``). The fbank itself is computed by fairseq2n's converter (~6x faster than
``torchaudio.compliance.kaldi.fbank`` on the CPU, same numbers to 2e-4).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import torch

from speechbert.audio import SAMPLE_RATE

if TYPE_CHECKING:
    from fairseq2.data.audio import WaveformToFbankConverter

WAVEFORM_SCALE = 2.0**15
"""Factor taking float waveforms in [-1, 1] to the 16-bit range kaldi features expect."""
MIN_STD = 1e-5
"""Floor of the per-bin standard deviation (digital silence would otherwise give NaN)."""


@lru_cache(maxsize=4)
def _converter(num_mel_bins: int) -> WaveformToFbankConverter:
    # imported here: models without fbank input (HuBERT's conv front end) run without fairseq2
    from fairseq2.data.audio import WaveformToFbankConverter

    return WaveformToFbankConverter(num_mel_bins=num_mel_bins, waveform_scale=WAVEFORM_SCALE,
                                    channel_last=True, standardize=False)


def utterance_fbank(wav: torch.Tensor, num_mel_bins: int = 80) -> torch.Tensor:
    """Normalised kaldi fbank of one float32 CPU waveform (T,): (N, num_mel_bins) float32.

    ``N = 1 + (T - 400) // 160`` (0 when ``T < 400``). Each bin has zero mean and unit
    (unbiased) std over the N frames; with fewer than 2 frames the result is all zeros.
    """
    assert wav.dim() == 1, f"expected a mono waveform (T,), got shape {tuple(wav.shape)}"
    from fairseq2.data.audio import WaveformToFbankInput  # lazily, as in _converter

    wav = wav.detach().to("cpu", torch.float32).contiguous()
    example = WaveformToFbankInput(waveform=wav.unsqueeze(1),  # (T, 1)
                                   sample_rate=float(SAMPLE_RATE))
    fbank = _converter(num_mel_bins)(example)["fbank"]  # (N, num_mel_bins)
    if fbank.shape[0] < 2:
        return torch.zeros_like(fbank)
    std, mean = torch.std_mean(fbank, dim=0)  # (num_mel_bins,) each
    return (fbank - mean) / std.clamp_min(MIN_STD)  # (N, num_mel_bins)


def batched_fbank(wavs: torch.Tensor, lengths: torch.Tensor,
                  num_mel_bins: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised fbank of each row's valid samples, zero-padded to the longest row.

    ``wavs`` (B, T) float 16 kHz zero-padded, ``lengths`` (B,) valid samples. Returns
    ``fbank`` (B, N_max, num_mel_bins) in ``wavs``' dtype and device (computed on the CPU,
    no gradient) and ``frame_lengths`` (B,) int64 kaldi frames per row (10 ms each; the
    model stacks them in pairs). See :func:`utterance_fbank` for the features.
    """
    rows = [utterance_fbank(wav[: int(n)], num_mel_bins)
            for wav, n in zip(wavs.cpu(), lengths.tolist(), strict=True)]
    frame_lengths = torch.tensor([r.shape[0] for r in rows], dtype=torch.int64)  # (B,)
    width = int(frame_lengths.max()) if rows else 0
    fbank = torch.zeros(len(rows), width, num_mel_bins)  # (B, N_max, num_mel_bins)
    for b, row in enumerate(rows):
        fbank[b, : row.shape[0]] = row
    return (fbank.to(wavs.device, wavs.dtype, non_blocking=True),
            frame_lengths.to(wavs.device))
