"""SpecAugment on the weighted-sum features of a SUPERB head, during training only.

s3prl's ASR runner applies SpecAugment to the featurizer's output, before the downstream model
(``s3prl/downstream/runner.py``: ``features = self.featurizer.model(...)`` then
``specaug(features)``, settings in ``downstream/asr/config.yaml`` lines 25-37). The three parts
run in s3prl's order: time warp, then frequency masks, then time masks, all filling with zero.

* Time warp: torchaudio offers no warp for real-valued features (``TimeStretch`` is a phase
  vocoder on complex spectrograms), so :func:`time_warp` is written here. Per row, on its valid
  frames: a centre ``c`` is drawn in ``[W, T - W)``, a new position ``w`` in ``[c - W, c + W)``
  plus one, and the two sides are resized (bicubic) to ``w`` and ``T - w`` frames; rows of at
  most ``2 W`` frames are left alone. This is the algorithm of s3prl's ``TimeWarp``.
* Frequency and time masks: ``torchaudio.transforms.FrequencyMasking`` / ``TimeMasking`` with
  ``iid_masks=True`` (a mask per row), called once per mask. Each mask's width is an integer
  drawn uniformly in ``[0, width)``, as s3prl's ``MaskAlongAxis`` draws it. Time masks fall
  anywhere in the padded batch, as s3prl's do.

Features cached on disk stay valid: the augmentation acts after the layer sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio.transforms as T
from torch import nn

from speechbert.errors import ConfigError


@dataclass
class SpecAugmentConfig:
    """SpecAugment settings (defaults: s3prl ``downstream/asr/config.yaml`` ``specaug``)."""

    time_warp: bool = True
    """Apply the time warp (s3prl ``apply_time_warp``)."""
    time_warp_window: int = 5
    """Largest shift W of the warp point, in frames (s3prl ``time_warp_window``)."""
    freq_mask: bool = True
    """Apply frequency (feature-dimension) masks (s3prl ``apply_freq_mask``)."""
    freq_mask_width: int = 50
    """Mask widths are drawn in [0, freq_mask_width) (s3prl ``freq_mask_width_range: [0, 50]``)."""
    num_freq_masks: int = 4
    """Frequency masks per row (s3prl ``num_freq_mask``)."""
    time_mask: bool = True
    """Apply time masks (s3prl ``apply_time_mask``)."""
    time_mask_width: int = 40
    """Mask widths are drawn in [0, time_mask_width) (s3prl ``time_mask_width_range: [0, 40]``)."""
    num_time_masks: int = 2
    """Time masks per row (s3prl ``num_time_mask``)."""

    def validate(self) -> SpecAugmentConfig:
        """Raise :class:`ConfigError` naming the field, rule and value of a bad setting."""
        for name in ("time_warp_window", "freq_mask_width", "time_mask_width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"task.specaug.{name} must be >= 1; got {getattr(self, name)}")
        for name in ("num_freq_masks", "num_time_masks"):
            if getattr(self, name) < 0:
                raise ConfigError(f"task.specaug.{name} must be >= 0; got {getattr(self, name)}")
        return self

    @property
    def enabled(self) -> bool:
        """Whether any part is switched on."""
        return self.time_warp or self.freq_mask or self.time_mask


def off() -> SpecAugmentConfig:
    """No augmentation (the demo's tiny ASR task)."""
    return SpecAugmentConfig(time_warp=False, freq_mask=False, time_mask=False)


def time_warp(x: torch.Tensor, lengths: torch.Tensor, window: int) -> torch.Tensor:
    """Warp each row of ``x`` (B, T, D) along time within its ``lengths`` (B,) valid frames.

    Returns a new (B, T, D) tensor; frames past a row's length are zero. Random draws use
    torch's global generator. Differentiable (the featurizer's weights receive gradients).
    """
    rows = []
    for row, n in zip(x, lengths.tolist(), strict=True):
        valid = row[:n]  # (n, D)
        if n > 2 * window:
            centre = int(torch.randint(window, n - window, ()))
            warped = int(torch.randint(centre - window, centre + window, ())) + 1
            valid = torch.cat([_resize(valid[:centre], warped),
                               _resize(valid[centre:], n - warped)])  # (n, D)
        rows.append(F.pad(valid, (0, 0, 0, x.shape[1] - n)))  # (T, D)
    return torch.stack(rows)  # (B, T, D)


def _resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``frames`` (N, D) resampled bicubically to (size, D)."""
    image = frames[None, None]  # (1, 1, N, D)
    out = F.interpolate(image, size=(size, frames.shape[1]), mode="bicubic",
                        align_corners=False)  # (1, 1, size, D)
    return out[0, 0]  # (size, D)


class SpecAugment(nn.Module):
    """Time warp, frequency masks and time masks of (B, T, D) features; identity in eval mode."""

    def __init__(self, config: SpecAugmentConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.freq_masking = T.FrequencyMasking(config.freq_mask_width, iid_masks=True)
        self.time_masking = T.TimeMasking(config.time_mask_width, iid_masks=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Augmented ``x`` (B, T, D) with valid frames ``lengths`` (B,); ``x`` itself when not
        training or when every part is off."""
        cfg = self.config
        if not self.training or not cfg.enabled:
            return x
        if cfg.time_warp:
            x = time_warp(x, lengths, cfg.time_warp_window)  # (B, T, D)
        spec = x.transpose(1, 2)  # (B, D, T): torchaudio's (..., freq, time)
        for _ in range(cfg.num_freq_masks if cfg.freq_mask else 0):
            spec = self.freq_masking(spec)
        for _ in range(cfg.num_time_masks if cfg.time_mask else 0):
            spec = self.time_masking(spec)
        return spec.transpose(1, 2)  # (B, T, D)
