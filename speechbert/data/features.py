"""Frame-level acoustic features: kaldi MFCC and fbank, and frame sources for k-means targets.

``mfcc_features`` and ``fbank_features`` run at kaldi's 100 Hz (25 ms window, 10 ms shift,
``snip_edges=True``: kaldi frame ``j`` covers samples ``[160 j, 160 j + 400)``).

A :class:`FrameFeatures` source instead gives one vector per **20 ms model frame**, aligned to
the HuBERT conv front end (model frame ``i`` covers samples ``[320 i, 320 i + 400)``), so the
k-means labels computed from it line up one-to-one with the model's output frames.
:class:`MfccFrames` is the HuBERT iteration-1 source; a model layer's hidden states (iteration
2) is another implementation of the same protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from speechbert.audio import SAMPLE_RATE
from speechbert.data.frames import (
    HUBERT_CONV_LAYERS,
    ConvLayers,
    conv_frame_count,
    receptive_field,
)
from speechbert.errors import ConfigError

KALDI_WINDOW = 400
"""Kaldi frame length in samples at 16 kHz (25 ms)."""
KALDI_SHIFT = 160
"""Kaldi frame shift in samples at 16 kHz (10 ms)."""
NUM_CEPS = 13
"""Static MFCC coefficients; with deltas and delta-deltas the feature has 39 dims."""


def _kaldi_frame_count(num_samples: int) -> int:
    """Frames kaldi makes with ``snip_edges=True`` (0 when shorter than one window)."""
    return 0 if num_samples < KALDI_WINDOW else 1 + (num_samples - KALDI_WINDOW) // KALDI_SHIFT


def _check_wav(wav: torch.Tensor) -> None:
    assert wav.dim() == 1, f"expected a mono waveform (T,), got shape {tuple(wav.shape)}"


def mfcc_features(wav: torch.Tensor) -> torch.Tensor:
    """13 MFCC + deltas + delta-deltas at 100 Hz, as fairseq's HuBERT recipe
    (``examples/hubert/simple_kmeans/dump_mfcc_feature.py`` lines 45-53): (N, 39).

    ``wav`` is float32 mono 16 kHz, shape (T,). Uses ``torchaudio.compliance.kaldi.mfcc``
    (25 ms window, 10 ms shift, ``use_energy=False``) then ``compute_deltas`` twice.
    ``N = 1 + (T - 400) // 160``, or 0 when ``T < 400``.
    """
    _check_wav(wav)
    if _kaldi_frame_count(wav.numel()) == 0:
        return wav.new_zeros(0, 3 * NUM_CEPS)
    mfcc = kaldi.mfcc(wav.unsqueeze(0), sample_frequency=SAMPLE_RATE, use_energy=False,
                      num_ceps=NUM_CEPS)  # (N, 13)
    mfcc = mfcc.transpose(0, 1)  # (13, N)
    deltas = AF.compute_deltas(mfcc)  # (13, N)
    ddeltas = AF.compute_deltas(deltas)  # (13, N)
    return torch.cat([mfcc, deltas, ddeltas], dim=0).transpose(0, 1).contiguous()  # (N, 39)


def fbank_features(wav: torch.Tensor, num_mel_bins: int = 80) -> torch.Tensor:
    """Kaldi log-mel filterbank at 100 Hz (25 ms window, 10 ms shift): (N, num_mel_bins).

    ``wav`` is float32 mono 16 kHz, shape (T,); ``N`` as in :func:`mfcc_features`.
    """
    _check_wav(wav)
    if _kaldi_frame_count(wav.numel()) == 0:
        return wav.new_zeros(0, num_mel_bins)
    return kaldi.fbank(wav.unsqueeze(0), sample_frequency=SAMPLE_RATE,
                       num_mel_bins=num_mel_bins)  # (N, num_mel_bins)


@runtime_checkable
class FrameFeatures(Protocol):
    """A source of one feature vector per 20 ms model frame, for k-means targets.

    Contract: called with a float32 mono 16 kHz waveform (T,), it returns a float tensor
    ``(conv_frame_count(T), D)`` whose row ``i`` describes model frame ``i``, i.e. samples
    ``[320 i, 320 i + 400)`` of the HuBERT conv front end. ``D`` is fixed per source.
    ``description`` is a short human-readable name (feature kind and its settings, e.g. the
    checkpoint and layer), stored next to the labels so they say where they came from.
    """

    @property
    def description(self) -> str:
        """What these features are, e.g. ``"mfcc39 (kaldi 100 Hz, frame 2i)"``."""
        ...

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """Features of ``wav`` (T,): (conv_frame_count(T), D)."""
        ...


class MfccFrames:
    """HuBERT iteration-1 features: the 39-dim MFCC of kaldi frame ``2 i`` for model frame ``i``.

    Kaldi frame ``j`` covers samples ``[160 j, 160 j + 400)``, so frame ``2 i`` covers exactly
    the samples of model frame ``i`` (``[320 i, 320 i + 400)``); this is fairseq's
    ``feat2tar_ratio = 2`` for 100 Hz MFCC labels, done once when the labels are made.
    """

    dim = 3 * NUM_CEPS
    """Feature dimension (39)."""

    def __init__(self, conv_layers: ConvLayers = HUBERT_CONV_LAYERS) -> None:
        field, hop = receptive_field(conv_layers)
        if (field, hop) != (KALDI_WINDOW, 2 * KALDI_SHIFT):
            raise ConfigError(
                f"MfccFrames needs a conv front end with a 400-sample receptive field and a "
                f"320-sample hop (kaldi frame 2i = model frame i); conv_layers give "
                f"field {field}, hop {hop}. Use HUBERT_CONV_LAYERS or another FrameFeatures")
        self.conv_layers = tuple(conv_layers)

    @property
    def description(self) -> str:
        """Short name for label sidecars."""
        return "mfcc39 (kaldi 13 MFCC + deltas + delta-deltas at 100 Hz, frame 2i per 20 ms)"

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """MFCC features of ``wav`` (T,), one row per model frame: (conv_frame_count(T), 39)."""
        num_frames = conv_frame_count(wav.numel(), self.conv_layers)
        feats = mfcc_features(wav)[::2]  # (ceil(N_kaldi / 2), 39)
        assert feats.shape[0] >= num_frames, (
            f"{feats.shape[0]} MFCC frames at 50 Hz for {wav.numel()} samples, but the conv "
            f"front end makes {num_frames}; the conv layers do not match a 320-sample hop")
        return feats[:num_frames]  # (num_frames, 39)
