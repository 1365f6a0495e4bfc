"""Griffin-Lim baseline and mel-cepstral distortion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speechbert.errors import ConfigError
from speechbert.models.tts.griffin_lim import (
    BASELINE_MEL,
    MCD_CONSTANT,
    LinearMelProbe,
    griffin_lim_resynthesis,
    log_mel_magnitude,
    mel_cepstral_distortion,
    mel_cepstrum,
)


def _voiced(seconds: float = 0.5, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a slow formant-like amplitude change and a little noise."""
    t = np.arange(int(16000 * seconds)) / 16000
    wav = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    envelope = 0.5 + 0.4 * np.sin(2 * np.pi * 3 * t)
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.1 * envelope * wav + noise).astype(np.float32)


def test_mcd_constant_and_cepstrum_shape() -> None:
    constant = MCD_CONSTANT
    assert constant == pytest.approx(10 * math.sqrt(2) / math.log(10))
    assert constant == pytest.approx(6.1418, abs=1e-4)
    assert mel_cepstrum(_voiced()).shape == (1 + 8000 // 80, 25)  # c0..c24, 5 ms hop


def test_mcd_is_zero_for_identical_audio_and_grows_with_distortion() -> None:
    ref = _voiced()
    assert mel_cepstral_distortion(ref, ref.copy()) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, ref.size).astype(np.float32)
    levels = (0.003, 0.01, 0.03, 0.1)
    scores = [mel_cepstral_distortion(ref, ref + level * noise) for level in levels]
    assert 0 < scores[0] < scores[1] < scores[2] < scores[3], scores
    # loudness alone (c0) does not count
    assert mel_cepstral_distortion(ref, 2.0 * ref) == pytest.approx(0.0, abs=1e-3)


def test_mcd_aligns_a_time_shift() -> None:
    ref = _voiced(seed=2)
    delayed = np.concatenate([np.zeros(800, dtype=np.float32), ref])[: ref.size + 800]
    other = _voiced(f0=220.0, seed=2)
    assert mel_cepstral_distortion(ref, delayed) < 0.5 * mel_cepstral_distortion(ref, other)


def test_griffin_lim_keeps_length_and_is_close_to_the_source() -> None:
    ref = _voiced()
    out = griffin_lim_resynthesis(torch.from_numpy(ref), n_iter=16)
    assert out.shape == (ref.size,) and out.dtype == torch.float32
    noisy = ref + np.random.default_rng(3).normal(0, 0.05, ref.size).astype(np.float32)
    assert mel_cepstral_distortion(ref, out.numpy()) < mel_cepstral_distortion(ref, noisy)
    # the random starting phase is seeded: the same input gives the same audio
    assert torch.equal(out, griffin_lim_resynthesis(torch.from_numpy(ref), n_iter=16))


def _log_mel_frames(wav: np.ndarray) -> torch.Tensor:
    """(frames, 80) log of the baseline mel: "embeddings" that hold the whole mel."""
    return torch.from_numpy(log_mel_magnitude(wav, BASELINE_MEL).T.copy())


def test_linear_mel_probe_recovers_a_linear_map_and_resynthesizes() -> None:
    wavs = [_voiced(f0=f0, seed=i) for i, f0 in enumerate((110.0, 140.0, 180.0, 230.0))]
    mix = torch.from_numpy(np.random.default_rng(4).normal(size=(80, 80))).float()  # invertible
    pairs = [(_log_mel_frames(w) @ mix, torch.from_numpy(w)) for w in wavs]
    probe = LinearMelProbe.fit(pairs, ridge=1e-6)
    features, wav = pairs[0]
    assert np.allclose(probe.log_mel(features), _log_mel_frames(wavs[0]).numpy().T, atol=1e-2)
    out = probe.resynthesize(features, wav.numel(), n_iter=16)
    assert out.shape == wav.shape and bool(torch.isfinite(out).all())
    direct = griffin_lim_resynthesis(wav, n_iter=16)
    assert mel_cepstral_distortion(wav, out) == pytest.approx(
        mel_cepstral_distortion(wav, direct), abs=0.05)
    with pytest.raises(ConfigError, match="at least one"):
        LinearMelProbe.fit([])


def test_rejects_non_mono_input() -> None:
    with pytest.raises(ConfigError, match="mono waveform"):
        mel_cepstral_distortion(np.zeros((2, 100)), np.zeros(100))
