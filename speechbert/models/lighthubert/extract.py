"""Cut a subnet out of a supernet as a standalone :class:`DenseEncoder`; save, load, export to HF.

:func:`extract_subnet` copies exactly the weights the elastic modules use at that subnet (leading
rows/columns, first heads, FFN units per chunk, the positional conv's effective weight) into a
dense model whose hidden states equal the supernet's at that subnet (a test holds them to 1e-5).

The positional conv stays weight-normed (as torchaudio's and transformers' are) with
``v = W`` and ``g = ||W||`` over dims 0, 1, where ``W`` is the supernet's *effective* sliced
weight: the product is ``W`` up to rounding, and the dense model trains like the original.

Checkpoints (:func:`save_dense` / :func:`load_dense`) are plain ``torch.save`` dicts readable with
``weights_only=True``: ``{"format", "version", "config": <JSON text>, "state_dict"}``.
:func:`export_hf` writes a transformers ``HubertModel`` folder for subnets HF can represent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from speechbert.errors import CheckpointError, ConfigError
from speechbert.models.hubert.fbank_frontend import FBANK_MODE
from speechbert.models.lighthubert.dense import (
    DenseEncoder,
    DenseEncoderConfig,
    build_dense_encoder,
    weight_norm_parts,
)
from speechbert.models.lighthubert.supernet import LightHubertSupernet
from speechbert.nn.elastic import ElasticEncoderLayer, SubnetConfig, ffn_units

CHECKPOINT_FORMAT = "speechbert.lighthubert.dense_encoder"
"""Value of the ``format`` key of a dense-encoder checkpoint."""
CHECKPOINT_VERSION = 1
"""Version of the checkpoint layout written by :func:`save_dense`."""

__all__ = ["DenseEncoder", "DenseEncoderConfig", "export_hf", "extract_subnet", "load_dense",
           "save_dense", "subnet_state_dict"]

Tensors = dict[str, torch.Tensor]


def _layer_state(layer: ElasticEncoderLayer, prefix: str, width: int, heads: int,
                 ffn_dim: int, chunk: int | None) -> Tensors:
    """Dense weights of one elastic layer at (width, heads, ffn_dim), torchaudio names."""
    attention_width = heads * layer.attention.head_dim
    units = ffn_units(ffn_dim, width, chunk)
    parts = {
        "attention.q_proj": (layer.attention.q_proj, width, attention_width),
        "attention.k_proj": (layer.attention.k_proj, width, attention_width),
        "attention.v_proj": (layer.attention.v_proj, width, attention_width),
        "attention.out_proj": (layer.attention.out_proj, attention_width, width),
        "feed_forward.intermediate_dense": (layer.feed_forward.intermediate_dense, width, units),
        "feed_forward.output_dense": (layer.feed_forward.output_dense, units, width),
    }
    state: Tensors = {}
    for name, (linear, in_units, out_units) in parts.items():
        weight, bias = linear.sliced_parameters(in_units, out_units)
        assert bias is not None
        state[f"{prefix}{name}.weight"], state[f"{prefix}{name}.bias"] = weight, bias
    for name in ("layer_norm", "final_layer_norm"):
        norm = getattr(layer, name)
        state[f"{prefix}{name}.weight"] = norm.weight[:width]
        state[f"{prefix}{name}.bias"] = norm.bias[:width]
    return state


def _front_state(supernet: LightHubertSupernet, width: int) -> Tensors:
    """Dense weights of the conv front end, feature projection and mask embedding."""
    state = {f"model.feature_extractor.{k}": v
             for k, v in supernet.feature_extractor.state_dict().items()}
    projection = supernet.feature_projection
    weight, bias = projection.projection.sliced_parameters(projection.projection.in_features,
                                                           width)
    assert bias is not None
    prefix = "model.encoder.feature_projection."
    state[f"{prefix}layer_norm.weight"] = projection.layer_norm.weight
    state[f"{prefix}layer_norm.bias"] = projection.layer_norm.bias
    state[f"{prefix}projection.weight"], state[f"{prefix}projection.bias"] = weight, bias
    if supernet.mask_embedding is not None:
        state["mask_embedding"] = supernet.mask_embedding[:width]
    return state


def _positional_state(supernet: LightHubertSupernet, width: int) -> Tensors:
    """The positional conv's effective sliced weight as weight-norm (g, v), its bias, the LN."""
    pos = supernet.encoder.pos_conv_embed
    weight = pos.conv.weight[:width, : width // pos.groups]  # (D, D / groups, K)
    g, v = weight_norm_parts(weight)
    prefix = "model.encoder.transformer."
    return {f"{prefix}pos_conv_embed.conv.parametrizations.weight.original0": g,
            f"{prefix}pos_conv_embed.conv.parametrizations.weight.original1": v,
            f"{prefix}pos_conv_embed.conv.bias": pos.conv.bias[:width],
            f"{prefix}layer_norm.weight": supernet.encoder.layer_norm.weight[:width],
            f"{prefix}layer_norm.bias": supernet.encoder.layer_norm.bias[:width]}


def subnet_state_dict(supernet: LightHubertSupernet, subnet: SubnetConfig) -> Tensors:
    """The weights ``subnet`` uses, as a :class:`DenseEncoder` state dict (detached copies)."""
    supernet.arch.check_subnet(subnet)
    enc = supernet.encoder.config
    width = subnet.embed_dim
    state = {**_front_state(supernet, width), **_positional_state(supernet, width)}
    kept = enc.kept_layers(subnet.depth)
    for i, (index, heads, ffn_dim) in enumerate(zip(kept, subnet.heads, subnet.ffn_dims,
                                                    strict=True)):
        layer = supernet.encoder.layers[index]
        assert isinstance(layer, ElasticEncoderLayer)
        state.update(_layer_state(layer, f"model.encoder.transformer.layers.{i}.", width,
                                  heads, ffn_dim, enc.ffn_chunk))
    return {k: v.detach().clone() for k, v in state.items()}


def extract_subnet(supernet: LightHubertSupernet, subnet: SubnetConfig) -> DenseEncoder:
    """A standalone dense encoder equal to ``supernet`` at ``subnet``.

    Placed on the supernet's device and dtype, in the supernet's train/eval mode.
    """
    model = build_dense_encoder(DenseEncoderConfig.from_supernet(supernet.arch, subnet))
    reference = next(supernet.parameters())
    model.to(device=reference.device, dtype=reference.dtype)
    model.load_state_dict(subnet_state_dict(supernet, subnet), strict=True)
    return model.train(supernet.training)


def save_dense(model: DenseEncoder, path: str | Path) -> Path:
    """Write ``model`` as a self-describing checkpoint (config JSON + state dict); return path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }, target)
    return target


def load_dense(path: str | Path) -> DenseEncoder:
    """Rebuild a :func:`save_dense` checkpoint (no supernet needed), on the CPU, in eval mode.

    Read with ``torch.load(weights_only=True)``; :class:`CheckpointError` names the file and what is
    wrong with it.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"{source}: dense encoder checkpoint not found")
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source}: not a dense encoder checkpoint (format must be "
                          f"{CHECKPOINT_FORMAT!r}); write one with save_dense")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{source}: checkpoint version {ckpt.get('version')!r} is not "
                          f"{CHECKPOINT_VERSION}, the one this speechbert reads")
    config = DenseEncoderConfig.from_dict(json.loads(ckpt["config"]), str(source))
    model = build_dense_encoder(config)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: weights do not fit the config it holds ({exc})") from exc
    return model.eval()


HF_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"^mask_embedding$", "masked_spec_embed"),
    (r"^model\.feature_extractor\.", "feature_extractor."),
    (r"^model\.encoder\.feature_projection\.", "feature_projection."),
    (r"^model\.encoder\.transformer\.", "encoder."),
)
"""DenseEncoder key -> transformers ``HubertModel`` key (the rest of each name is shared)."""


def hf_state_dict(model: DenseEncoder) -> Tensors:
    """``model``'s weights under transformers ``HubertModel`` names."""
    state: Tensors = {}
    for key, value in model.state_dict().items():
        for pattern, replacement in HF_KEY_MAP:
            if re.match(pattern, key):
                state[re.sub(pattern, replacement, key)] = value
                break
        else:
            raise AssertionError(f"no HF name for {key}")
    return state


def _check_hf_representable(config: DenseEncoderConfig) -> None:
    """Raise ConfigError if transformers' HubertModel cannot hold these sizes, saying why."""
    if config.extractor_mode == FBANK_MODE:
        raise ConfigError("export_hf needs a conv front end: transformers' HubertModel reads "
                          "waveforms through convs and has no filterbank front end (this model "
                          "has extractor_mode='fbank'). Save it with save_dense instead")
    if len(set(config.heads)) > 1 or len(set(config.ffn_dims)) > 1:
        raise ConfigError(f"export_hf needs a uniform subnet (the same heads and FFN units in "
                          f"every layer): transformers' HubertConfig has one num_attention_heads "
                          f"and one intermediate_size; got heads {config.heads}, ffn_dims "
                          f"{config.ffn_dims}. Save it with save_dense instead")
    if config.heads[0] * config.head_dim != config.embed_dim:
        raise ConfigError(f"export_hf needs heads x head_dim == embed_dim (transformers' HuBERT "
                          f"ties the head width to hidden_size / num_attention_heads); got "
                          f"{config.heads[0]} x {config.head_dim} != {config.embed_dim}. Save it "
                          f"with save_dense instead")


def hf_config_kwargs(config: DenseEncoderConfig) -> dict[str, Any]:
    """``transformers.HubertConfig`` arguments for ``config`` (checked representable)."""
    _check_hf_representable(config)
    channels, kernels, strides = zip(*config.conv_layers, strict=True)
    return {
        "hidden_size": config.embed_dim, "num_hidden_layers": config.depth,
        "num_attention_heads": config.heads[0], "intermediate_size": config.ffn_dims[0],
        "hidden_act": "gelu", "hidden_dropout": config.dropout,
        "activation_dropout": config.activation_dropout,
        "attention_dropout": config.attention_dropout,
        "feat_proj_dropout": config.projection_dropout, "feat_proj_layer_norm": True,
        "layerdrop": 0.0, "layer_norm_eps": config.layer_norm_eps,
        "feat_extract_norm": "group" if config.extractor_mode == "group_norm" else "layer",
        "feat_extract_activation": "gelu", "conv_dim": list(channels),
        "conv_kernel": list(kernels), "conv_stride": list(strides),
        "conv_bias": config.conv_bias, "num_conv_pos_embeddings": config.pos_conv_kernel,
        "num_conv_pos_embedding_groups": config.pos_conv_groups, "conv_pos_batch_norm": False,
        "do_stable_layer_norm": config.layer_norm_first,
        "mask_time_prob": 0.05 if config.mask_embedding else 0.0,  # HF keeps the embedding iff > 0
    }


def export_hf(model: DenseEncoder, folder: str | Path) -> Path:
    """Write ``model`` as a transformers ``HubertModel`` folder (config.json + weights).

    Only uniform subnets whose heads x head_dim equal the width can be represented; others raise
    :class:`ConfigError` saying why. Returns the folder.
    """
    import transformers  # heavy; only the export needs it

    hf_config = transformers.HubertConfig(**hf_config_kwargs(model.config))
    hf_model = transformers.HubertModel(hf_config)
    hf_model.load_state_dict(hf_state_dict(model), strict=True)
    target = Path(folder)
    hf_model.save_pretrained(target)
    return target
