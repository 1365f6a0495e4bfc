"""text2vec's loss: L1 or MSE to the target embeddings on valid frames, plus log-duration MSE.

The model is run with the alignment's durations (teacher forcing), so its frames line up one to
one with the target upstream frames; the duration predictor is trained on log(1 + frames), as
FastSpeech. ``loss = frame_loss + duration_weight * duration_loss``, each a mean over valid
frames x dims and valid tokens.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from speechbert.errors import ConfigError
from speechbert.losses.criterion import LossOutput
from speechbert.models.heads.pooling import frame_mask
from speechbert.models.tts.text2vec import AlignedOutput, Text2VecOutput

FrameDistance = Literal["l1", "mse"]
"""How predicted and target embeddings are compared."""


def log_duration_targets(durations: torch.Tensor) -> torch.Tensor:
    """The duration predictor's target log(1 + frames), same shape as ``durations``."""
    return torch.log1p(durations.float())


def masked_frame_loss(predicted: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor,
                      distance: FrameDistance = "l1") -> torch.Tensor:
    """Mean L1 or squared error over the first ``lengths[b]`` frames of (B, T, D) tensors."""
    if distance not in ("l1", "mse"):
        raise ConfigError(f"frame_distance must be 'l1' or 'mse'; got {distance!r}")
    error = (predicted - target).abs() if distance == "l1" else (predicted - target) ** 2
    keep = frame_mask(lengths, predicted.shape[1]).unsqueeze(-1).to(error.dtype)  # (B, T, 1)
    return (error * keep).sum() / (keep.sum() * predicted.shape[-1]).clamp(min=1.0)


def text2vec_loss(output: Text2VecOutput, targets: torch.Tensor, target_lengths: torch.Tensor,
                  token_lengths: torch.Tensor, *, frame_distance: FrameDistance = "l1",
                  duration_weight: float = 1.0) -> LossOutput:
    """Loss of a teacher-forced text2vec ``output`` against ``targets`` (B, T, D).

    ``target_lengths`` (B,) are the valid target frames and must equal ``output.lengths``
    (durations from :func:`~speechbert.models.tts.alignment.durations_from_alignment` sum to
    the frame count); ``token_lengths`` (B,) the valid tokens.
    """
    if not torch.equal(output.lengths.cpu(), target_lengths.cpu()):
        raise ConfigError(f"text2vec durations sum to {output.lengths.tolist()} frames but the "
                          f"targets have {target_lengths.tolist()}; derive durations from the "
                          "same upstream frames (durations_from_alignment sums to T)")
    frames = min(output.features.shape[1], targets.shape[1])
    frame_loss = masked_frame_loss(output.features[:, :frames], targets[:, :frames],
                                   target_lengths, frame_distance)
    token_mask = frame_mask(token_lengths, output.durations.shape[1])  # (B, N)
    duration_loss = F.mse_loss(output.log_durations[token_mask],
                               log_duration_targets(output.durations)[token_mask])
    loss = frame_loss + duration_weight * duration_loss
    metrics = {"frame_loss": frame_loss.detach(), "duration_loss": duration_loss.detach()}
    return LossOutput(loss=loss, metrics=metrics, num_targets=int(target_lengths.sum()))


def aligned_text2vec_loss(aligned: AlignedOutput, targets: torch.Tensor,
                          target_lengths: torch.Tensor, token_lengths: torch.Tensor, *,
                          frame_distance: FrameDistance = "l1", duration_weight: float = 1.0,
                          prior_weight: float = 1.0) -> LossOutput:
    """:func:`text2vec_loss` of a MAS-aligned pass plus ``prior_weight`` times the MSE of the
    aligned token means to the targets (Glow-TTS's likelihood term, which sharpens the
    alignment); ``prior_loss`` is logged."""
    base = text2vec_loss(aligned.output, targets, target_lengths, token_lengths,
                         frame_distance=frame_distance, duration_weight=duration_weight)
    prior = masked_frame_loss(aligned.aligned_means, targets, target_lengths, "mse")
    metrics = {**base.metrics, "prior_loss": prior.detach()}
    return LossOutput(loss=base.loss + prior_weight * prior, metrics=metrics,
                      num_targets=base.num_targets)
