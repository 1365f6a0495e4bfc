"""HiFi-GAN's vocoder losses: least-squares adversarial, feature matching, mel L1.

As HiFi-GAN (arXiv 2010.05646, ``models.py``):

* discriminator: ``sum_k mean((1 - D_k(x))^2) + mean(D_k(G(s))^2)`` over sub-discriminators;
* generator: ``adv + 2 * fm + 45 * mel`` with ``adv = sum_k mean((1 - D_k(G(s)))^2)``,
  ``fm = sum_k sum_l mean|D_k^l(x) - D_k^l(G(s))|`` over every feature map, and ``mel`` the L1
  distance of natural-log mel spectrograms (:class:`~speechbert.models.tts.mel.LogMelSpectrogram`,
  torchaudio, 16 kHz, 80 bins).

A training step runs :func:`discriminator_loss` (fake audio detached) and steps the
discriminator, then :func:`generator_loss` and steps the generator. The real audio's feature
maps in :func:`generator_loss` are computed without gradient: they are constants for the
generator, and HiFi-GAN's extra gradient into the discriminator there is zeroed before its
next step anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from speechbert.losses.criterion import LossOutput
from speechbert.models.tts.discriminators import VocoderDiscriminator
from speechbert.models.tts.mel import LogMelSpectrogram, MelConfig


@dataclass
class VocoderLossWeights:
    """Weights of the generator's loss terms (HiFi-GAN's)."""

    adversarial: float = 1.0
    """Weight of the least-squares adversarial term."""
    feature_matching: float = 2.0
    """Weight of the feature-matching L1 term."""
    mel: float = 45.0
    """Weight of the log-mel L1 term."""


def discriminator_adversarial_loss(real: list[torch.Tensor],
                                   fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN discriminator loss summed over sub-discriminators: real -> 1, fake -> 0."""
    return torch.stack([torch.mean((1 - r) ** 2) + torch.mean(f**2)
                        for r, f in zip(real, fake, strict=True)]).sum()


def generator_adversarial_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator loss summed over sub-discriminators: fake -> 1."""
    return torch.stack([torch.mean((1 - f) ** 2) for f in fake]).sum()


def feature_matching_loss(real: list[list[torch.Tensor]],
                          fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over sub-discriminators and layers of the mean |real - fake| feature map."""
    return torch.stack([F.l1_loss(f, r.detach()) for rs, fs in zip(real, fake, strict=True)
                        for r, f in zip(rs, fs, strict=True)]).sum()


class MelSpectrogramLoss(nn.Module):
    """L1 distance between the log-mel spectrograms of real and generated waveforms."""

    def __init__(self, mel: LogMelSpectrogram) -> None:
        super().__init__()
        self.mel = mel

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Mean |log mel(real) - log mel(fake)| of waveforms (B, S); S > n_fft / 2 (reflect
        padding), i.e. at least 2 frames of 320 samples."""
        return F.l1_loss(self.mel(fake), self.mel(real).detach())


def discriminator_loss(discriminator: VocoderDiscriminator, real: torch.Tensor,
                       fake: torch.Tensor) -> LossOutput:
    """The discriminators' loss on real (B, S) and generated (B, S, detached here) audio."""
    real_out, fake_out = discriminator(real), discriminator(fake.detach())
    loss = discriminator_adversarial_loss(real_out.logits, fake_out.logits)
    return LossOutput(loss=loss, metrics={"disc_loss": loss.detach()},
                      num_targets=real.shape[0])


def generator_loss(discriminator: VocoderDiscriminator, mel_loss: MelSpectrogramLoss,
                   real: torch.Tensor, fake: torch.Tensor,
                   weights: VocoderLossWeights | None = None) -> LossOutput:
    """The generator's weighted loss (adversarial + feature matching + mel) on (B, S) audio."""
    weights = weights or VocoderLossWeights()
    with torch.no_grad():
        real_out = discriminator(real)
    fake_out = discriminator(fake)
    adversarial = generator_adversarial_loss(fake_out.logits)
    matching = feature_matching_loss(real_out.features, fake_out.features)
    mel = mel_loss(real, fake)
    loss = (weights.adversarial * adversarial + weights.feature_matching * matching
            + weights.mel * mel)
    metrics = {"gen_adv_loss": adversarial.detach(), "feature_matching_loss": matching.detach(),
               "mel_loss": mel.detach()}
    return LossOutput(loss=loss, metrics=metrics, num_targets=real.shape[0])


STFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((512, 128, 512), (1024, 256, 1024),
                                                      (256, 64, 256))
"""(n_fft, hop, window) of each resolution of :class:`MultiResolutionStftLoss` at 16 kHz."""


class MultiResolutionStftLoss(nn.Module):
    """Parallel WaveGAN's multi-resolution STFT loss (arXiv 1910.11480): per resolution,
    spectral convergence ``||S - S'||_F / ||S||_F`` plus mean |log S - log S'|, averaged.

    A regression loss on linear-frequency magnitudes at three time/frequency trade-offs; with
    the mel L1 it trains the vocoder quickly before the adversarial terms are switched on."""

    def __init__(self, resolutions: tuple[tuple[int, int, int], ...] = STFT_RESOLUTIONS,
                 floor: float = 1e-5) -> None:
        super().__init__()
        self.resolutions = resolutions
        self.floor = floor
        for i, (_, _, win) in enumerate(resolutions):
            self.register_buffer(f"window{i}", torch.hann_window(win), persistent=False)

    def _magnitude(self, wav: torch.Tensor, i: int) -> torch.Tensor:
        n_fft, hop, win = self.resolutions[i]
        spec = torch.stft(wav, n_fft, hop, win, window=getattr(self, f"window{i}"),
                          return_complex=True)  # (B, F, frames)
        return spec.abs().clamp(min=self.floor)

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The loss of generated ``fake`` (B, S) against ``real`` (B, S)."""
        total = fake.new_zeros(())
        for i in range(len(self.resolutions)):
            want, got = self._magnitude(real, i).detach(), self._magnitude(fake, i)
            convergence = torch.linalg.norm(want - got) / torch.linalg.norm(want)
            total = total + convergence + F.l1_loss(got.log(), want.log())
        return total / len(self.resolutions)


MEL_SCALES: tuple[tuple[int, int], ...] = ((256, 40), (512, 64), (2048, 80))
"""(n_fft = window, mel bins) of :class:`MultiScaleMelLoss`'s extra scales (hop n_fft / 4),
besides the 1024-point mel of :class:`MelSpectrogramLoss` (DAC-style multi-scale mel)."""


class MultiScaleMelLoss(nn.Module):
    """Sum over window sizes of the log-mel L1 (Descript Audio Codec's multi-scale mel loss):
    short windows pin the timing of energy, long ones the harmonics."""

    def __init__(self, scales: tuple[tuple[int, int], ...] = MEL_SCALES) -> None:
        super().__init__()
        self.losses = nn.ModuleList(
            MelSpectrogramLoss(LogMelSpectrogram(MelConfig(n_fft=n, win_length=n,
                                                           hop_length=n // 4, n_mels=m)))
            for n, m in scales)

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The summed loss of ``fake`` (B, S) against ``real`` (B, S)."""
        return torch.stack([loss(real, fake) for loss in self.losses]).sum()


class ReconstructionLoss(nn.Module):
    """The vocoder's regression terms besides HiFi-GAN's mel L1: multi-resolution STFT plus
    multi-scale mel (used alone during the warm-up and added to the GAN losses after it)."""

    def __init__(self, stft: MultiResolutionStftLoss, mel: MultiScaleMelLoss) -> None:
        super().__init__()
        self.stft, self.mel = stft, mel

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """STFT + multi-scale mel loss of ``fake`` (B, S) against ``real`` (B, S)."""
        return self.stft(real, fake) + self.mel(real, fake)
