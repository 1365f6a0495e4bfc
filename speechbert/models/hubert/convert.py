"""Load HuBERT checkpoints as teachers: transformers folders, fairseq ``.pt`` files, our ``.ckpt``.

:func:`load_teacher` picks the loader from what the path is:

- a folder with ``config.json``: a transformers ``HubertModel``, imported with torchaudio's
  ``import_huggingface_model``;
- a ``.pt`` file: a fairseq HuBERT pretraining checkpoint; its state dict is renamed with the
  regex table :data:`FAIRSEQ_KEY_MAP` (torchaudio's ``import_fairseq_model`` needs fairseq
  itself, which we do not install) and its ``cfg`` / ``args`` become a :class:`HubertConfig`;
- a ``.ckpt`` file: our Lightning checkpoint, holding ``hyper_parameters.model_config``
  (``dataclasses.asdict(HubertConfig)``) and ``state_dict`` keys ``model.<HuBERTPretrainModel
  key>``.

Checkpoint files are read with ``torch.load(weights_only=True)``: the pickled config objects in
fairseq and Lightning files (omegaconf containers, ``argparse.Namespace``, fairseq dictionaries)
are not allowed there, so every such class is replaced by an inert :class:`OpaqueObject` that
only records its pickled arguments and state. No code named by the file ever runs.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from speechbert.errors import CheckpointError
from speechbert.models.hubert.build import build_wav2vec2
from speechbert.models.hubert.config import ConvLayerSpec, HubertConfig
from speechbert.models.hubert.upstream import HubertUpstream

FAIRSEQ_KEY_MAP: tuple[tuple[str, str | None], ...] = (
    # pretraining heads: not part of the encoder a teacher needs
    (r"mask_emb|label_embs_concat|final_proj\.(weight|bias)", None),
    # conv front end: GroupNorm after conv 0 (base), LayerNorm after every conv (large)
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)",
     r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)",
     r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",
     r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    # feature projection: layer norm, then linear
    (r"layer_norm\.(weight|bias)", r"encoder.feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"encoder.feature_projection.projection.\1"),
    # positional conv (weight norm: g = original0, v = original1) and the encoder's layer norm
    (r"encoder\.pos_conv\.0\.bias", r"encoder.transformer.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.weight_g",
     r"encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v",
     r"encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.transformer.layer_norm.\1"),
    # Transformer layers
    (r"encoder\.layers\.(\d+)\.self_attn\.(k_proj|v_proj|q_proj|out_proj)\.(weight|bias)",
     r"encoder.transformer.layers.\1.attention.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)",
     r"encoder.transformer.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)",
     r"encoder.transformer.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)",
     r"encoder.transformer.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)",
     r"encoder.transformer.layers.\1.final_layer_norm.\2"),
)
"""fairseq HuBERT key (full match) -> torchaudio ``Wav2Vec2Model`` key; None = dropped."""

LIGHTNING_PREFIX = "model.wav2vec2."
"""Prefix of the encoder's keys in our Lightning checkpoints' ``state_dict``."""


# ---------------------------------------------------------------- safe checkpoint reading


class OpaqueObject:
    """Stands in for a class a checkpoint names but we do not trust or import.

    Built by the restricted unpickler instead of the real class: keeps the constructor
    arguments (``args``), the pickled ``state`` and any items set on it (dict subclasses) and
    runs no code of the original.
    """

    qualname: ClassVar[str] = ""
    """Full name of the class it replaces, e.g. ``omegaconf.dictconfig.DictConfig``."""
    args: tuple[Any, ...]
    """Arguments the pickle called the class with (an enum member's value)."""
    state: Any
    """Pickled state: the instance ``__dict__`` (or a ``(dict, slots)`` pair); None if absent."""
    items: dict[Any, Any]
    """Items set on it, when the original was a dict subclass."""

    def __new__(cls, *args: Any, **kwargs: Any) -> OpaqueObject:
        """Record ``args`` (enum values, namedtuple fields) without calling anything."""
        obj = super().__new__(cls)
        obj.args, obj.state, obj.items = args, None, {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: ``__new__`` kept the arguments."""

    def __setstate__(self, state: Any) -> None:
        """Keep the pickled state (an instance ``__dict__`` or a ``(dict, slots)`` pair)."""
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        """Keep an item of a pickled dict subclass."""
        self.items[key] = value

    def __repr__(self) -> str:
        """``<opaque omegaconf.dictconfig.DictConfig>``."""
        return f"<opaque {self.qualname}>"


_PLAIN_GLOBALS: dict[str, Any] = {
    f"builtins.{t.__name__}": t for t in (dict, list, tuple, set, frozenset, int, float, str,
                                          bool, bytes, complex, slice)
} | {"collections.defaultdict": defaultdict}
"""Data-only classes checkpoints name (e.g. ``object_type=dict`` in omegaconf metadata)."""


def _stand_ins(path: Path) -> list[Callable[..., Any] | tuple[Callable[..., Any], str]]:
    """A harmless object for every global in ``path`` that torch's weights_only refuses."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path}: not a checkpoint written by torch.save ({exc})") from exc
    stand_ins: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = []
    for name in unsafe:
        plain = _PLAIN_GLOBALS.get(name)
        stub = plain or type(name.rsplit(".", 1)[-1], (OpaqueObject,), {"qualname": name})
        stand_ins.append((stub, name))
    return stand_ins


def load_checkpoint_file(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Read a ``torch.save`` file safely on the CPU: tensors as tensors, foreign classes opaque.
    With ``mmap`` the tensors stay on disk until touched (for reading only the metadata of a
    zip-format file).

    Raises :class:`CheckpointError` naming the file when it is missing or not a torch checkpoint.
    """
    src = Path(path)
    if not src.is_file():
        raise CheckpointError(f"{src}: checkpoint file not found")
    with torch.serialization.safe_globals(_stand_ins(src)):
        try:
            ckpt = torch.load(src, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as exc:  # pickle, zip and torch errors all mean "unreadable"
            raise CheckpointError(f"{src}: cannot read the checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{src}: expected a checkpoint dict, found {type(ckpt).__name__}")
    return ckpt


def plain_data(obj: Any) -> Any:
    """Turn opaque config objects into dicts/lists/values (omegaconf containers and nodes,
    ``argparse.Namespace``, enum members); tensors and plain values pass through."""
    if isinstance(obj, OpaqueObject):
        return plain_data(_opaque_value(obj))
    if isinstance(obj, Mapping):
        return {key: plain_data(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain_data(value) for value in obj]
    return obj


def _opaque_value(obj: OpaqueObject) -> Any:
    state = obj.state
    if isinstance(state, tuple) and len(state) == 2:  # (__dict__, slots)
        state = {**(state[0] or {}), **(state[1] or {})}
    if isinstance(state, dict):
        if "_content" in state:  # omegaconf DictConfig / ListConfig
            return state["_content"]
        if "_val" in state:  # omegaconf value node
            return state["_val"]
        public = {key: value for key, value in state.items() if not key.startswith("_")}
        return public | obj.items  # argparse.Namespace, plain objects, dict subclasses
    if obj.items:
        return dict(obj.items)
    return obj.args[0] if len(obj.args) == 1 else None  # enum member: its value


# ---------------------------------------------------------------- fairseq


def map_fairseq_key(key: str) -> str | None:
    """torchaudio key of a fairseq HuBERT key, None for pretraining heads; else CheckpointError."""
    for pattern, replacement in FAIRSEQ_KEY_MAP:
        if re.fullmatch(pattern, key):
            return None if replacement is None else re.sub(pattern, replacement, key)
    raise CheckpointError(f"unexpected fairseq HuBERT key {key!r}: not in FAIRSEQ_KEY_MAP (only "
                      f"pretrained HuBERT checkpoints are supported, not fine-tuned ones)")


def convert_fairseq_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A fairseq HuBERT state dict renamed to torchaudio ``Wav2Vec2Model`` keys."""
    converted = {}
    for key, value in state.items():
        new_key = map_fairseq_key(key)
        if new_key is not None:
            converted[new_key] = value
    return converted


def parse_conv_feature_layers(spec: str) -> tuple[ConvLayerSpec, ...]:
    """fairseq's ``conv_feature_layers`` string, e.g. ``"[(512,10,5)] * 2 + [(512,3,2)]"``.

    Evaluated as a tree of list/tuple literals, ``+`` and ``*`` only (never ``eval``).
    """
    try:
        value = _literal(ast.parse(spec, mode="eval").body)
        return tuple((int(c), int(k), int(s)) for c, k, s in value)
    except (SyntaxError, TypeError, ValueError) as exc:
        raise CheckpointError(f"conv_feature_layers {spec!r} is not a list of (channels, kernel, "
                          f"stride) tuples ({exc})") from exc


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(element) for element in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        left, right = _literal(node.left), _literal(node.right)
        return left + right if isinstance(node.op, ast.Add) else left * right
    raise ValueError(f"unsupported expression {ast.dump(node)}")


FAIRSEQ_DEFAULTS: dict[str, Any] = {
    "extractor_mode": "default", "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + "
    "[(512,2,2)] * 2", "conv_bias": False, "encoder_embed_dim": 768, "dropout_input": 0.0,
    "conv_pos": 128, "conv_pos_groups": 16, "encoder_layers": 12, "encoder_attention_heads": 12,
    "attention_dropout": 0.1, "encoder_ffn_embed_dim": 3072, "activation_dropout": 0.0,
    "dropout": 0.1, "layer_norm_first": False, "encoder_layerdrop": 0.0, "mask_prob": 0.65,
    "mask_length": 10, "mask_channel_prob": 0.0, "mask_channel_length": 10, "final_dim": 0,
    "feature_grad_mult": 1.0, "activation_fn": "gelu", "layer_type": "transformer",
    "pos_conv_depth": 1,
}
"""fairseq ``HubertConfig`` defaults, for fields an older checkpoint does not store."""


def fairseq_model_config(ckpt: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The model settings of a fairseq checkpoint (``cfg["model"]``, or legacy ``args``)."""
    cfg = plain_data(ckpt.get("cfg"))
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model_cfg, dict):
        model_cfg = plain_data(ckpt.get("args"))
    if not isinstance(model_cfg, dict):
        raise CheckpointError(f"{source}: no model config (neither cfg['model'] nor args); is it a "
                          f"fairseq checkpoint?")
    return {**FAIRSEQ_DEFAULTS, **{k: v for k, v in model_cfg.items() if v is not None}}


def hubert_config_from_fairseq(model_cfg: Mapping[str, Any], num_classes: int,
                               source: str) -> HubertConfig:
    """Our :class:`HubertConfig` for fairseq HuBERT settings; CheckpointError if unsupported."""
    for key, supported in (("activation_fn", "gelu"), ("layer_type", "transformer"),
                           ("pos_conv_depth", 1)):
        if model_cfg[key] != supported:
            raise CheckpointError(f"{source}: fairseq {key}={model_cfg[key]!r} is not supported "
                              f"(torchaudio's HuBERT needs {supported!r})")
    grad_mult = float(model_cfg["feature_grad_mult"])
    return HubertConfig(
        conv_layers=parse_conv_feature_layers(model_cfg["conv_feature_layers"]),
        extractor_mode="group_norm" if model_cfg["extractor_mode"] == "default" else "layer_norm",
        conv_bias=bool(model_cfg["conv_bias"]), embed_dim=model_cfg["encoder_embed_dim"],
        projection_dropout=model_cfg["dropout_input"], pos_conv_kernel=model_cfg["conv_pos"],
        pos_conv_groups=model_cfg["conv_pos_groups"], num_layers=model_cfg["encoder_layers"],
        num_heads=model_cfg["encoder_attention_heads"],
        ffn_dim=model_cfg["encoder_ffn_embed_dim"],
        layer_norm_first=bool(model_cfg["layer_norm_first"]),
        attention_dropout=model_cfg["attention_dropout"],
        activation_dropout=model_cfg["activation_dropout"], dropout=model_cfg["dropout"],
        layer_drop=model_cfg["encoder_layerdrop"], mask_prob=model_cfg["mask_prob"],
        mask_length=model_cfg["mask_length"], mask_channel_prob=model_cfg["mask_channel_prob"],
        mask_channel_length=model_cfg["mask_channel_length"], num_classes=num_classes,
        final_dim=model_cfg["final_dim"] or model_cfg["encoder_embed_dim"],
        feature_grad_mult=grad_mult if 0.0 < grad_mult < 1.0 else None,
    ).validate()


def load_fairseq_checkpoint(path: str | Path) -> HubertUpstream:
    """A fairseq HuBERT pretraining checkpoint (``.pt``) as an upstream."""
    ckpt = load_checkpoint_file(path)
    state = ckpt.get("model")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: no 'model' state dict; is it a fairseq checkpoint?")
    labels = state.get("label_embs_concat")
    num_classes = labels.shape[0] if isinstance(labels, torch.Tensor) else 100
    cfg = hubert_config_from_fairseq(fairseq_model_config(ckpt, str(path)), num_classes,
                                     str(path))
    return _upstream_from_state(cfg, convert_fairseq_state_dict(state), str(path))


def _upstream_from_state(cfg: HubertConfig, state: Mapping[str, torch.Tensor],
                         source: str) -> HubertUpstream:
    model = build_wav2vec2(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: weights do not fit the model its config describes "
                          f"({exc})") from exc
    return HubertUpstream(model)


# ---------------------------------------------------------------- transformers


def load_hf_folder(folder: str | Path) -> HubertUpstream:
    """A transformers ``HubertModel`` folder (``config.json`` + weights), offline."""
    import transformers  # heavy; only this loader needs it
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    src = Path(folder)
    try:
        config = transformers.AutoConfig.from_pretrained(src, local_files_only=True)
        _check_hf_config(config, src)
        original = transformers.HubertModel.from_pretrained(src, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{src}: cannot load it as a transformers HubertModel ({exc})") from exc
    return HubertUpstream(import_huggingface_model(original.eval()))


def _check_hf_config(config: Any, src: Path) -> None:
    """Raise CheckpointError for HF settings torchaudio's Wav2Vec2Model cannot represent."""
    unsupported = {
        "model_type": (config.model_type, "hubert"),
        "hidden_act": (config.hidden_act, "gelu"),
        "feat_extract_activation": (config.feat_extract_activation, "gelu"),
        "feat_proj_layer_norm": (getattr(config, "feat_proj_layer_norm", True), True),
        "conv_pos_batch_norm": (getattr(config, "conv_pos_batch_norm", False), False),
    }
    for name, (value, needed) in unsupported.items():
        if value != needed:
            raise CheckpointError(f"{src}/config.json: {name}={value!r} is not supported "
                                  f"(torchaudio's HuBERT needs {needed!r})")


# ---------------------------------------------------------------- ours


def load_hubert_checkpoint(path: str | Path) -> HubertUpstream:
    """Our Lightning checkpoint (``.ckpt``) of a HuBERT pretraining run as an upstream.

    Reads ``hyper_parameters["model_config"]`` (``dataclasses.asdict(HubertConfig)``) and the
    ``state_dict`` entries under ``model.wav2vec2.``.
    """
    ckpt = load_checkpoint_file(path)
    hparams = plain_data(ckpt.get("hyper_parameters") or {})
    if not isinstance(hparams, dict) or "model_config" not in hparams:
        raise CheckpointError(f"{path}: no hyper_parameters['model_config']; not a speechbert "
                              "HuBERT checkpoint")
    cfg = HubertConfig.from_dict(hparams["model_config"])
    state = ckpt.get("state_dict") or {}
    encoder = {k[len(LIGHTNING_PREFIX):]: v for k, v in state.items()
               if k.startswith(LIGHTNING_PREFIX)}
    return _upstream_from_state(cfg, encoder, str(path))


def load_teacher(path: str | Path) -> HubertUpstream:
    """Load any supported HuBERT checkpoint, chosen by what ``path`` is (see the module doc)."""
    src = Path(path)
    if src.is_dir():
        if (src / "config.json").is_file():
            return load_hf_folder(src)
        raise CheckpointError(f"{src}: folder without config.json; a transformers HubertModel "
                          f"folder (save_pretrained) is expected")
    if not src.exists():
        raise CheckpointError(f"{src}: teacher checkpoint not found")
    if src.suffix == ".pt":
        return load_fairseq_checkpoint(src)
    if src.suffix == ".ckpt":
        return load_hubert_checkpoint(src)
    raise CheckpointError(f"{src}: unknown teacher format; expected a transformers folder with "
                      f"config.json, a fairseq .pt file or a speechbert .ckpt file")
