"""The FBANK baseline as an :class:`~speechbert.models.upstream.Upstream`: no parameters.

By default s3prl's SUPERB ``fbank`` baseline (``s3prl/upstream/baseline/fbank.yaml``): 80 kaldi
log-mel filterbanks at 100 Hz (25 ms window, 10 ms shift, ``snip_edges``, no dither;
:func:`speechbert.data.features.fbank_features`), deltas and delta-deltas
(``torchaudio.functional.compute_deltas``, window 5, as s3prl's ``Delta`` with
``transforms.ComputeDeltas``), 240 dims, then per-utterance CMVN as s3prl's ``CMVN``
(``upstream/baseline/extracter.py`` lines 78-90: subtract the mean, divide by the unbiased
standard deviation plus 1e-10). Computed per row on its valid samples only and returned as a
one-layer upstream with ``downsample_rate = 160``. Row ``b`` has exactly kaldi's frame count
for ``lengths[b]`` samples (0 below 400 samples); frames past it are zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio.functional as AF
from torch import nn

from speechbert.data.features import KALDI_SHIFT, KALDI_WINDOW, fbank_features
from speechbert.errors import ConfigError
from speechbert.models.upstream import UpstreamOutput

CMVN_EPS = 1e-10
"""Added to the standard deviation in per-utterance normalisation (s3prl ``CMVN(eps=1e-10)``)."""


@dataclass
class FbankConfig:
    """Settings of the FBANK baseline upstream."""

    num_mel_bins: int = 80
    """Mel filterbank channels per frame."""
    normalize: bool = True
    """Normalise each utterance to zero mean and unit variance per channel (CMVN)."""
    delta_order: int = 2
    """0: filterbanks only; 1: + deltas; 2: + deltas and delta-deltas (s3prl's 240 dims)."""

    def validate(self) -> FbankConfig:
        """Raise :class:`ConfigError` naming the field, rule and value of a bad setting."""
        if self.num_mel_bins < 1:
            raise ConfigError(f"FbankConfig.num_mel_bins must be >= 1; got {self.num_mel_bins}")
        if self.delta_order not in (0, 1, 2):
            raise ConfigError(f"FbankConfig.delta_order must be 0, 1 or 2; got {self.delta_order}")
        return self

    @classmethod
    def s3prl(cls) -> FbankConfig:
        """s3prl's ``baseline/fbank.yaml``: 80 fbank + deltas + delta-deltas, CMVN (240 dims)."""
        return cls(num_mel_bins=80, normalize=True, delta_order=2)


def kaldi_frame_count(num_samples: torch.Tensor) -> torch.Tensor:
    """Kaldi frames (``snip_edges=True``) per row for ``num_samples`` (B,) int: (B,) int64."""
    n = num_samples.to(torch.int64)  # (B,)
    frames = 1 + torch.div(n - KALDI_WINDOW, KALDI_SHIFT, rounding_mode="floor")  # (B,)
    return torch.where(n < KALDI_WINDOW, torch.zeros_like(frames), frames)  # (B,)


class FbankUpstream(nn.Module):
    """Kaldi filterbanks as a one-layer upstream (``hidden_states`` has one (B, T', D) tensor)."""

    downsample_rate = KALDI_SHIFT
    """Input samples per frame (160: 100 Hz frames at 16 kHz)."""
    num_layers = 1
    """One hidden state: the features themselves."""

    def __init__(self, config: FbankConfig | None = None) -> None:
        super().__init__()
        self.config = (config or FbankConfig()).validate()
        self.hidden_size = self.config.num_mel_bins * (1 + self.config.delta_order)
        """Feature dimension D (80, or 240 with two orders of deltas)."""

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        """Features of ``wavs`` (B, T) float32 16 kHz with valid sample counts ``lengths`` (B,)."""
        frames = kaldi_frame_count(lengths)  # (B,)
        max_frames = int(frames.max()) if frames.numel() else 0
        out = wavs.new_zeros(wavs.shape[0], max_frames, self.hidden_size)  # (B, T', D)
        for row, (wav, n) in enumerate(zip(wavs, lengths.tolist(), strict=True)):
            feats = self._utterance_features(wav[:n])  # (N, D)
            assert feats.shape[0] == frames[row], f"{feats.shape[0]} != {int(frames[row])}"
            out[row, :feats.shape[0]] = feats
        return UpstreamOutput(hidden_states=[out], lengths=frames.to(wavs.device))

    def _utterance_features(self, wav: torch.Tensor) -> torch.Tensor:
        """(N, D) features of one waveform (T,)."""
        feats = fbank_features(wav, self.config.num_mel_bins)  # (N, M)
        if feats.shape[0] == 0:
            return feats.new_zeros(0, self.hidden_size)
        orders = [feats]
        for _ in range(self.config.delta_order):
            orders.append(AF.compute_deltas(orders[-1].T).T)  # (N, M)
        feats = torch.cat(orders, dim=-1)  # (N, D)
        if self.config.normalize:
            mean = feats.mean(dim=0, keepdim=True)  # (1, D)
            correction = 1 if feats.shape[0] > 1 else 0  # one frame: std 0, not NaN
            std = feats.std(dim=0, correction=correction, keepdim=True)  # (1, D)
            feats = (feats - mean) / (std + CMVN_EPS)  # (N, D)
        return feats
