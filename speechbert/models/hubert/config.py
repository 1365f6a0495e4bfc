"""HuBERT architecture and masking settings, with the tiny / base / large presets.

``base()`` and ``large()`` equal torchaudio's ``hubert_pretrain_base()`` /
``hubert_pretrain_large()`` argument for argument (a test compares them); ``tiny()`` is for tests
and the demo. The conv front end keeps the standard 7 kernels/strides whatever its channels, so a
model frame is always 20 ms and :func:`~speechbert.data.frames.conv_frame_count` gives the label
count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from speechbert.data.frames import HUBERT_CONV_LAYERS
from speechbert.errors import ConfigError
from speechbert.models.hubert.fbank_frontend import (
    FBANK_MODE,
    fbank_conv_layers,
    fbank_layers_problem,
)

ConvLayerSpec = tuple[int, int, int]
"""(channels, kernel, stride) of one conv layer of the feature extractor."""

EXTRACTOR_MODES = ("group_norm", "layer_norm", FBANK_MODE)
"""Front ends: torchaudio's conv stack with one GroupNorm (fairseq ``default``) or a LayerNorm
after every conv, or stacked log-mel filterbanks instead of convs (``fbank``, MelHuBERT;
:mod:`speechbert.models.hubert.fbank_frontend`)."""


def front_end_problem(extractor_mode: str,
                      conv_layers: tuple[ConvLayerSpec, ...]) -> str | None:
    """Why ``extractor_mode`` with ``conv_layers`` is not a front end we can build, or None:
    an unknown mode, or fbank layers other than :func:`fbank_conv_layers`' one pseudo layer.
    Shared by the teacher's, the supernet's and the dense export's configs."""
    if extractor_mode not in EXTRACTOR_MODES:
        return f"extractor_mode must be one of {EXTRACTOR_MODES}; got {extractor_mode!r}"
    return fbank_layers_problem(conv_layers) if extractor_mode == FBANK_MODE else None


def conv_layers_with_channels(channels: tuple[int, ...]) -> tuple[ConvLayerSpec, ...]:
    """The standard 7 kernels/strides (:data:`HUBERT_CONV_LAYERS`) with the given channels."""
    if len(channels) != len(HUBERT_CONV_LAYERS):
        raise ConfigError(f"conv channels must have {len(HUBERT_CONV_LAYERS)} entries, one per "
                          f"HuBERT conv layer; got {len(channels)}: {channels}")
    return tuple((c, k, s) for c, (k, s) in zip(channels, HUBERT_CONV_LAYERS, strict=True))


@dataclass
class HubertConfig:
    """A HuBERT model for masked prediction of k-means targets (torchaudio HuBERTPretrainModel)."""

    conv_layers: tuple[ConvLayerSpec, ...] = conv_layers_with_channels((512,) * 7)
    """Conv front end, (channels, kernel, stride) per layer; kernels/strides stay HuBERT's
    (``fbank``: the one pseudo layer of :func:`fbank_conv_layers`)."""
    extractor_mode: str = "group_norm"
    """``group_norm`` (one GroupNorm after conv 1, base), ``layer_norm`` (every conv, large) or
    ``fbank`` (no convs: stacked log-mel filterbanks, MelHuBERT)."""
    conv_bias: bool = False
    """Whether the conv layers have a bias term."""
    embed_dim: int = 768
    """Transformer width D (fairseq ``encoder_embed_dim``)."""
    projection_dropout: float = 0.1
    """Dropout after projecting conv features to ``embed_dim`` (fairseq ``dropout_input``)."""
    pos_conv_kernel: int = 128
    """Kernel of the convolutional positional embedding, in frames (fairseq ``conv_pos``)."""
    pos_conv_groups: int = 16
    """Groups of the convolutional positional embedding (fairseq ``conv_pos_groups``)."""
    num_layers: int = 12
    """Transformer layers N (an upstream returns N + 1 hidden states)."""
    num_heads: int = 12
    """Attention heads per layer."""
    ffn_dim: int = 3072
    """Hidden width of each feed-forward block (fairseq ``encoder_ffn_embed_dim``)."""
    layer_norm_first: bool = False
    """Pre-LN Transformer layers (large) instead of post-LN (base)."""
    attention_dropout: float = 0.1
    """Dropout on attention weights."""
    activation_dropout: float = 0.0
    """Dropout inside the feed-forward block, after its activation."""
    dropout: float = 0.1
    """Dropout on each sublayer's output and after the positional embedding."""
    layer_drop: float = 0.05
    """Probability of skipping each Transformer layer in training (LayerDrop)."""
    mask_prob: float = 0.8
    """Fraction of frames chosen as mask-span starts, times ``mask_length``; must be > 0."""
    mask_length: int = 10
    """Frames per masked span."""
    mask_channel_prob: float = 0.0
    """Probability of masking channel spans of the projected features (0 = off)."""
    mask_channel_length: int = 10
    """Channels per masked channel span."""
    num_classes: int = 100
    """Number of k-means clusters the labels come from."""
    final_dim: int = 256
    """Dimension of the projected outputs and label embeddings compared by cosine similarity."""
    feature_grad_mult: float | None = 0.1
    """Scale of the gradient reaching the conv front end, in (0, 1); None = unscaled."""

    def validate(self) -> HubertConfig:
        """Raise :class:`ConfigError` naming the field, rule and value of a bad setting."""
        self._validate_conv()
        self._validate_encoder()
        self._validate_masking()
        return self

    def _validate_conv(self) -> None:
        problem = front_end_problem(self.extractor_mode, self.conv_layers)
        _check(problem is None, str(problem))
        if self.extractor_mode == FBANK_MODE:
            return
        if any(len(layer) != 3 or min(layer) < 1 for layer in self.conv_layers):
            raise ConfigError(f"conv_layers must be (channels, kernel, stride) triples of "
                              f"positive ints; got {self.conv_layers}")
        kernels_strides = tuple((k, s) for _, k, s in self.conv_layers)
        _check(kernels_strides == HUBERT_CONV_LAYERS,
               f"conv_layers kernels/strides must be HuBERT's {HUBERT_CONV_LAYERS} (20 ms frames "
               f"that conv_frame_count and the k-means labels assume); got {kernels_strides}")

    def _validate_encoder(self) -> None:
        for name in ("embed_dim", "num_heads", "num_layers", "ffn_dim", "pos_conv_kernel",
                     "pos_conv_groups"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1; got {getattr(self, name)}")
        _check(self.embed_dim % self.num_heads == 0,
               f"embed_dim must be divisible by num_heads "
               f"({self.embed_dim} % {self.num_heads} = {self.embed_dim % self.num_heads})")
        _check(self.embed_dim % self.pos_conv_groups == 0,
               f"embed_dim must be divisible by pos_conv_groups "
               f"({self.embed_dim} % {self.pos_conv_groups} = "
               f"{self.embed_dim % self.pos_conv_groups})")
        for name in ("projection_dropout", "attention_dropout", "activation_dropout", "dropout",
                     "layer_drop"):
            _check(0.0 <= getattr(self, name) < 1.0,
                   f"{name} must be in [0, 1); got {getattr(self, name)}")

    def _validate_masking(self) -> None:
        _check(0.0 < self.mask_prob <= 1.0,
               f"mask_prob must be in (0, 1] (HuBERT predicts masked frames); got {self.mask_prob}")
        _check(0.0 <= self.mask_channel_prob <= 1.0,
               f"mask_channel_prob must be in [0, 1]; got {self.mask_channel_prob}")
        for name in ("mask_length", "mask_channel_length", "num_classes", "final_dim"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1; got {getattr(self, name)}")
        mult = self.feature_grad_mult
        _check(mult is None or 0.0 < mult < 1.0,
               f"feature_grad_mult must be None (no scaling) or in (0, 1); got {mult}")

    @property
    def conv_channels(self) -> int:
        """Channels of the last conv layer (the input width of the feature projection; the
        stacked fbank width for ``fbank``)."""
        return self.conv_layers[-1][0]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HubertConfig:
        """Rebuild a config from ``dataclasses.asdict`` output (lists become tuples); validated.

        Raises :class:`ConfigError` naming unknown keys.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown HubertConfig fields {unknown}; known: {sorted(known)}")
        args = dict(values)
        if "conv_layers" in args:
            args["conv_layers"] = tuple(tuple(layer) for layer in args["conv_layers"])
        return cls(**args).validate()


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def tiny() -> HubertConfig:
    """A 0.42 M-parameter HuBERT for tests and the demo (64-channel convs, 2 layers, D = 128)."""
    return HubertConfig(
        conv_layers=conv_layers_with_channels((64,) * 7), embed_dim=128, pos_conv_kernel=16,
        pos_conv_groups=4, num_layers=2, num_heads=2, ffn_dim=256, final_dim=64)


def tiny_fbank() -> HubertConfig:
    """The demo's teacher (0.88 M parameters): the fbank front end (MelHuBERT) instead of the
    conv stack, and the full size of the ``tiny_fbank`` LightHuBERT space (D = 128, 4 layers of
    4 heads, FFN 512), so stage 1 starts the supernet as an exact copy of it, as the real-size
    stage 1 starts from HuBERT Base. Twice as deep and wide as ``tiny``, it still trains 1.25x
    faster per step on one CPU thread (``python -m evals.bench_pretrain``: 69.9 vs 55.7
    audio-seconds per second), and after 300 steps of iteration 1 on the bundled corpus it
    predicts 13.0 % of the masked MFCC clusters where ``tiny`` predicts 5.4 %."""
    return replace(tiny(), conv_layers=fbank_conv_layers(80), extractor_mode=FBANK_MODE,
                   num_layers=4, num_heads=4, ffn_dim=512)


def base() -> HubertConfig:
    """HuBERT Base (95 M parameters), as torchaudio's ``hubert_pretrain_base()``."""
    return HubertConfig()


def large() -> HubertConfig:
    """HuBERT Large (317 M parameters), as torchaudio's ``hubert_pretrain_large()``."""
    return HubertConfig(
        extractor_mode="layer_norm", embed_dim=1024, projection_dropout=0.0, num_layers=24,
        num_heads=16, ffn_dim=4096, layer_norm_first=True, attention_dropout=0.0, dropout=0.0,
        layer_drop=0.0, num_classes=500, final_dim=768, feature_grad_mult=None)


PRESETS: dict[str, Callable[[], HubertConfig]] = {"tiny": tiny, "tiny_fbank": tiny_fbank,
                                                  "base": base, "large": large}
"""Preset functions by name, for registering in Hydra's ConfigStore (done in ``cli/``)."""
