"""Evaluation helpers: a Griffin-Lim baseline vocoder and mel-cepstral distortion (MCD).

**Baseline.** :func:`griffin_lim_resynthesis` takes a waveform's magnitude mel spectrogram and
inverts it with ``librosa.feature.inverse.mel_to_audio`` (non-negative least squares back to a
linear spectrogram, then Griffin-Lim phase recovery). The mel is :data:`BASELINE_MEL`: the
vocoder's 80-bin 0-8 kHz mel (:class:`~speechbert.models.tts.mel.MelConfig`) at the vocoder's
own frame rate, one frame per 20 ms upstream frame (hop 320). So the baseline gets the *true*
spectral envelope at the same time resolution the vocoder is conditioned on, but not the true
linear magnitude (which would make it a near-lossless "phase only" reconstruction, unfairly
strong) and not a finer frame rate than the vocoder has.

**Griffin-Lim on the embeddings.** :class:`LinearMelProbe` is a ridge regression from the
vocoder's own input (normalised embedding frames) to the log of that mel; Griffin-Lim on its
prediction is what a classical inversion makes of exactly the information the vocoder gets.

**MCD.** :func:`mel_cepstral_distortion` compares two waveforms by mel-cepstra from an
analysis that neither system was given (:data:`MCD_ANALYSIS`: 25 ms Hann window, 5 ms hop,
80 mel bands, the usual MCD frame settings): the DCT-II of the natural-log magnitude mel
spectrum, scaled to true cepstral units (``log|S| = c0 + 2 sum_m c_m cos(...)``, i.e. the
orthonormal DCT divided by ``sqrt(2 n_mels)``), coefficients ``c1..c24`` (``c0``, the frame
energy, is excluded so loudness does not count). The sequences are aligned by dynamic time
warping (``librosa.sequence.dtw``, Euclidean cost) and averaged over the aligned pairs whose
reference frame is speech (energy within :data:`SPEECH_RANGE_DB` of the loudest frame):

    MCD = (10 / ln 10) * sqrt(2 * sum_m (c_m - c'_m)^2)   averaged over frames  [dB]

(Kubichek 1993). It is 0 for identical audio; well-trained vocoders score about 1-3 dB.
The earlier version used the orthonormal DCT unscaled (sqrt(160) = 12.6 times too large) and
scored silent frames, where any noise floor against the 1e-5 log floor dominated; a 1 %
white-noise copy of the reference then scored 30-40 dB. SPTK's ``mcep`` (all-pass warping)
gives somewhat different values; compare systems within this function.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.fft
import torch

from speechbert.errors import ConfigError
from speechbert.models.tts.mel import MelConfig

MCD_COEFFICIENTS = 24
"""Mel-cepstral coefficients compared by MCD (c1..c24; c0 excluded)."""
MCD_CONSTANT = 10.0 * math.sqrt(2.0) / math.log(10.0)
"""10 sqrt(2) / ln 10 = 6.1418: natural-log cepstral distance to decibels."""
MCD_ANALYSIS = MelConfig(n_fft=1024, win_length=400, hop_length=80, n_mels=80)
"""MCD's own analysis: 25 ms window, 5 ms hop, 80 mel bands (independent of both systems)."""
BASELINE_MEL = MelConfig(hop_length=320)
"""What Griffin-Lim inverts: the vocoder's mel at 50 Hz, one frame per upstream frame."""
SPEECH_RANGE_DB = 40.0
"""Reference frames more than this below the loudest frame are silence and not scored."""


def _as_numpy(wav: torch.Tensor | np.ndarray) -> np.ndarray:
    data = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if data.ndim != 1 or data.size == 0:
        raise ConfigError(f"expected a non-empty mono waveform (T,); got shape {data.shape}")
    return data.astype(np.float32)


def mel_magnitude(wav: torch.Tensor | np.ndarray, config: MelConfig | None = None) -> np.ndarray:
    """Magnitude mel spectrogram (n_mels, frames) of ``wav`` (T,) with librosa."""
    c = config or MelConfig()
    return librosa.feature.melspectrogram(
        y=_as_numpy(wav), sr=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length,
        win_length=c.win_length, n_mels=c.n_mels, fmin=c.f_min, fmax=c.f_max, power=1.0)


def log_mel_magnitude(wav: torch.Tensor | np.ndarray,
                      config: MelConfig | None = None) -> np.ndarray:
    """Natural-log magnitude mel (n_mels, frames) of ``wav`` (T,), floored at
    ``config.log_floor``."""
    c = config or MelConfig()
    return np.log(np.maximum(mel_magnitude(wav, c), c.log_floor))


def mel_to_waveform(mel: np.ndarray, num_samples: int | None = None,
                    config: MelConfig | None = None, n_iter: int = 32) -> np.ndarray:
    """Griffin-Lim waveform (T,) from a magnitude mel spectrogram (n_mels, frames): the mel
    back to a linear magnitude by non-negative least squares, then ``n_iter`` Griffin-Lim
    iterations from a seeded random phase (so repeated runs give the same audio)."""
    c = config or MelConfig()
    stft = librosa.feature.inverse.mel_to_stft(mel, sr=c.sample_rate, n_fft=c.n_fft, power=1.0,
                                               fmin=c.f_min, fmax=c.f_max)
    return librosa.griffinlim(stft, n_iter=n_iter, hop_length=c.hop_length,
                              win_length=c.win_length, n_fft=c.n_fft, length=num_samples,
                              random_state=0)


def griffin_lim_resynthesis(wav: torch.Tensor | np.ndarray, config: MelConfig | None = None,
                            n_iter: int = 32) -> torch.Tensor:
    """The baseline: ``wav`` (T,) -> its mel (default :data:`BASELINE_MEL`) -> Griffin-Lim ->
    waveform (T,)."""
    data = _as_numpy(wav)
    config = config or BASELINE_MEL
    out = mel_to_waveform(mel_magnitude(data, config), data.size, config, n_iter)
    return torch.from_numpy(out.astype(np.float32))


def mel_cepstrum(wav: torch.Tensor | np.ndarray, config: MelConfig | None = None,
                 num_coefficients: int = MCD_COEFFICIENTS) -> np.ndarray:
    """Mel-cepstra ``c0..c{num_coefficients}`` (frames, 1 + num_coefficients) of ``wav`` (T,)
    in true cepstral units (see the module doc); default analysis :data:`MCD_ANALYSIS`."""
    c = config or MCD_ANALYSIS
    log_mel = log_mel_magnitude(wav, c)  # (n_mels, frames)
    cepstra = scipy.fft.dct(log_mel, type=2, axis=0, norm="ortho")  # (n_mels, frames)
    cepstra /= math.sqrt(2 * c.n_mels)
    return cepstra[:num_coefficients + 1].T  # (frames, 1 + num_coefficients)


def speech_frames(wav: torch.Tensor | np.ndarray, config: MelConfig | None = None,
                  range_db: float = SPEECH_RANGE_DB) -> np.ndarray:
    """Bool (frames,): the frames of ``wav`` within ``range_db`` of its loudest frame."""
    c = config or MCD_ANALYSIS
    energy = (mel_magnitude(wav, c) ** 2).sum(axis=0)  # (frames,)
    level = 10 * np.log10(np.maximum(energy, 1e-20))
    return level >= level.max() - range_db


def mel_cepstral_distortion(ref_wav: torch.Tensor | np.ndarray,
                            syn_wav: torch.Tensor | np.ndarray,
                            config: MelConfig | None = None) -> float:
    """MCD in dB between a reference and a synthesised waveform (T,), DTW-aligned, over the
    reference's speech frames."""
    ref, syn = mel_cepstrum(ref_wav, config)[:, 1:], mel_cepstrum(syn_wav, config)[:, 1:]
    _, path = librosa.sequence.dtw(X=ref.T, Y=syn.T, metric="euclidean")  # (P, 2)
    path = path[speech_frames(ref_wav, config)[path[:, 0]]]  # (P', 2)
    distances = np.linalg.norm(ref[path[:, 0]] - syn[path[:, 1]], axis=1)  # (P',)
    return float(MCD_CONSTANT * distances.mean())


@dataclass
class LinearMelProbe:
    """A ridge map from embedding frames (T, D) to log-mel frames of :data:`BASELINE_MEL`."""

    weight: np.ndarray
    """(D + 1, n_mels): the last row is the bias."""
    config: MelConfig = BASELINE_MEL
    """The mel predicted (and inverted by :meth:`resynthesize`)."""

    @classmethod
    def fit(cls, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], ridge: float = 1.0,
            config: MelConfig = BASELINE_MEL) -> LinearMelProbe:
        """Fit on ``(features (T, D), wav (S,))`` pairs; frame ``t`` of the features is paired
        with mel frame ``t`` (both 20 ms apart from the start of the audio)."""
        xs, ys = [], []
        for features, wav in pairs:
            log_mel = log_mel_magnitude(wav, config).T  # (frames, n_mels)
            n = min(features.shape[0], log_mel.shape[0])
            xs.append(_with_bias(features[:n]))
            ys.append(log_mel[:n])
        if not xs:
            raise ConfigError("LinearMelProbe.fit needs at least one (features, wav) pair")
        x = np.concatenate(xs)  # (N, D + 1)
        y = np.concatenate(ys).astype(np.float64)  # (N, n_mels)
        gram = x.T @ x + ridge * np.eye(x.shape[1])
        return cls(np.linalg.solve(gram, x.T @ y), config)

    def log_mel(self, features: torch.Tensor) -> np.ndarray:
        """Predicted log-mel (n_mels, T) of ``features`` (T, D)."""
        return (_with_bias(features) @ self.weight).T

    def resynthesize(self, features: torch.Tensor, num_samples: int,
                     n_iter: int = 32) -> torch.Tensor:
        """Griffin-Lim waveform (num_samples,) from the mel predicted for ``features``."""
        mel = np.exp(self.log_mel(features))  # (n_mels, T)
        frames = 1 + num_samples // self.config.hop_length  # what librosa's framing expects
        mel = np.pad(mel, ((0, 0), (0, max(0, frames - mel.shape[1]))), mode="edge")
        out = mel_to_waveform(mel[:, :frames], num_samples, self.config, n_iter)
        return torch.from_numpy(out.astype(np.float32))


def _with_bias(features: torch.Tensor) -> np.ndarray:
    """(T, D) float tensor -> (T, D + 1) float64 array with a column of ones."""
    x = features.double().numpy()
    return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
