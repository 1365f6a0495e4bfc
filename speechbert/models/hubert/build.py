"""Build torchaudio's HuBERT models from a :class:`HubertConfig`.

torchaudio owns the model code (:class:`~torchaudio.models.HuBERTPretrainModel` and its
:class:`~torchaudio.models.Wav2Vec2Model`); this module only maps our config onto its factory
arguments. The front end has its own builder because the LightHuBERT supernet shares it
unchanged (it is not elastic) while replacing the Transformer. torchaudio builds only conv
stacks; an ``fbank`` model is built with a stand-in conv layer of the fbank width (so the
feature projection gets its input size) whose place the fbank front end then takes.

Models are built on the default device in float32; move them with ``.to(device, dtype)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torchaudio.models
from torch import nn
from torchaudio.models import HuBERTPretrainModel, Wav2Vec2Model
from torchaudio.models.wav2vec2.components import _get_feature_extractor

from speechbert.models.hubert.config import HubertConfig
from speechbert.models.hubert.fbank_frontend import FBANK_MODE, build_fbank_front_end


def build_front_end(mode: str, conv_layers: Sequence[tuple[int, int, int]],
                    conv_bias: bool) -> nn.Module:
    """Waveforms (B, T) -> features (B, T', C) and frame lengths (B,): torchaudio's conv
    stack, or the fbank front end for ``mode="fbank"``."""
    layers = tuple(tuple(layer) for layer in conv_layers)
    if mode == FBANK_MODE:
        return build_fbank_front_end(layers)  # type: ignore[arg-type]
    return _get_feature_extractor(mode, [list(layer) for layer in layers], conv_bias)


def build_feature_extractor(cfg: HubertConfig) -> nn.Module:
    """The front end of ``cfg`` (see :func:`build_front_end`)."""
    cfg.validate()
    return build_front_end(cfg.extractor_mode, cfg.conv_layers, cfg.conv_bias)


def encoder_kwargs(cfg: HubertConfig) -> dict[str, Any]:
    """Our config as the arguments of ``torchaudio.models.wav2vec2_model`` (minus ``aux``)."""
    return {
        # fbank: a stand-in conv of the fbank width, replaced after building (module doc)
        "extractor_mode": "group_norm" if cfg.extractor_mode == FBANK_MODE else cfg.extractor_mode,
        "extractor_conv_layer_config": list(cfg.conv_layers),
        "extractor_conv_bias": cfg.conv_bias,
        "encoder_embed_dim": cfg.embed_dim,
        "encoder_projection_dropout": cfg.projection_dropout,
        "encoder_pos_conv_kernel": cfg.pos_conv_kernel,
        "encoder_pos_conv_groups": cfg.pos_conv_groups,
        "encoder_num_layers": cfg.num_layers,
        "encoder_num_heads": cfg.num_heads,
        "encoder_attention_dropout": cfg.attention_dropout,
        "encoder_ff_interm_features": cfg.ffn_dim,
        "encoder_ff_interm_dropout": cfg.activation_dropout,
        "encoder_dropout": cfg.dropout,
        "encoder_layer_norm_first": cfg.layer_norm_first,
        "encoder_layer_drop": cfg.layer_drop,
    }


def pretrain_kwargs(cfg: HubertConfig) -> dict[str, Any]:
    """Our config as the arguments of ``torchaudio.models.hubert_pretrain_model``.

    Settings we do not expose take the values torchaudio's base/large presets use (static
    spans that may overlap; logits for masked and unmasked frames).
    """
    return {
        **encoder_kwargs(cfg),
        "mask_prob": cfg.mask_prob,
        "mask_selection": "static",
        "mask_other": 0.0,
        "mask_length": cfg.mask_length,
        "no_mask_overlap": False,
        "mask_min_space": 1,
        "mask_channel_prob": cfg.mask_channel_prob,
        "mask_channel_selection": "static",
        "mask_channel_other": 0.0,
        "mask_channel_length": cfg.mask_channel_length,
        "no_mask_channel_overlap": False,
        "mask_channel_min_space": 1,
        "skip_masked": False,
        "skip_nomask": False,
        "num_classes": cfg.num_classes,
        "final_dim": cfg.final_dim,
        "feature_grad_mult": cfg.feature_grad_mult,
    }


def build_wav2vec2(cfg: HubertConfig) -> Wav2Vec2Model:
    """The encoder alone (conv front end + Transformer), for loading a teacher's weights into.

    Its weights keep PyTorch's default init; load a state dict before using it.
    """
    cfg.validate()
    model = torchaudio.models.wav2vec2_model(**encoder_kwargs(cfg), aux_num_out=None)
    if cfg.extractor_mode == FBANK_MODE:
        model.feature_extractor = build_feature_extractor(cfg)
    return model


def build_hubert_pretrain(cfg: HubertConfig) -> HuBERTPretrainModel:
    """The HuBERT pretraining model (encoder, mask generator, logit generator), HuBERT init.

    ``model.wav2vec2`` is the encoder that :class:`HubertUpstream` reads after training.
    """
    cfg.validate()
    model = torchaudio.models.hubert_pretrain_model(**pretrain_kwargs(cfg))
    if cfg.extractor_mode == FBANK_MODE:
        model.wav2vec2.feature_extractor = build_feature_extractor(cfg)
    return model
