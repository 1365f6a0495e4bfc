"""The LightHuBERT once-for-all supernet: a shared conv front end and an elastic Transformer.

:class:`LightHubertSupernet` runs at the :class:`SubnetConfig` passed to ``forward`` (never a
stored "current subnet"): the conv feature extractor (torchaudio's, not elastic) and the feature
LayerNorm run at full size, the projection, mask embedding, positional conv and layers at the
subnet's sizes, with small matmuls on sliced weights (see :mod:`speechbert.nn.elastic`).

Module names mirror torchaudio's ``Wav2Vec2Model`` so a HuBERT teacher's weights load at full size
(:func:`~speechbert.models.lighthubert.teacher.copy_teacher`): ``feature_extractor`` =
``feature_extractor``, ``feature_projection`` = ``encoder.feature_projection``, ``encoder`` =
``encoder.transformer``, ``mask_embedding`` = ``HuBERTPretrainModel.mask_generator.mask_embedding``.

Hidden states follow :class:`~speechbert.models.hubert.upstream.HubertUpstream`: the input of the
first run layer (after the positional conv, and the LayerNorm for post-LN encoders), then each run
layer's output; for pre-LN encoders the last one includes the final LayerNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speechbert.data.frames import receptive_field
from speechbert.errors import ConfigError
from speechbert.models.hubert.build import build_front_end
from speechbert.models.lighthubert.space import SupernetArch
from speechbert.models.upstream import UpstreamOutput
from speechbert.nn.elastic import (
    ElasticEncoder,
    ElasticFeatureProjection,
    SubnetConfig,
    build_encoder,
    build_feature_projection,
)


def frame_padding_mask(lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, T) bool, True at frames at or past ``lengths`` (B,) (padding)."""
    frames = torch.arange(num_frames, device=lengths.device)  # (T,)
    return frames[None, :] >= lengths[:, None]  # (B, T)


@dataclass
class SupernetOutput:
    """Hidden states of one subnet and the valid frames per row."""

    hidden_states: list[torch.Tensor]
    """(B, T', D) tensors: the first run layer's input, then each run layer's output."""
    lengths: torch.Tensor
    """Valid frames per row (B,) int64."""


class LightHubertSupernet(nn.Module):
    """Conv front end + elastic feature projection + mask embedding + elastic encoder."""

    def __init__(self, arch: SupernetArch, feature_extractor: nn.Module,
                 feature_projection: ElasticFeatureProjection, encoder: ElasticEncoder) -> None:
        super().__init__()
        self.arch = arch.validate()
        self.feature_extractor = feature_extractor
        self.feature_projection = feature_projection
        self.encoder = encoder
        self.mask_embedding: nn.Parameter | None = None
        if arch.mask_embedding:  # HuBERT / LightHuBERT init: uniform in [0, 1)
            self.mask_embedding = nn.Parameter(torch.empty(arch.encoder.embed_dim).uniform_())

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor, subnet: SubnetConfig,
                mask: torch.Tensor | None = None) -> SupernetOutput:
        """Encode ``wavs`` (B, T) 16 kHz with valid ``lengths`` (B,) at ``subnet``.

        ``mask`` (B, T') True replaces those frames of the projected features by the mask
        embedding (sliced to D) before the encoder, as HuBERT / LightHuBERT masking does.
        """
        self.arch.check_subnet(subnet)
        feats, frames = self.feature_extractor(wavs, lengths)  # (B, T', C), (B,)
        assert frames is not None
        padding = frame_padding_mask(frames, feats.shape[1])  # (B, T')
        x = self.feature_projection(feats, subnet.embed_dim)  # (B, T', D)
        if mask is not None:
            x = self.apply_mask(x, mask)
        out = self.encoder(x, subnet, padding)
        states = [out.layer_input, *out.layer_outputs]
        states[-1] = out.last  # differs from the last layer's output only for pre-LN encoders
        return SupernetOutput(hidden_states=states, lengths=frames)

    def apply_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, T, D) with the frames where ``mask`` (B, T) is True set to the embedding."""
        if self.mask_embedding is None:
            raise ConfigError("SupernetArch.mask_embedding is False, so the supernet cannot mask "
                              "frames; build it with mask_embedding=True or pass mask=None")
        if mask.shape != x.shape[:2]:
            raise ConfigError(f"mask must have shape (B, T') = {tuple(x.shape[:2])}; "
                              f"got {tuple(mask.shape)}")
        embedding = self.mask_embedding[: x.shape[-1]].to(x.dtype)  # (D,)
        return torch.where(mask[..., None], embedding, x)  # (B, T, D)


def build_feature_extractor(arch: SupernetArch) -> nn.Module:
    """The shared (not elastic) front end as ``arch`` describes it: torchaudio's conv stack or
    the fbank front end."""
    return build_front_end(arch.extractor_mode, arch.conv_layers, arch.conv_bias)


def build_supernet(arch: SupernetArch) -> LightHubertSupernet:
    """A supernet with freshly initialised weights (start from a teacher with
    :func:`~speechbert.models.lighthubert.teacher.copy_teacher`).

    Built on the default device in float32; move it with ``.to(device, dtype)``.
    """
    arch.validate()
    return LightHubertSupernet(arch, build_feature_extractor(arch),
                               build_feature_projection(arch.encoder), build_encoder(arch.encoder))


class SupernetUpstream(nn.Module):
    """A view of ``supernet`` at one ``subnet``, as an :class:`~speechbert.models.upstream.Upstream`
    (hidden states: the first run layer's input and each run layer's output, 50 Hz frames).

    Holds no weights of its own (the supernet's are shared) and runs in whatever train/eval mode
    the supernet is in; call ``.eval()`` for features without dropout.
    """

    def __init__(self, supernet: LightHubertSupernet, subnet: SubnetConfig) -> None:
        super().__init__()
        supernet.arch.check_subnet(subnet)
        self.supernet = supernet
        self.subnet = subnet
        conv = tuple((kernel, stride) for _, kernel, stride in supernet.arch.conv_layers)
        self.downsample_rate = receptive_field(conv)[1]
        """Input samples per output frame (320 for HuBERT's front end)."""
        self.num_layers = subnet.depth + 1
        """Hidden states returned: the first layer's input and each run layer's output."""
        self.hidden_size = subnet.embed_dim
        """Width D of the hidden states."""

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        """Hidden states of ``wavs`` (B, T) float32 16 kHz with valid ``lengths`` (B,)."""
        out = self.supernet(wavs, lengths, self.subnet)
        return UpstreamOutput(hidden_states=out.hidden_states, lengths=out.lengths)
