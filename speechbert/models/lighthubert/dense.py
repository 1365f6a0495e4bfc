"""A standalone dense HuBERT encoder of one subnet's sizes: what :func:`extract_subnet` returns.

It is a torchaudio :class:`~torchaudio.models.Wav2Vec2Model` (conv front end, feature projection,
weight-normed positional conv, ``Transformer`` of ``EncoderLayer`` / ``FeedForward``) whose
attention is :class:`DenseSelfAttention`: torchaudio's ``SelfAttention`` ties the head width to
``D / H``, while a LightHuBERT subnet keeps the head width fixed (64 at real size) and lets each
layer choose its heads, so the attention width ``H x head_dim`` may differ from D and between
layers. Every module is a plain ``nn.Linear`` / ``nn.LayerNorm`` / ``nn.Conv1d``; nothing is
sliced at run time. Module names are torchaudio's, and so (apart from the prefixes) those of
transformers' ``HubertModel``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.models import Wav2Vec2Model
from torchaudio.models.wav2vec2.components import (
    ConvolutionalPositionalEmbedding,
    Encoder,
    EncoderLayer,
    FeatureProjection,
    FeedForward,
    Transformer,
)

from speechbert.data.frames import receptive_field
from speechbert.errors import ConfigError
from speechbert.models.hubert.build import build_front_end
from speechbert.models.hubert.config import front_end_problem
from speechbert.models.lighthubert.space import (
    ConvLayerSpec,
    SupernetArch,
    hubert_conv_layers,
)
from speechbert.models.upstream import UpstreamOutput
from speechbert.nn.elastic import SubnetConfig


@dataclass(frozen=True)
class DenseEncoderConfig:
    """Sizes of a dense encoder cut from a supernet: one width, per-layer heads and FFN units."""

    embed_dim: int
    """Transformer width D."""
    heads: tuple[int, ...]
    """Attention heads of each layer; ``len(heads)`` is the depth."""
    ffn_dims: tuple[int, ...]
    """FFN hidden units of each layer."""
    head_dim: int = 64
    """Width of one attention head (the supernet's, fixed across subnets)."""
    conv_layers: tuple[ConvLayerSpec, ...] = hubert_conv_layers(512)
    """Conv front end, (channels, kernel, stride) per layer."""
    extractor_mode: str = "layer_norm"
    """``layer_norm`` (LayerNorm after every conv) or ``group_norm`` (one GroupNorm, conv 1)."""
    conv_bias: bool = False
    """Whether the conv layers have a bias term."""
    pos_conv_kernel: int = 128
    """Kernel of the convolutional positional embedding, in frames."""
    pos_conv_groups: int = 16
    """Groups of the convolutional positional embedding."""
    layer_norm_first: bool = False
    """Pre-LN layers with a final LayerNorm (fairseq's meaning) instead of post-LN."""
    layer_norm_eps: float = 1e-5
    """Epsilon of the Transformer's LayerNorms."""
    mask_embedding: bool = True
    """Whether the model keeps the supernet's mask embedding (sliced to D)."""
    dropout: float = 0.1
    """Dropout after the positional embedding and on each sublayer's output."""
    attention_dropout: float = 0.1
    """Dropout on attention weights."""
    activation_dropout: float = 0.0
    """Dropout inside the FFN, after its activation."""
    projection_dropout: float = 0.1
    """Dropout after projecting conv features to the encoder width."""

    def __post_init__(self) -> None:
        """Coerce JSON lists to tuples."""
        object.__setattr__(self, "heads", tuple(self.heads))
        object.__setattr__(self, "ffn_dims", tuple(self.ffn_dims))
        object.__setattr__(self, "conv_layers", tuple(tuple(c) for c in self.conv_layers))

    @property
    def subnet(self) -> SubnetConfig:
        """The subnet these sizes are (validates width, heads and FFN lists)."""
        return SubnetConfig(self.embed_dim, self.heads, self.ffn_dims)

    @property
    def depth(self) -> int:
        """Number of Transformer layers."""
        return len(self.heads)

    @property
    def in_features(self) -> int:
        """Channels of the last conv layer."""
        return self.conv_layers[-1][0]

    def validate(self) -> DenseEncoderConfig:
        """Raise :class:`ConfigError` naming the field, rule and value of a bad setting."""
        self.subnet  # noqa: B018 (SubnetConfig checks embed_dim / heads / ffn_dims)
        problem = front_end_problem(self.extractor_mode, self.conv_layers)
        if problem:
            raise ConfigError(f"DenseEncoderConfig.{problem}")
        if self.embed_dim % self.pos_conv_groups:
            raise ConfigError(f"DenseEncoderConfig.embed_dim must be divisible by "
                              f"pos_conv_groups ({self.embed_dim} % {self.pos_conv_groups})")
        return self

    @classmethod
    def from_supernet(cls, arch: SupernetArch, subnet: SubnetConfig) -> DenseEncoderConfig:
        """The dense sizes of ``subnet`` of a supernet built from ``arch``."""
        arch.check_subnet(subnet)
        enc = arch.encoder
        return cls(
            embed_dim=subnet.embed_dim, heads=subnet.heads, ffn_dims=subnet.ffn_dims,
            head_dim=enc.head_dim, conv_layers=arch.conv_layers,
            extractor_mode=arch.extractor_mode, conv_bias=arch.conv_bias,
            pos_conv_kernel=enc.pos_conv_kernel, pos_conv_groups=enc.pos_conv_groups,
            layer_norm_first=enc.layer_norm_first, layer_norm_eps=enc.layer_norm_eps,
            mask_embedding=arch.mask_embedding, dropout=enc.dropout,
            attention_dropout=enc.attention_dropout, activation_dropout=enc.activation_dropout,
            projection_dropout=enc.projection_dropout).validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists)."""
        return json_ready(asdict(self))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> DenseEncoderConfig:
        """Rebuild from :meth:`to_dict` output; :class:`ConfigError` names unknown/missing keys."""
        known = {f.name for f in fields(cls)}
        required = {"embed_dim", "heads", "ffn_dims"}
        unknown, missing = sorted(set(values) - known), sorted(required - set(values))
        if unknown or missing:
            raise ConfigError(f"{source}: DenseEncoderConfig keys unknown {unknown}, missing "
                              f"{missing}; known: {sorted(known)}")
        return cls(**values).validate()


def json_ready(value: Any) -> Any:
    """``value`` with tuples turned into lists, recursively (for ``json.dumps``)."""
    if isinstance(value, (tuple, list)):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    return value


class DenseSelfAttention(nn.Module):
    """Self-attention with ``num_heads`` heads of ``head_dim`` over ``embed_dim`` channels (SDPA).

    Call signature and names are torchaudio's ``SelfAttention`` (q/k/v/out_proj), so it drops
    into torchaudio's ``EncoderLayer``; unlike it, ``num_heads x head_dim`` need not be D.
    """

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout
        width = num_heads * head_dim
        self.q_proj = nn.Linear(embed_dim, width)
        self.k_proj = nn.Linear(embed_dim, width)
        self.v_proj = nn.Linear(embed_dim, width)
        self.out_proj = nn.Linear(width, embed_dim)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over ``x`` (B, T, D); ``attention_mask`` (B, 1, T, T) is additive (torchaudio's
        -10000 at padded keys). ``position_bias`` / ``key_padding_mask`` are unused (WavLM's)."""
        batch, frames, _ = x.shape
        shape = (batch, frames, self.num_heads, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).view(shape).transpose(1, 2)  # (B, H, T, hd)
        v = self.v_proj(x).view(shape).transpose(1, 2)  # (B, H, T, hd)
        context = F.scaled_dot_product_attention(  # (B, H, T, hd)
            q, k, v, attn_mask=attention_mask, dropout_p=self.dropout if self.training else 0.0)
        context = context.transpose(1, 2).reshape(batch, frames, -1)  # (B, T, H*hd)
        return self.out_proj(context), None  # (B, T, D)


def build_dense_attention(cfg: DenseEncoderConfig, layer: int) -> DenseSelfAttention:
    """Self-attention of ``layer`` (its own head count)."""
    return DenseSelfAttention(cfg.embed_dim, cfg.heads[layer], cfg.head_dim,
                              cfg.attention_dropout)


def build_dense_ffn(cfg: DenseEncoderConfig, layer: int) -> FeedForward:
    """torchaudio's feed-forward block with ``layer``'s FFN units."""
    return FeedForward(cfg.embed_dim, cfg.ffn_dims[layer], cfg.activation_dropout, cfg.dropout)


def build_dense_layer(cfg: DenseEncoderConfig, layer: int) -> EncoderLayer:
    """torchaudio's encoder layer (its ``layer_norm_first`` means pre-LN, as ours)."""
    block = EncoderLayer(build_dense_attention(cfg, layer), cfg.dropout, cfg.layer_norm_first,
                         build_dense_ffn(cfg, layer))
    block.layer_norm.eps = block.final_layer_norm.eps = cfg.layer_norm_eps
    return block


def build_dense_transformer(cfg: DenseEncoderConfig) -> Transformer:
    """Positional conv + layers (torchaudio's ``layer_norm_first`` is the negation of ours)."""
    pos_conv = ConvolutionalPositionalEmbedding(cfg.embed_dim, cfg.pos_conv_kernel,
                                                cfg.pos_conv_groups)
    layers = nn.ModuleList(build_dense_layer(cfg, i) for i in range(cfg.depth))
    transformer = Transformer(pos_conv, cfg.dropout, layers, not cfg.layer_norm_first, 0.0)
    transformer.layer_norm.eps = cfg.layer_norm_eps
    return transformer


def build_dense_model(cfg: DenseEncoderConfig) -> Wav2Vec2Model:
    """The torchaudio ``Wav2Vec2Model`` of ``cfg``'s sizes (weights to be loaded)."""
    cfg.validate()
    extractor = build_front_end(cfg.extractor_mode, cfg.conv_layers, cfg.conv_bias)
    projection = FeatureProjection(cfg.in_features, cfg.embed_dim, cfg.projection_dropout)
    projection.layer_norm.eps = cfg.layer_norm_eps
    return Wav2Vec2Model(extractor, Encoder(projection, build_dense_transformer(cfg)), aux=None)


class DenseEncoder(nn.Module):
    """A subnet as a standalone encoder and :class:`~speechbert.models.upstream.Upstream`.

    ``forward`` returns the hidden states the supernet returns at that subnet: the first layer's
    input, then each layer's output (with the final LayerNorm on the last for pre-LN encoders).
    """

    def __init__(self, config: DenseEncoderConfig, model: Wav2Vec2Model) -> None:
        super().__init__()
        self.config = config.validate()
        self.model = model
        self.mask_embedding: nn.Parameter | None = None
        if config.mask_embedding:
            self.mask_embedding = nn.Parameter(torch.empty(config.embed_dim).uniform_())
        conv = tuple((kernel, stride) for _, kernel, stride in config.conv_layers)
        self.downsample_rate = receptive_field(conv)[1]
        """Input samples per output frame (320 for HuBERT's front end)."""
        self.num_layers = config.depth + 1
        """Hidden states returned: the first layer's input and each layer's output."""
        self.hidden_size = config.embed_dim
        """Width D of the hidden states."""

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor,
                mask: torch.Tensor | None = None) -> UpstreamOutput:
        """Hidden states of ``wavs`` (B, T) 16 kHz with valid ``lengths`` (B,); ``mask`` (B, T')
        True replaces those projected frames by the mask embedding."""
        feats, frames = self.model.feature_extractor(wavs, lengths)  # (B, T', C), (B,)
        assert frames is not None
        x, attention_mask = self.model.encoder._preprocess(feats, frames)  # (B, T', D)
        if mask is not None:
            if self.mask_embedding is None:
                raise ConfigError("DenseEncoderConfig.mask_embedding is False; pass mask=None")
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)  # (B, T', D)
        transformer = self.model.encoder.transformer
        x = transformer._preprocess(x)  # (B, T', D): + positional conv (+ LN if post-LN)
        states = [x]
        for layer in transformer.layers:
            x, _ = layer(x, attention_mask)  # (B, T', D)
            states.append(x)
        if not transformer.layer_norm_first:  # torchaudio's flag: False = pre-LN = final norm
            states[-1] = transformer.layer_norm(states[-1])
        return UpstreamOutput(hidden_states=states, lengths=frames)


def build_dense_encoder(cfg: DenseEncoderConfig) -> DenseEncoder:
    """A dense encoder of ``cfg``'s sizes with fresh weights, on the default device, float32."""
    return DenseEncoder(cfg, build_dense_model(cfg))


def weight_norm_parts(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, v) with ``g * v / ||v||`` = ``weight`` for weight norm over dim 2 (norm over 0, 1)."""
    norm = torch.linalg.vector_norm(weight, dim=(0, 1), keepdim=True)  # (1, 1, K)
    return norm, weight
