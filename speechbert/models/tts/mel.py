"""The 16 kHz mel spectrogram shared by the vocoder's mel loss, Griffin-Lim and MCD.

Settings follow the HiFi-GAN recipe used on 16 kHz SSL features (facebookresearch
speech-resynthesis: 1024-point FFT and window, 256-sample hop, 80 bins, 0-8 kHz), with
magnitude (power 1) Slaney-normalised filters, as ``librosa.filters.mel``, and natural-log
compression floored at 1e-5. :class:`LogMelSpectrogram` computes it with torchaudio (fast,
differentiable); the Griffin-Lim baseline computes the same spectrogram with librosa.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio.transforms as T
from torch import nn

from speechbert.audio import SAMPLE_RATE
from speechbert.models.upstream import UpstreamOutput


@dataclass(frozen=True)
class MelConfig:
    """Mel spectrogram settings (HiFi-GAN's, at 16 kHz)."""

    sample_rate: int = SAMPLE_RATE
    """Sample rate of the waveforms in Hz."""
    n_fft: int = 1024
    """FFT size in samples."""
    win_length: int = 1024
    """Analysis window (Hann) length in samples."""
    hop_length: int = 256
    """Samples between frames."""
    n_mels: int = 80
    """Mel bins."""
    f_min: float = 0.0
    """Lowest filter edge in Hz."""
    f_max: float = 8000.0
    """Highest filter edge in Hz (Nyquist at 16 kHz)."""
    log_floor: float = 1e-5
    """Magnitudes are clamped to at least this before the natural log."""


class LogMelSpectrogram(nn.Module):
    """Natural-log magnitude mel spectrogram (B, n_mels, frames) of waveforms (B, S)."""

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__()
        config = config or MelConfig()
        self.config = config
        self.mel = T.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.n_fft, win_length=config.win_length,
            hop_length=config.hop_length, f_min=config.f_min, f_max=config.f_max,
            n_mels=config.n_mels, power=1.0, center=True, pad_mode="reflect", norm="slaney",
            mel_scale="slaney")

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, 1 + S // hop_length) from ``wavs`` (B, S)."""
        return torch.log(self.mel(wavs).clamp(min=self.config.log_floor))


class MelUpstream(nn.Module):
    """The 50 Hz log-mel as a one-layer :class:`~speechbert.models.upstream.Upstream`.

    The same 80-bin, 0-8 kHz, 1024-point magnitude mel as the Griffin-Lim baseline
    (:data:`~speechbert.models.tts.griffin_lim.BASELINE_MEL`), natural log floored at 1e-5,
    one frame per 320 samples (frame ``t`` centred on samples ``[320 t, 320 t + 320)``):
    ``S // 320`` frames for ``S`` samples. vec2wav trained on it is a mel vocoder with exactly
    the information Griffin-Lim inverts, which makes the vocoder-vs-Griffin-Lim comparison fair.
    """

    downsample_rate = 320
    """Samples per frame."""
    num_layers = 1
    """Hidden states returned."""
    hidden_size = 80
    """Width of the state (mel bins)."""

    def __init__(self) -> None:
        super().__init__()
        self.mel = T.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=1024, win_length=1024, hop_length=320, n_mels=80,
            f_min=0.0, f_max=8000.0, power=1.0, center=False, norm="slaney", mel_scale="slaney")

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        """``wavs`` (B, S), valid ``lengths`` (B,) -> one state (B, S // 320, 80)."""
        pad = (1024 - 320) // 2
        padded = torch.nn.functional.pad(wavs, (pad, pad))  # (B, S + 704)
        frames = wavs.shape[1] // 320
        log_mel = torch.log(self.mel(padded).clamp(min=1e-5)).transpose(1, 2)  # (B, T+, 80)
        return UpstreamOutput(hidden_states=[log_mel[:, :frames]], lengths=lengths // 320)
