"""SUPERB's speaker-verification head: an x-vector network and cosine trial scoring.

As s3prl's ``downstream/sv_voxceleb1`` (``XVector`` + ``SP`` + ``UtteranceExtractor``) and
Kaldi's x-vector: a linear projection, five frame-level TDNN layers (context 5/3/3/1/1,
dilation 1/2/3/1/1, ReLU), statistics pooling (mean and standard deviation over valid frames),
then two segment-level layers, each followed by ReLU; :meth:`XvectorHead.forward` gives the
second one's output, the loss input (s3prl ``UtteranceExtractor.forward``). The embedding scored
on trials is the first segment layer's output after its ReLU, L2-normalised
(:meth:`XvectorHead.embed`), as s3prl's ``UtteranceExtractor.inference`` (``model.py`` lines
225-229) followed by ``F.normalize`` in ``expert.py`` line 224; trials are scored by cosine
similarity (``expert.py`` line 114).

Difference from s3prl/Kaldi: the TDNN layers zero-pad each row beyond its valid frames instead
of trimming 14 context frames, so every valid frame keeps an output, the result does not depend
on how a batch is padded, and utterances shorter than the 15-frame context still get an
embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from speechbert.errors import ConfigError
from speechbert.models.heads.pooling import frame_mask, masked_mean_std


@dataclass
class XvectorConfig:
    """Sizes of the x-vector head (SUPERB: 512 projection and TDNN, 1500 stats, 512 embedding)."""

    project_dim: int = 512
    """Width of the linear projection of the upstream features (s3prl ``input_dim``)."""
    tdnn_dim: int = 512
    """Output width of the first four TDNN layers."""
    stats_dim: int = 1500
    """Output width of the last TDNN layer; pooling gives 2 x stats_dim (s3prl ``agg_dim``)."""
    embed_dim: int = 512
    """Speaker-embedding width (both segment-level layers)."""
    contexts: tuple[int, ...] = (5, 3, 3, 1, 1)
    """Frames each TDNN layer reads (odd), one entry per layer."""
    dilations: tuple[int, ...] = (1, 2, 3, 1, 1)
    """Spacing of those frames, one entry per layer."""

    def validate(self) -> XvectorConfig:
        """Raise :class:`ConfigError` naming the field, rule and value of a bad setting."""
        for name in ("project_dim", "tdnn_dim", "stats_dim", "embed_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"XvectorConfig.{name} must be >= 1; got {getattr(self, name)}")
        if len(self.contexts) != len(self.dilations) or not self.contexts:
            raise ConfigError(f"XvectorConfig.contexts and dilations must be non-empty and of "
                              f"equal length; got {self.contexts} and {self.dilations}")
        if any(c < 1 or c % 2 == 0 for c in self.contexts) or min(self.dilations) < 1:
            raise ConfigError(f"XvectorConfig.contexts must be odd and >= 1 and dilations >= 1; "
                              f"got contexts {self.contexts}, dilations {self.dilations}")
        return self


def tiny() -> XvectorConfig:
    """A small x-vector for tests and the demo (64 TDNN, 128 stats, 64 embedding)."""
    return XvectorConfig(project_dim=64, tdnn_dim=64, stats_dim=128, embed_dim=64)


def superb() -> XvectorConfig:
    """SUPERB's SV downstream (s3prl ``sv_voxceleb1/config.yaml``, XVector + SP)."""
    return XvectorConfig()


PRESETS: dict[str, Callable[[], XvectorConfig]] = {"tiny": tiny, "superb": superb}
"""Preset functions by name, for Hydra's ConfigStore (registered in ``cli/``)."""


class Tdnn(nn.Module):
    """One TDNN layer: a dilated 1-D convolution over time, then ReLU; padding stays zero."""

    def __init__(self, input_dim: int, output_dim: int, context: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(input_dim, output_dim, kernel_size=context, dilation=dilation,
                              padding=dilation * (context - 1) // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D_out) from ``x`` (B, T, D_in) and the valid-frame ``mask`` (B, T, 1)."""
        x = (x * mask).transpose(1, 2)  # (B, D_in, T), zero beyond each row's frames
        return F.relu(self.conv(x)).transpose(1, 2)  # (B, T, D_out)


class XvectorHead(nn.Module):
    """Speaker embeddings (and the AM-softmax loss input) from upstream features."""

    def __init__(self, input_dim: int, config: XvectorConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.project = nn.Linear(input_dim, config.project_dim)
        widths = [config.project_dim] + [config.tdnn_dim] * (len(config.contexts) - 1)
        outs = [config.tdnn_dim] * (len(config.contexts) - 1) + [config.stats_dim]
        self.tdnns = nn.ModuleList(
            Tdnn(i, o, c, d) for i, o, c, d in zip(widths, outs, config.contexts,
                                                   config.dilations, strict=True))
        self.segment1 = nn.Linear(2 * config.stats_dim, config.embed_dim)
        self.segment2 = nn.Linear(config.embed_dim, config.embed_dim)

    def segment_a(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """First segment layer after its ReLU (B, E), of ``features`` (B, T, D) with valid
        frames ``lengths`` (B,)."""
        mask = frame_mask(lengths, features.shape[1]).unsqueeze(-1).to(features.dtype)  # (B,T,1)
        x = self.project(features)  # (B, T, P)
        for tdnn in self.tdnns:
            x = tdnn(x, mask)  # (B, T, H)
        stats = masked_mean_std(x, lengths)  # (B, 2 S)
        return F.relu(self.segment1(stats))  # (B, E)

    def embed(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Unit-length speaker embeddings (B, E) for cosine scoring."""
        return F.normalize(self.segment_a(features, lengths), dim=-1)  # (B, E)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Training output (B, E) for the speaker-classification loss."""
        return F.relu(self.segment2(self.segment_a(features, lengths)))  # (B, E)


def cosine_scores(emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each trial pair: (N,) from enrolment and test embeddings (N, E)."""
    return F.cosine_similarity(emb_a, emb_b, dim=-1)  # (N,)
