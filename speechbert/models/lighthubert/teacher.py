"""A HuBERT teacher read as a LightHuBERT supernet: its front end, its Transformer geometry, and
the exact copy of its weights that starts stage 1.

Stage 1 starts the full-size student as a copy of the teacher. This is our recipe: the
LightHuBERT code and the maintainers' answers read here (mechanicalsea/lighthubert issues #4, #6)
do not say how their stage 1 was initialised. A copy is only a copy when both models are the same
network, so this module reads the teacher's front end (:func:`teacher_front_end`: which norm
follows which conv, or filterbanks) and Transformer geometry (:func:`teacher_geometry`) off the
torchaudio model itself, lists what differs from a supernet (:func:`geometry_mismatches`), and
copies by meaning (:func:`copy_teacher`): every tensor of the supernet must receive the
teacher's tensor of the same role and shape, or :class:`TeacherMismatchError` names the tensors,
their shapes and the front ends. The one exception is the mask embedding, which an encoder-only
teacher (fairseq, transformers, our ``.ckpt`` read by ``load_teacher``) does not carry: it keeps
its HuBERT initialisation and is reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torchaudio.models import Wav2Vec2Model
from torchaudio.models.wav2vec2.components import ConvLayerBlock

from speechbert.errors import ConfigError
from speechbert.models.hubert.config import ConvLayerSpec
from speechbert.models.hubert.fbank_frontend import FBANK_MODE, FbankFeatureExtractor
from speechbert.models.lighthubert.space import SupernetArch
from speechbert.models.lighthubert.supernet import LightHubertSupernet

FrontEnd = tuple[str, tuple[ConvLayerSpec, ...], bool]
"""(extractor_mode, conv_layers, conv_bias): what builds a front end."""

TEACHER_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"^mask_generator\.mask_embedding$", "mask_embedding"),
    (r"^feature_extractor\.(.+)$", r"feature_extractor.\1"),
    (r"^encoder\.feature_projection\.(.+)$", r"feature_projection.\1"),
    (r"^encoder\.transformer\.(.+)$", r"encoder.\1"),
)
"""torchaudio ``Wav2Vec2Model`` / ``HuBERTPretrainModel`` key -> supernet key (after removing the
pretraining model's ``wav2vec2.`` prefix); the supernet's module names mirror torchaudio's."""

PRETRAINING_ONLY = re.compile(r"^(logit_generator|aux)\.")
"""Teacher keys of HuBERT's pretraining heads, which a student has no use for."""

OPTIONAL_STUDENT_KEYS = ("mask_embedding",)
"""Supernet tensors an encoder-only teacher cannot fill (they keep their initialisation)."""


class TeacherMismatchError(ConfigError):
    """The teacher cannot be copied into the supernet (front end, geometry or tensors differ)."""


def teacher_front_end(model: Wav2Vec2Model) -> FrontEnd:
    """The front end of a torchaudio HuBERT ``model``: ``fbank``, or the conv stack with its
    norm layout (``group_norm``: a GroupNorm after conv 1 only; ``layer_norm``: after each)."""
    extractor = model.feature_extractor
    if isinstance(extractor, FbankFeatureExtractor):
        width = extractor.output_dim
        (kernel, stride), = extractor.frame_layers
        return FBANK_MODE, ((width, kernel, stride),), False
    blocks = [b for b in extractor.modules() if isinstance(b, ConvLayerBlock)]
    norms = [type(b.layer_norm).__name__ if b.layer_norm is not None else None for b in blocks]
    if norms[0] == "GroupNorm" and not any(norms[1:]):
        mode = "group_norm"
    elif all(n == "LayerNorm" for n in norms):
        mode = "layer_norm"
    else:
        raise TeacherMismatchError(f"teacher front end has norms {norms} after its convs, "
                                   f"neither HuBERT Base's (group_norm) nor Large's (layer_norm)")
    layers = tuple((b.conv.out_channels, b.kernel_size, b.stride) for b in blocks)
    return mode, layers, blocks[0].conv.bias is not None


def teacher_geometry(model: Wav2Vec2Model) -> dict[str, object]:
    """The teacher's Transformer as :class:`~speechbert.nn.elastic.ElasticEncoderConfig` fields."""
    transformer = model.encoder.transformer
    layer = transformer.layers[0]
    conv = transformer.pos_conv_embed.conv
    heads = layer.attention.num_heads
    return {
        "embed_dim": transformer.layer_norm.normalized_shape[0],
        "num_layers": len(transformer.layers),
        "num_heads": heads,
        "head_dim": layer.attention.head_dim,
        "ffn_dim": layer.feed_forward.intermediate_dense.out_features,
        "in_features": model.encoder.feature_projection.projection.in_features,
        "pos_conv_kernel": conv.kernel_size[0],
        "pos_conv_groups": conv.groups,
        "layer_norm_first": bool(layer.layer_norm_first),
    }


def geometry_mismatches(arch: SupernetArch, model: Wav2Vec2Model) -> list[str]:
    """``field: teacher X, supernet Y`` for each front-end or Transformer setting that differs."""
    out = []
    mode, layers, bias = teacher_front_end(model)
    front: tuple[tuple[str, object, object], ...] = (
        ("extractor_mode", mode, arch.extractor_mode),
        ("conv_layers", layers, tuple(arch.conv_layers)), ("conv_bias", bias, arch.conv_bias))
    for name, theirs, ours in front:
        if theirs != ours:
            out.append(f"{name}: teacher {theirs}, supernet {ours}")
    for name, theirs in teacher_geometry(model).items():
        ours = getattr(arch.encoder, name)
        if theirs != ours:
            out.append(f"encoder.{name}: teacher {theirs}, supernet {ours}")
    return out


@dataclass
class TeacherInitReport:
    """What :func:`copy_teacher` copied and what it left."""

    copied: list[str] = field(default_factory=list)
    """Supernet keys that received the teacher's tensor."""
    dropped: list[str] = field(default_factory=list)
    """Teacher keys of pretraining heads (``logit_generator``, ``aux``), not part of a student."""
    untouched: list[str] = field(default_factory=list)
    """Supernet keys the teacher has nothing for (only :data:`OPTIONAL_STUDENT_KEYS`)."""

    def summary(self) -> str:
        """One line: counts, the dropped pretraining heads and the untouched keys."""
        return (f"copied {len(self.copied)} tensors (every supernet tensor"
                f"{' but ' + ', '.join(self.untouched) if self.untouched else ''}); "
                f"dropped {len(self.dropped)} pretraining-head tensors")


def teacher_key(name: str) -> str | None:
    """The supernet key for a torchaudio HuBERT key, or None when the supernet has none."""
    name = name.removeprefix("wav2vec2.")
    for pattern, replacement in TEACHER_KEY_MAP:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name)
    return None


def copy_teacher(supernet: LightHubertSupernet, teacher: nn.Module,
                 source: str = "teacher") -> TeacherInitReport:
    """Make ``supernet`` at its full size an exact copy of ``teacher`` (a torchaudio
    ``Wav2Vec2Model`` or ``HuBERTPretrainModel``).

    Checks the front end and geometry first, then maps every teacher tensor by role; raises
    :class:`TeacherMismatchError` naming ``source``, the front ends, and each tensor that has no
    counterpart, differs in shape, or is left without a teacher tensor.
    """
    encoder = teacher.wav2vec2 if hasattr(teacher, "wav2vec2") else teacher
    problems = geometry_mismatches(supernet.arch, encoder)
    if problems:
        raise TeacherMismatchError(f"{source} is not the supernet's network, so stage 1 cannot "
                                   f"start as its copy: {'; '.join(problems)}")
    return _copy_state(supernet, teacher.state_dict(), source)


def _copy_state(supernet: LightHubertSupernet, state: Mapping[str, torch.Tensor],
                source: str) -> TeacherInitReport:
    report, target, errors = TeacherInitReport(), supernet.state_dict(), []
    with torch.no_grad():
        for name, value in state.items():
            key = teacher_key(name)
            if key is None and PRETRAINING_ONLY.match(name.removeprefix("wav2vec2.")):
                report.dropped.append(name)
            elif key is None or key not in target:
                errors.append(f"{name} {tuple(value.shape)} has no counterpart in the supernet")
            elif target[key].shape != value.shape:
                errors.append(f"{name} {tuple(value.shape)} != supernet {key} "
                              f"{tuple(target[key].shape)}")
            else:
                target[key].copy_(value)
                report.copied.append(key)
    copied = set(report.copied)
    report.untouched = [k for k in target if k not in copied]
    errors += [f"supernet {k} {tuple(target[k].shape)} gets no teacher tensor"
               for k in report.untouched if k not in OPTIONAL_STUDENT_KEYS]
    if errors:
        more = f" (+{len(errors) - 6} more)" if len(errors) > 6 else ""
        raise TeacherMismatchError(f"{source}: cannot copy the teacher into the supernet "
                                   f"({supernet.arch.extractor_mode} front end): "
                                   f"{'; '.join(errors[:6])}{more}")
    return report
