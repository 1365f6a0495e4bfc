"""HiFi-GAN vocoder losses: LSGAN values, feature matching, mel L1, and backward through G and D."""

from __future__ import annotations

import pytest
import torch

from speechbert.losses.gan import (
    MelSpectrogramLoss,
    MultiResolutionStftLoss,
    VocoderLossWeights,
    discriminator_adversarial_loss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    generator_loss,
)
from speechbert.models.tts.discriminators import build_discriminator
from speechbert.models.tts.mel import LogMelSpectrogram, MelConfig
from speechbert.models.tts.vec2wav import build_generator, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def test_least_squares_terms_by_hand() -> None:
    real, fake = [torch.ones(2, 3), torch.full((2, 5), 0.5)], [torch.zeros(2, 3), torch.ones(2, 5)]
    # (1-1)^2 + 0^2 + (1-0.5)^2 + 1^2 = 1.25
    assert float(discriminator_adversarial_loss(real, fake)) == pytest.approx(1.25)
    assert float(generator_adversarial_loss(fake)) == pytest.approx(1.0 + 0.0)
    maps = [[torch.zeros(2, 4), torch.ones(3)], [torch.full((5,), 2.0)]]
    shifted = [[torch.ones(2, 4), torch.ones(3)], [torch.zeros(5)]]
    assert float(feature_matching_loss(maps, shifted)) == pytest.approx(1.0 + 0.0 + 2.0)


def test_mel_loss_is_zero_for_equal_audio_and_uses_80_bins() -> None:
    mel = LogMelSpectrogram()
    wav = 0.1 * torch.randn(2, 16000)
    assert mel(wav).shape == (2, 80, 1 + 16000 // MelConfig().hop_length)
    loss = MelSpectrogramLoss(mel)
    assert float(loss(wav, wav)) == 0.0 and float(loss(wav, 0.5 * wav)) > 0.5


def test_generator_and_discriminator_losses_run_backward() -> None:
    torch.manual_seed(0)
    config = tiny()
    generator, discriminator = build_generator(config), build_discriminator(config)
    mel_loss = MelSpectrogramLoss(LogMelSpectrogram())
    real = 0.1 * torch.randn(2, 320 * 20)
    fake = generator(torch.randn(2, 20, config.input_dim))  # (2, 6400)

    d_step = discriminator_loss(discriminator, real, fake)
    d_step.loss.backward()
    assert all(p.grad is not None for p in discriminator.parameters())
    assert all(p.grad is None for p in generator.parameters())  # fake was detached

    discriminator.zero_grad()
    g_step = generator_loss(discriminator, mel_loss, real, fake, VocoderLossWeights())
    g_step.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in generator.parameters())
    metrics = g_step.metrics
    total = (metrics["gen_adv_loss"] + 2 * metrics["feature_matching_loss"]
             + 45 * metrics["mel_loss"])
    assert float(g_step.loss.detach()) == pytest.approx(float(total), rel=1e-5)


def test_multi_resolution_stft_loss_is_zero_on_itself_and_grows_with_noise() -> None:
    torch.manual_seed(0)
    loss = MultiResolutionStftLoss()
    real = torch.sin(torch.arange(4000) * 0.05).unsqueeze(0) * 0.3  # (1, 4000)
    assert float(loss(real, real)) == pytest.approx(0.0, abs=1e-6)
    noise = torch.randn_like(real)
    small, large = float(loss(real, real + 0.01 * noise)), float(loss(real, real + 0.1 * noise))
    assert 0 < small < large
    fake = real.clone().requires_grad_(True)
    loss(real, fake + 0.05 * noise).backward()
    assert fake.grad is not None and bool(torch.isfinite(fake.grad).all())
