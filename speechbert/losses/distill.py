"""LightHuBERT distillation: a masked student predicts the averaged layers of a teacher.

The default target is LightHuBERT's, from the maintainers' description of their training
(mechanicalsea/lighthubert issue #6: "we follow the data2vec method to extract the teacher's
representations ... the ``layer_result`` from the last 8 layers and then average them ... L1
loss for both training stages"). The paper (arXiv 2203.15610) gives neither the layers nor the
normalisation, and the repository ships the model but not the criterion, so the rest follows
data2vec, whose extraction the maintainers name:

- ``target_output="ffn"``: each teacher layer's ``layer_result``, fairseq's name for the output
  of the layer's feed-forward block before dropout and the residual add
  (``TransformerSentenceEncoderLayer.forward`` in fairseq/models/wav2vec/wav2vec2.py), taken
  here with a forward hook on torchaudio's ``feed_forward`` module of the teacher in eval mode.
- ``teacher_layers``: the last 8 (data2vec's ``average_top_k_layers: 8``, fairseq
  examples/data2vec/config/audio/pretraining/base_librispeech.yaml line 71).
- ``target_norm="instance_norm"``: each layer normalised per channel over time before the
  average (data2vec audio's ``instance_norm_target_layer: true``, line 70 of that file; it
  normalises over the
  padded row, we over the row's valid frames), no normalisation after it.
- masks: static spans of 10 frames with ``mask_prob`` 0.65, the defaults of LightHuBERT's model
  code (``LightHuBERTConfig.mask_prob`` / ``mask_length`` in lighthubert/lighthubert.py) and of
  data2vec audio (lines 64-65 of that file); the loss is taken on masked frames only
  (``masked_only``), as data2vec's is.
- prediction: one bias-free Linear from the student's last layer to the teacher's width
  (``layer_pred_heads`` with ``layer_pred_num = "0,...,0,1"`` in lighthubert/lighthubert.py).
- loss: L1 (the maintainers' answer); its reduction (here: mean over channels, then over
  masked frames) is not stated anywhere, so this is our choice.

The previous default, now an option, is ``target_output="hidden" target_norm="layer_norm"``: the
teacher's hidden states (each layer's output after its residual and LayerNorm) each layer-
normalised per frame, then averaged. ``cos_weight`` adds DistilHuBERT's ``-log sigmoid(cos)``
term (off by default: neither LightHuBERT nor data2vec uses it); ``masked_only=False`` adds the
unmasked valid frames. Normalisation is per rank (a mean over this rank's frames).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.models.wav2vec2.components import _compute_mask_indices

from speechbert.data.collate import AudioBatch
from speechbert.data.frames import conv_frame_count
from speechbert.errors import ConfigError
from speechbert.losses.criterion import LossOutput
from speechbert.models.lighthubert.space import SearchSpace
from speechbert.models.lighthubert.supernet import LightHubertSupernet, frame_padding_mask
from speechbert.models.upstream import Upstream, UpstreamOutput
from speechbert.nn.elastic import ElasticLinear, SubnetConfig

TARGET_NORMS = ("none", "layer_norm", "instance_norm")
"""Per-layer normalisations of the teacher's hidden states before they are averaged."""
TARGET_OUTPUTS = ("ffn", "hidden")
"""What each chosen teacher layer contributes: its feed-forward output before the residual
(fairseq's ``layer_result``, LightHuBERT / data2vec) or its output hidden state."""


@dataclass
class DistillLossConfig:
    """How teacher targets are built, where the student is scored, and the loss terms' weights."""

    teacher_layers: tuple[int, ...] = (-8, -7, -6, -5, -4, -3, -2, -1)
    """Teacher layers averaged into the target, numbered as its hidden states (1 = first layer,
    -1 = last; 0 = the first layer's input, ``hidden`` only); default the last 8 (LightHuBERT)."""
    target_output: str = "ffn"
    """``ffn``: each layer's feed-forward output before the residual (LightHuBERT, data2vec);
    ``hidden``: each layer's output hidden state."""
    target_norm: str = "instance_norm"
    """Normalisation of each chosen layer before averaging: ``instance_norm`` (per channel over
    the row's valid frames, data2vec), ``layer_norm`` (per frame, no affine) or ``none``."""
    masked_only: bool = True
    """Score masked frames only (data2vec; LightHuBERT does not say); False adds unmasked ones."""
    unmasked_weight: float = 1.0
    """Weight of the mean loss over unmasked frames when ``masked_only`` is False."""
    cos_weight: float = 0.0
    """Weight of DistilHuBERT's ``-log sigmoid(cos)`` term (DistilHuBERT uses 1; 0 = L1 only)."""
    mask_prob: float = 0.65
    """Fraction of frames chosen as span starts, times ``mask_length`` (LightHuBERT's model code
    and data2vec: 0.65; HuBERT pretraining uses 0.8)."""
    mask_length: int = 10
    """Frames per masked span."""

    def validate(self) -> DistillLossConfig:
        """Raise :class:`ConfigError` naming the field, rule and value of a bad setting."""
        _check(bool(self.teacher_layers), "teacher_layers must name at least one layer; got ()")
        _check(len(set(self.teacher_layers)) == len(self.teacher_layers),
               f"teacher_layers must be unique; got {self.teacher_layers}")
        _check(self.target_norm in TARGET_NORMS,
               f"target_norm must be one of {TARGET_NORMS}; got {self.target_norm!r}")
        _check(self.target_output in TARGET_OUTPUTS,
               f"target_output must be one of {TARGET_OUTPUTS}; got {self.target_output!r}")
        _check(self.target_output == "hidden" or 0 not in self.teacher_layers,
               "teacher_layers must not hold 0 with target_output='ffn' (hidden state 0 is the "
               "first layer's input, which has no feed-forward output); got "
               f"{self.teacher_layers}")
        _check(0.0 < self.mask_prob <= 1.0,
               f"mask_prob must be in (0, 1] (the student predicts masked frames); "
               f"got {self.mask_prob}")
        _check(self.mask_length >= 1, f"mask_length must be >= 1; got {self.mask_length}")
        for name in ("unmasked_weight", "cos_weight"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0; got {getattr(self, name)}")
        return self


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"DistillLossConfig.{message}")


@dataclass
class TeacherTargets:
    """Averaged teacher layers for one batch (computed once, reused by every sandwich subnet)."""

    targets: torch.Tensor
    """(B, T', D_t) normalised, averaged teacher hidden states (no gradient)."""
    lengths: torch.Tensor
    """Valid frames per row (B,) int64."""


class PredictionHead(nn.Module):
    """Bias-free Linear from the student's leading D channels to the teacher's D_t (LightHuBERT's
    ``layer_pred_heads``); a subnet of width D uses the first D input columns."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.teacher_dim = teacher_dim
        self.proj = ElasticLinear(student_dim, teacher_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) student states -> (B, T, D_t) predictions."""
        return self.proj(x, self.teacher_dim)


def normalise_layer(x: torch.Tensor, valid: torch.Tensor, mode: str) -> torch.Tensor:
    """Normalise one teacher layer ``x`` (B, T, D) as ``mode`` says; ``valid`` (B, T) frames."""
    if mode == "layer_norm":
        return F.layer_norm(x, x.shape[-1:])  # (B, T, D)
    if mode == "instance_norm":
        weight = valid[..., None].to(x.dtype)  # (B, T, 1)
        count = weight.sum(1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
        mean = (x * weight).sum(1, keepdim=True) / count  # (B, 1, D)
        var = ((x - mean) ** 2 * weight).sum(1, keepdim=True) / count  # (B, 1, D)
        return (x - mean) * torch.rsqrt(var + 1e-5)  # (B, T, D)
    return x


def teacher_layer_outputs(teacher: Upstream, wavs: torch.Tensor, lengths: torch.Tensor,
                          target_output: str) -> tuple[UpstreamOutput, list[torch.Tensor] | None]:
    """Run ``teacher`` on ``wavs`` (B, T); with ``target_output="ffn"`` also return each layer's
    feed-forward output (B, T', D) before the residual, caught by forward hooks on the
    ``feed_forward`` modules of a torchaudio HuBERT teacher (:class:`HubertUpstream`)."""
    if target_output == "hidden":
        return teacher(wavs, lengths), None
    model = getattr(teacher, "model", None)
    layers = getattr(getattr(getattr(model, "encoder", None), "transformer", None), "layers", None)
    if layers is None:
        raise ConfigError(f"DistillLossConfig.target_output='ffn' needs a HuBERT teacher (its "
                          f"feed-forward outputs); got a {type(teacher).__name__}; set "
                          f"loss.target_output=hidden to distil its hidden states")
    caught: list[torch.Tensor] = []
    handles = [layer.feed_forward.register_forward_hook(
        lambda _module, _args, output: caught.append(output)) for layer in layers]
    try:
        out = teacher(wavs, lengths)
    finally:
        for handle in handles:
            handle.remove()
    assert len(caught) == len(layers), "the teacher skipped layers (LayerDrop in train mode?)"
    return out, caught  # (B, T', D) each, layer order


def span_mask(lengths: torch.Tensor, num_frames: int, mask_prob: float,
              mask_length: int) -> torch.Tensor:
    """HuBERT's span mask (B, T) bool over the valid ``lengths`` (B,) frames (torch's global RNG;
    seed with ``torch.manual_seed`` for a fixed mask)."""
    padding = frame_padding_mask(lengths.cpu(), num_frames)  # (B, T)
    mask = _compute_mask_indices((lengths.numel(), num_frames), padding, mask_prob, mask_length,
                                 "static", 0.0, min_masks=2, no_overlap=False, min_space=1)
    return mask.to(lengths.device)  # (B, T)


class DistillCriterion(nn.Module):
    """The distillation loss; holds the trainable :class:`PredictionHead` (optimise it with the
    student). Teacher targets come from :meth:`teacher_targets`, once per batch."""

    def __init__(self, cfg: DistillLossConfig, head: PredictionHead) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        self.head = head

    def teacher_targets(self, teacher: Upstream, wavs: torch.Tensor,
                        lengths: torch.Tensor) -> TeacherTargets:
        """Average the normalised ``teacher_layers`` of ``teacher`` on ``wavs`` (B, T): their
        feed-forward outputs (``target_output="ffn"``) or hidden states (``"hidden"``)."""
        with torch.no_grad():
            out, ffn = teacher_layer_outputs(teacher, wavs, lengths, self.cfg.target_output)
        count = len(out.hidden_states)
        bad = [i for i in self.cfg.teacher_layers if not -count <= i < count]
        if bad:
            raise ConfigError(f"DistillLossConfig.teacher_layers must index the teacher's "
                              f"{count} hidden states (-{count}..{count - 1}); got {bad}")
        chosen = ([out.hidden_states[i] for i in self.cfg.teacher_layers] if ffn is None else
                  [ffn[i - 1 if i > 0 else i] for i in self.cfg.teacher_layers])
        valid = ~frame_padding_mask(out.lengths, out.hidden_states[0].shape[1])  # (B, T')
        layers = [normalise_layer(x.float(), valid, self.cfg.target_norm) for x in chosen]
        return TeacherTargets(targets=torch.stack(layers).mean(0), lengths=out.lengths)

    def make_mask(self, lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
        """A fresh span mask (B, T') for rows of ``lengths`` valid frames."""
        return span_mask(lengths, num_frames, self.cfg.mask_prob, self.cfg.mask_length)

    def forward(self, student: LightHubertSupernet, batch: AudioBatch, subnet: SubnetConfig,
                targets: TeacherTargets, mask: torch.Tensor | None = None) -> LossOutput:
        """Loss of ``student`` at ``subnet`` on ``batch``; ``mask`` (B, T') defaults to a fresh
        :meth:`make_mask` (pass one to score every sandwich subnet on the same frames)."""
        num_frames = targets.targets.shape[1]
        conv = tuple((kernel, stride) for _, kernel, stride in student.arch.conv_layers)
        student_frames = conv_frame_count(batch.wavs.shape[1], conv)
        if student_frames != num_frames:
            raise ConfigError(f"student and teacher frames differ ({student_frames} vs "
                              f"{num_frames} per row); their conv front ends must share "
                              f"kernels and strides")
        if mask is None:
            mask = self.make_mask(targets.lengths, num_frames)
        out = student(batch.wavs, batch.lengths, subnet, mask)
        assert torch.equal(out.lengths, targets.lengths.to(out.lengths.device))
        pred = self.head(out.hidden_states[-1]).float()  # (B, T', D_t)
        return self._score(pred, targets, mask)

    def _score(self, pred: torch.Tensor, targets: TeacherTargets,
               mask: torch.Tensor) -> LossOutput:
        """Per-frame L1 (+ cosine) averaged over masked (and unmasked) valid frames."""
        valid = ~frame_padding_mask(targets.lengths, pred.shape[1])  # (B, T')
        l1 = (pred - targets.targets).abs().mean(-1)  # (B, T')
        cos = F.cosine_similarity(pred, targets.targets, dim=-1)  # (B, T')
        per_frame = l1 + self.cfg.cos_weight * -F.logsigmoid(cos)  # (B, T')
        masked, unmasked = mask & valid, ~mask & valid  # (B, T')
        num_masked = int(masked.sum())
        loss = _masked_mean(per_frame, masked)
        metrics = {"l1": _masked_mean(l1, masked).detach(),
                   "cos": _masked_mean(cos, masked).detach(),
                   "num_masked": torch.tensor(float(num_masked), device=pred.device)}
        if not self.cfg.masked_only:
            unmasked_loss = _masked_mean(per_frame, unmasked)
            loss = loss + self.cfg.unmasked_weight * unmasked_loss
            metrics["unmasked_loss"] = unmasked_loss.detach()
        return LossOutput(loss=loss, metrics=metrics, num_targets=num_masked)


def _masked_mean(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, T) over ``where`` (B, T) True; 0 when nothing is selected."""
    weight = where.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def build_distill_criterion(cfg: DistillLossConfig, student_dim: int,
                            teacher_dim: int) -> DistillCriterion:
    """A criterion with a fresh prediction head from ``student_dim`` (the supernet's full width)
    to ``teacher_dim``."""
    return DistillCriterion(cfg, PredictionHead(student_dim, teacher_dim))


def sandwich_subnets(space: SearchSpace, rng: random.Random, sandwich: bool) -> list[SubnetConfig]:
    """Subnets to train at one optimizer step (on every rank and accumulated batch of it): one
    sampled from ``rng``, plus the largest and smallest when ``sandwich`` (BigNAS's sandwich
    rule; LightHuBERT's released model samples one subnet per forward pass)."""
    sampled = [space.sample(rng)]
    return sampled + [space.max_subnet(), space.min_subnet()] if sandwich else sampled
