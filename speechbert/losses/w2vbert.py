"""w2v-BERT pretraining loss: fairseq2's model run by its parts, the MLM term computed right.

fairseq2 0.8.1's ``W2VBertModel.forward`` crashes in its MLM cross-entropy: it reshapes the
logits to (M, V, G) and hands them to ``fairseq2.nn.functional.cross_entropy``, which expects
the class dimension last ("Expected input batch_size (M*V) to match target batch_size (M)").
:func:`w2vbert_forward` repeats that forward step by step (same layer hook, same quantizer,
same masking) and :func:`w2vbert_loss_terms` computes the MLM cross-entropy with the classes
last; the contrastive, diversity and feature-penalty terms are fairseq2's own
``Wav2Vec2Model.compute_loss``. With several target codebooks the MLM logits are read as
(G_t, V) per frame and the targets come from the first G_t codebooks (fairseq2 reads (V, G_t)
and slices ``num_codebooks``; both agree for its archs, which use G = G_t = 1).

On fbank input the feature penalty has no gradient (no learned feature extractor): it adds a
constant ~``features_penalty_weight`` per masked frame to the loss.

Normalisation: fairseq2 sums every term over the masked frames. We backpropagate
``sum * world_size / (masked frames summed over all ranks)``: DDP averages gradients over
ranks, so the update equals the gradient of (sum over ranks) / (global masked frames), i.e.
each masked frame weighs the same whichever rank it is on. Logged metrics are per masked
frame on this rank.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.distributed as dist
from fairseq2.models.w2vbert import W2VBertModel
from fairseq2.models.wav2vec2 import Wav2Vec2Masker, Wav2Vec2Output
from fairseq2.nn import BatchLayout
from fairseq2.nn.functional import cross_entropy
from torch import nn

from speechbert.audio import SAMPLE_RATE
from speechbert.data.collate import PretrainBatch
from speechbert.errors import ConfigError
from speechbert.losses.criterion import LossOutput
from speechbert.models.w2vbert.build import fbank_extractor, span_masker
from speechbert.models.w2vbert.config import min_masking_frames, samples_for_frames
from speechbert.nn.fbank import batched_fbank


@dataclass
class W2VBertLossConfig:
    """Weights of the w2v-BERT loss terms (defaults: fairseq2's ``W2VBertModel.forward``)."""

    bert_weight: float = 1.0
    """Weight of the masked-prediction (MLM) cross-entropy."""
    bert_label_smoothing: float = 0.0
    """fairseq-style label smoothing of the MLM cross-entropy (eps / (V - 1) per wrong class)."""
    w2v2_weight: float = 1.0
    """Weight of the whole wav2vec 2.0 part (contrastive + diversity + feature penalty)."""
    diversity_weight: float = 0.1
    """Weight of the codebook diversity loss inside the wav2vec 2.0 part."""
    features_penalty_weight: float = 10.0
    """Weight of the squared-feature penalty (a constant ~1 per frame on normalised fbank)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming each negative weight or bad smoothing value."""
        problems = [f"{name} must be >= 0 ({getattr(self, name)})"
                    for name in ("bert_weight", "w2v2_weight", "diversity_weight",
                                 "features_penalty_weight") if getattr(self, name) < 0]
        if not 0 <= self.bert_label_smoothing < 1:
            problems.append(
                f"bert_label_smoothing must be in [0, 1) ({self.bert_label_smoothing})")
        if problems:
            raise ConfigError("W2VBertLossConfig: " + "; ".join(problems))


@dataclass
class W2VBertForward:
    """What one w2v-BERT forward by parts produced (fairseq2's ``W2VBertOutput``, shaped)."""

    w2v2_output: Wav2Vec2Output
    """Contrastive logits (B, S_msk, 1 + distractors), quantizer output, raw features, mask;
    its ``encoder_output`` is the intermediate layer the contrastive module ends at."""
    bert_logits: torch.Tensor
    """MLM logits (B, S_msk, G_t * V), read as (B, S_msk, G_t, V)."""
    bert_targets: torch.Tensor
    """MLM targets (B, S_msk, G_t) int64: the quantizer's entry index per target codebook."""
    encoder_output: torch.Tensor
    """Last layer output (B, S, D), masked input frames included."""


@dataclass
class W2VBertLossTerms:
    """Each term summed over the masked frames of this rank, unweighted."""

    contrastive: torch.Tensor
    """Contrastive cross-entropy (target at candidate 0)."""
    diversity: torch.Tensor
    """(G V - prob_perplexity) / (G V), times the masked frames."""
    features_penalty: torch.Tensor
    """Mean squared raw feature, times the masked frames."""
    mlm: torch.Tensor
    """MLM cross-entropy over masked frames and target codebooks."""
    num_masked: int
    """Masked frames (contrastive targets) on this rank."""


def check_min_length(model: W2VBertModel, lengths: torch.Tensor) -> None:
    """Raise :class:`ConfigError` unless every row is long enough for fairseq2's masking."""
    masker = span_masker(model)
    frames = min_masking_frames(masker.temporal_span_len, masker.max_temporal_mask_prob,
                                masker.min_num_temporal_mask_spans)
    samples = samples_for_frames(frames, fbank_extractor(model).stride)
    shortest = int(lengths.min())
    if shortest < samples:
        raise ConfigError(
            f"w2v-BERT masking needs at least {frames} frames ({samples} samples, "
            f"{samples / SAMPLE_RATE:.2f} s) per utterance, but this batch has one of "
            f"{shortest} samples ({shortest / SAMPLE_RATE:.2f} s): raise the pretraining crop's "
            f"minimum duration, or lower mask_span / min_mask_spans")


def w2vbert_forward(model: W2VBertModel, wavs: torch.Tensor, lengths: torch.Tensor, *,
                    compile_quantizer: bool = False) -> W2VBertForward:
    """fairseq2's ``W2VBertModel.forward`` up to the loss, on raw waveforms.

    ``wavs`` (B, T) float 16 kHz zero-padded, ``lengths`` (B,). Computes the fbank
    (:func:`batched_fbank`), masks, runs the encoder with the same layer hook as fairseq2 (the
    contrastive module reads layer ``num_layers - num_bert_layers``), quantizes and contrasts,
    and projects the last layer's masked frames to MLM logits. Unless ``compile_quantizer``,
    it runs under ``torch.compiler.set_stance("force_eager")``, which skips the
    ``torch.compile`` fairseq2's Gumbel quantizer asks for (and any other in the model).
    """
    check_min_length(model, lengths)
    stance = (contextlib.nullcontext() if compile_quantizer
              else torch.compiler.set_stance("force_eager"))
    with stance:
        return _forward_by_parts(model, wavs, lengths)


def _forward_by_parts(model: W2VBertModel, wavs: torch.Tensor,
                      lengths: torch.Tensor) -> W2VBertForward:
    w2v2 = model.w2v2_model
    fbank, frames = batched_fbank(wavs, lengths, fbank_extractor(model).num_fbank_channels)
    features = w2v2.run_frontend(fbank, BatchLayout.of(fbank, frames.tolist()))

    def keep_contrast_input(layer_idx: int, layer_output: torch.Tensor,
                            layer_output_layout: BatchLayout, num_layers: int) -> bool:
        if layer_idx == num_layers - model.num_bert_encoder_layers - 1:
            features.seqs = layer_output  # (B, S, D)
        return True

    with w2v2.encoder.register_layer_hook(keep_contrast_input):
        encoder_output = w2v2.encoder(features.seqs, features.seqs_layout)  # (B, S, D)
    w2v2_output = w2v2.quantize_and_contrast(features)
    masked = Wav2Vec2Masker.extract_masked_elements(
        encoder_output, features.temporal_mask)  # (B, S_msk, D)
    bert_logits = model.final_bert_proj(masked)  # (B, S_msk, G_t * V)
    return W2VBertForward(w2v2_output, bert_logits, _bert_targets(model, w2v2_output),
                          encoder_output)


def _bert_targets(model: W2VBertModel, w2v2_output: Wav2Vec2Output) -> torch.Tensor:
    """Entry index of each masked frame in the first ``num_target_codebooks`` codebooks."""
    quantizer = model.w2v2_model.quantizer
    batch_size, num_masked = w2v2_output.logits.shape[:2]
    cb = w2v2_output.quantizer_output.cb.view(  # (B, S_msk, G, V) one-hot
        batch_size, num_masked, quantizer.num_codebooks, quantizer.num_codebook_entries)
    return cb.argmax(-1)[..., : model.num_target_codebooks].detach()  # (B, S_msk, G_t)


def w2vbert_loss_terms(model: W2VBertModel, out: W2VBertForward,
                       label_smoothing: float = 0.0) -> W2VBertLossTerms:
    """Sum of each loss term over the masked frames of ``out`` (MLM classes last)."""
    w2v2_loss = model.w2v2_model.compute_loss(out.w2v2_output)
    num_entries = model.w2v2_model.quantizer.num_codebook_entries
    mlm = cross_entropy(out.bert_logits.reshape(-1, num_entries).float(),  # (M G_t, V)
                        out.bert_targets.reshape(-1), pad_idx=None,  # (M G_t,)
                        label_smoothing=label_smoothing, reduction="sum")
    return W2VBertLossTerms(w2v2_loss.contrastive, w2v2_loss.diversity,
                            w2v2_loss.features_penalty, mlm, out.w2v2_output.num_targets)


def target_scale(num_targets: int, device: torch.device) -> torch.Tensor:
    """``world_size / (num_targets summed over ranks)``; ``1 / num_targets`` without DDP.

    Multiplying a rank's summed loss by it and letting DDP average the gradients gives the
    gradient of (total loss over all ranks) / (total targets). Every rank must call it once
    per step (it all-reduces when ``torch.distributed`` is initialised).
    """
    count = torch.tensor(float(num_targets), device=device)
    world_size = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        world_size = dist.get_world_size()
    return world_size / count.clamp_min(1.0)


class W2VBertCriterion:
    """Implements :class:`~speechbert.losses.criterion.PretrainCriterion` for w2v-BERT.

    Called with fairseq2's ``W2VBertModel`` and a :class:`PretrainBatch` (labels unused), it
    returns the weighted loss normalised per masked frame across ranks (module docstring)
    and per-frame metrics. ``compile_quantizer`` as in :func:`w2vbert_forward`.
    """

    def __init__(self, cfg: W2VBertLossConfig | None = None, *,
                 compile_quantizer: bool = False) -> None:
        self.cfg = cfg or W2VBertLossConfig()
        self.cfg.validate()
        self.compile_quantizer = compile_quantizer

    def __call__(self, model: nn.Module, batch: PretrainBatch) -> LossOutput:
        """Forward ``model`` on ``batch`` and return the normalised loss and metrics."""
        assert isinstance(model, W2VBertModel), (
            f"W2VBertCriterion needs fairseq2's W2VBertModel, got {type(model).__name__}")
        if len(batch) == 0:
            return self._empty_batch(model, batch.wavs.device)
        out = w2vbert_forward(model, batch.wavs, batch.lengths,
                              compile_quantizer=self.compile_quantizer)
        terms = w2vbert_loss_terms(model, out, self.cfg.bert_label_smoothing)
        scale = target_scale(terms.num_masked, batch.wavs.device)
        return LossOutput(loss=self.weighted_sum(terms) * scale,
                          metrics=w2vbert_metrics(out, terms), num_targets=terms.num_masked)

    def weighted_sum(self, terms: W2VBertLossTerms) -> torch.Tensor:
        """fairseq2's combination: ``bert_weight * mlm + w2v2_weight * (contrastive +
        diversity_weight * diversity + features_penalty_weight * features_penalty)``."""
        c = self.cfg
        w2v2 = (terms.contrastive + c.diversity_weight * terms.diversity
                + c.features_penalty_weight * terms.features_penalty)
        return c.bert_weight * terms.mlm + c.w2v2_weight * w2v2

    def _empty_batch(self, model: nn.Module, device: torch.device) -> LossOutput:
        """A B = 0 batch (all items skipped): zero loss still touching every parameter, so DDP
        finds gradients for all of them, and the same all-reduce as a real step."""
        scale = target_scale(0, device)
        zero = sum((p.sum() for p in model.parameters() if p.requires_grad),
                   torch.zeros((), device=device)) * 0.0
        return LossOutput(loss=zero * scale, metrics={}, num_targets=0)


def w2vbert_metrics(out: W2VBertForward, terms: W2VBertLossTerms) -> dict[str, torch.Tensor]:
    """Detached per-masked-frame values to log (this rank only)."""
    n = max(terms.num_masked, 1)
    quantizer_output = out.w2v2_output.quantizer_output
    device = out.bert_logits.device
    with torch.no_grad():
        mlm_hits = out.bert_logits.unflatten(-1, (out.bert_targets.shape[-1], -1)).argmax(-1)
        metrics = {
            "contrastive_loss": terms.contrastive / n,
            "diversity_loss": terms.diversity / n,
            "feature_penalty": terms.features_penalty / n,
            "mlm_loss": terms.mlm / out.bert_targets.numel(),
            "mlm_acc": (mlm_hits == out.bert_targets).float().mean(),
            "contrastive_acc": (out.w2v2_output.logits.argmax(-1) == 0).float().mean(),
            "code_perplexity": quantizer_output.code_perplexity,
            "prob_perplexity": quantizer_output.prob_perplexity,
            "gumbel_temperature": torch.tensor(float(quantizer_output.temperature),
                                               device=device),
            "num_masked": torch.tensor(float(terms.num_masked), device=device),
        }
    return {name: value.detach().float() for name, value in metrics.items()}
