"""Upstream-layer embeddings as both TTS stages see them: normalised, plus speaker vectors.

Both stages read one upstream layer normalised per dimension with the training set's mean and
standard deviation (:class:`FeatureStats`). A speaker is a vector: the mean over an utterance's
frames of another (normalised) layer, by default the lowest, most acoustic one
(:func:`speaker_vector`). The same upstream gives it for any wav, so a speaker can be named by
a reference recording (voice conversion, unseen speakers) or by the mean of their training
utterances' vectors (a speaker id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class FeatureStats:
    """Per-dimension mean and standard deviation of an upstream layer's training frames."""

    mean: torch.Tensor
    """(D,) float32."""
    std: torch.Tensor
    """(D,) float32, floored at 1e-5."""

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D) zero-mean, unit-variance per dimension."""
        return (frames.float() - self.mean.to(frames.device)) / self.std.to(frames.device)

    @classmethod
    def of(cls, frames: Sequence[torch.Tensor]) -> FeatureStats:
        """The statistics of a list of (T_i, D) tensors."""
        stacked = torch.cat([f.float() for f in frames])  # (sum T_i, D)
        return cls(stacked.mean(0), stacked.std(0).clamp(min=1e-5))


def speaker_vector(frames: torch.Tensor) -> torch.Tensor:
    """The speaker vector (D,) of one utterance's normalised speaker-layer frames (T, D)."""
    return frames.float().mean(0)


def speaker_table(vectors: Sequence[torch.Tensor],
                  speakers: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """Sorted speaker ids and their mean vectors (S, D) from per-utterance ``vectors``."""
    ids = sorted(set(speakers))
    table = torch.stack([torch.stack([v for v, s in zip(vectors, speakers, strict=True)
                                      if s == sid]).mean(0) for sid in ids])  # (S, D)
    return ids, table
