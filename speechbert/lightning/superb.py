"""SUPERB heads trained on cached features of a frozen upstream: task configs and modules.

Every module holds the learnable weighted layer sum (:class:`Featurizer`) and a task head, and
trains them on :class:`~speechbert.lightning.superb_data.SuperbBatch` es of cached hidden
states (the upstream never runs here):

* :class:`AsrModule`: BiLSTM + CTC, greedy decoding; the dev WER picks the checkpoint (ties
  broken by the dev CER: ``val/wer_then_cer``), ``test/wer`` and ``test/cer`` are reported.
* :class:`KsModule`: mean-pooled classifier, cross-entropy, class-balanced sampling (set by the
  data module); ``val/acc`` picks the checkpoint, ``test/acc`` is reported.
* :class:`SvModule`: x-vector trained with AM-softmax over the training speakers; the test
  utterances' embeddings are scored on the trial list by cosine, giving ``test/eer`` and
  ``test/min_dcf``.

Optimisation is AdamW with the pretraining stage's warm-up/decay schedule
(:class:`~speechbert.lightning.pretrain.OptimConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F

from speechbert.data.text import CharVocab
from speechbert.errors import ConfigError, ManifestError
from speechbert.lightning.pretrain import OptimConfig, adamw_with_schedule
from speechbert.lightning.superb_data import SuperbBatch
from speechbert.losses.aam_softmax import AMSoftmaxLoss
from speechbert.metrics import accuracy, cer, eer, min_dcf, wer
from speechbert.models.heads import asr, ks, sv
from speechbert.models.heads.asr import AsrHead, AsrHeadConfig, ctc_loss, greedy_decode
from speechbert.models.heads.featurizer import Featurizer
from speechbert.models.heads.ks import KsHead, KsHeadConfig
from speechbert.models.heads.sv import XvectorConfig, XvectorHead, cosine_scores

MINI = "data/mini/manifests/"
"""Manifest folder of the bundled corpus (the defaults of the task configs)."""


def head_optim(lr: float, max_steps: int, warmup_steps: int) -> OptimConfig:
    """AdamW for a head: no weight decay, linear warm-up then linear decay to zero."""
    return OptimConfig(lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                       warmup_steps=warmup_steps, max_steps=max_steps)


@dataclass
class TaskConfig:
    """What every SUPERB task has: its splits, batching, optimizer and validation cadence."""

    name: str = "task"
    """Task name in run folders and results: asr, ks or sv."""
    train_manifest: str = ""
    """Training manifest (TSV), relative to the working directory."""
    valid_manifest: str | None = None
    """Dev manifest whose metric picks the checkpoint; None trains to the end and uses it."""
    test_manifest: str = ""
    """Test manifest the result is measured on."""
    batch_size: int = 16
    """Training utterances per batch."""
    eval_batch_size: int = 32
    """Utterances per validation and test batch."""
    optim: OptimConfig = field(default_factory=lambda: head_optim(1e-3, 1000, 50))
    """AdamW and schedule; ``optim.max_steps`` ends training."""
    val_every_n_steps: int = 100
    """Training steps between dev evaluations (and checkpoints)."""
    layer_norm: bool = False
    """Normalise each layer before the weighted sum (s3prl's ``upstream_feature_normalize``)."""
    cache_batch_size: int = 8
    """Utterances per upstream call when computing the feature cache (sorted by length)."""
    cache_fp16: bool = True
    """Store cached features as float16 (half the disk; heads compute in float32)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        self.optim.validate()
        for name in ("batch_size", "eval_batch_size", "val_every_n_steps", "cache_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"task.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_manifest", "test_manifest"):
            if not getattr(self, name):
                raise ConfigError(f"task.{name} must be a manifest path, got empty")


@dataclass
class AsrTaskConfig(TaskConfig):
    """Character CTC ASR on LibriSpeech-style manifests (a ``text`` column); metric WER."""

    name: str = "asr"
    """Task name."""
    train_manifest: str = MINI + "librispeech/train-clean-100.tsv"
    """Training manifest."""
    valid_manifest: str | None = MINI + "librispeech/dev-clean.tsv"
    """Dev manifest: its greedy WER picks the checkpoint."""
    test_manifest: str = MINI + "librispeech/test-clean.tsv"
    """Test manifest: WER and CER are reported."""
    head: AsrHeadConfig = field(default_factory=asr.tiny)
    """BiLSTM CTC head sizes."""


@dataclass
class KsTaskConfig(TaskConfig):
    """Keyword spotting on Speech Commands manifests (a ``label`` column); metric accuracy."""

    name: str = "ks"
    """Task name."""
    train_manifest: str = MINI + "speech_commands/train.tsv"
    """Training manifest."""
    valid_manifest: str | None = MINI + "speech_commands/valid.tsv"
    """Dev manifest: its accuracy picks the checkpoint."""
    test_manifest: str = MINI + "speech_commands/test.tsv"
    """Test manifest: accuracy is reported."""
    head: KsHeadConfig = field(default_factory=ks.tiny)
    """Classifier sizes (``num_classes`` must match the 12 SUPERB classes)."""
    class_balanced: bool = True
    """Draw training clips with class-balanced weights (SUPERB's sampler)."""


@dataclass
class SvTaskConfig(TaskConfig):
    """Speaker verification on VoxCeleb1-style manifests and a trial list; metric EER."""

    name: str = "sv"
    """Task name."""
    train_manifest: str = MINI + "voxceleb1/train.tsv"
    """Training manifest; its speakers are the AM-softmax classes."""
    valid_manifest: str | None = None
    """Not used: SV trains for ``optim.max_steps`` and tests the last checkpoint."""
    test_manifest: str = MINI + "voxceleb1/test.tsv"
    """Test utterances (every id of the trial list must be here)."""
    trials: str = MINI + "voxceleb1/trials.tsv"
    """Trial list (``label enroll test``, label 1 = same speaker)."""
    head: XvectorConfig = field(default_factory=sv.tiny)
    """x-vector sizes."""
    crop_seconds: float = 3.0
    """Training crops of at most this many seconds (test utterances are whole)."""
    am_scale: float = 30.0
    """AM-softmax scale s."""
    am_margin: float = 0.4
    """AM-softmax additive cosine margin m."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        super().validate()
        if self.valid_manifest is not None:
            raise ConfigError(f"task.valid_manifest must be null for sv (it trains to the end), "
                              f"got {self.valid_manifest!r}")
        if self.crop_seconds <= 0:
            raise ConfigError(f"task.crop_seconds must be > 0, got {self.crop_seconds}")


class SuperbModule(L.LightningModule):
    """Featurizer + head; subclasses define the loss and the metrics."""

    metric: ClassVar[str] = ""
    """Result metric name (logged as ``test/<metric>``)."""
    monitor: ClassVar[tuple[str, str] | None] = None
    """(dev metric, min|max) that picks the checkpoint; None tests the last one."""

    def __init__(self, featurizer: Featurizer, head: torch.nn.Module, optim: OptimConfig,
                 hparams: dict[str, Any]) -> None:
        super().__init__()
        optim.validate()
        self.featurizer = featurizer
        self.head = head
        self.optim = optim
        self.save_hyperparameters(hparams)

    def features(self, batch: SuperbBatch) -> torch.Tensor:
        """Weighted sum (B, T, D) of the batch's cached layers."""
        return self.featurizer(batch.hidden_states)  # (B, T, D)

    def layer_weights(self) -> list[float]:
        """The softmaxed layer weights, one float per cached layer."""
        return [float(w) for w in self.featurizer.normalized_weights]

    def configure_optimizers(self) -> Any:
        """AdamW over the featurizer and head; LambdaLR stepped after each optimizer step."""
        return adamw_with_schedule(self, self.optim)

    def _log_train(self, loss: torch.Tensor, batch: SuperbBatch) -> None:
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch.ids))


class AsrModule(SuperbModule):
    """CTC training; greedy decoding for dev and test WER/CER."""

    metric = "wer"
    monitor = ("val/wer_then_cer", "min")
    CER_TIE_BREAK = 1e-3
    """Weight of the CER in the selection key: WER decides, CER breaks ties (a short run's WER
    sits at 1.0 while its CER already falls, and a tie would keep the first checkpoint)."""

    def __init__(self, featurizer: Featurizer, head: AsrHead, optim: OptimConfig,
                 vocab: CharVocab, hparams: dict[str, Any]) -> None:
        super().__init__(featurizer, head, optim, hparams)
        self.vocab = vocab
        self._refs: list[str] = []
        self._hyps: list[str] = []

    def training_step(self, batch: SuperbBatch, batch_idx: int) -> torch.Tensor:
        """Mean CTC loss of the batch."""
        logits = self.head(self.features(batch), batch.lengths)  # (B, T, V)
        loss = ctc_loss(logits, batch.lengths, batch.targets, batch.target_lengths)
        self._log_train(loss, batch)
        return loss

    def validation_step(self, batch: SuperbBatch, batch_idx: int) -> None:
        """Decode the batch and keep references and hypotheses for the epoch's WER."""
        self._decode(batch)

    def test_step(self, batch: SuperbBatch, batch_idx: int) -> None:
        """Decode the batch and keep references and hypotheses for the test WER."""
        self._decode(batch)

    def _decode(self, batch: SuperbBatch) -> None:
        logits = self.head(self.features(batch), batch.lengths)  # (B, T, V)
        self._hyps += greedy_decode(logits, batch.lengths, self.vocab)
        self._refs += [self.vocab.decode(row[:n].tolist()) for row, n in
                       zip(batch.targets.cpu(), batch.target_lengths.tolist(), strict=True)]

    def on_validation_epoch_end(self) -> None:
        """Log ``val/wer`` and ``val/cer``."""
        self._log_error_rates("val")

    def on_test_epoch_end(self) -> None:
        """Log ``test/wer`` and ``test/cer``."""
        self._log_error_rates("test")

    def _log_error_rates(self, split: str) -> None:
        if self._refs:
            word, char = wer(self._refs, self._hyps), cer(self._refs, self._hyps)
            self.log(f"{split}/wer", word, prog_bar=True)
            self.log(f"{split}/cer", char)
            if split == "val":
                self.log("val/wer_then_cer", word + self.CER_TIE_BREAK * char)
        self._refs, self._hyps = [], []


class KsModule(SuperbModule):
    """Cross-entropy keyword classification; dev and test accuracy."""

    metric = "acc"
    monitor = ("val/acc", "max")

    def __init__(self, featurizer: Featurizer, head: KsHead, optim: OptimConfig,
                 hparams: dict[str, Any]) -> None:
        super().__init__(featurizer, head, optim, hparams)
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def training_step(self, batch: SuperbBatch, batch_idx: int) -> torch.Tensor:
        """Mean cross-entropy of the batch."""
        logits = self.head(self.features(batch), batch.lengths)  # (B, C)
        loss = F.cross_entropy(logits, batch.targets)
        self._log_train(loss, batch)
        return loss

    def validation_step(self, batch: SuperbBatch, batch_idx: int) -> None:
        """Keep the batch's predictions for the epoch's accuracy."""
        self._predict(batch)

    def test_step(self, batch: SuperbBatch, batch_idx: int) -> None:
        """Keep the batch's predictions for the test accuracy."""
        self._predict(batch)

    def _predict(self, batch: SuperbBatch) -> None:
        logits = self.head(self.features(batch), batch.lengths)  # (B, C)
        self._preds.append(logits.argmax(dim=-1).cpu())
        self._labels.append(batch.targets.cpu())

    def on_validation_epoch_end(self) -> None:
        """Log ``val/acc``."""
        self._log_accuracy("val")

    def on_test_epoch_end(self) -> None:
        """Log ``test/acc``."""
        self._log_accuracy("test")

    def _log_accuracy(self, split: str) -> None:
        if self._preds:
            self.log(f"{split}/acc", accuracy(torch.cat(self._preds), torch.cat(self._labels)),
                     prog_bar=True)
        self._preds, self._labels = [], []


class SvModule(SuperbModule):
    """x-vector with AM-softmax over training speakers; cosine-scored trials for EER/minDCF."""

    metric = "eer"
    monitor = None

    def __init__(self, featurizer: Featurizer, head: XvectorHead, loss: AMSoftmaxLoss,
                 optim: OptimConfig, trials: Sequence[tuple[int, str, str]],
                 hparams: dict[str, Any]) -> None:
        super().__init__(featurizer, head, optim, hparams)
        self.loss = loss
        self.trials = list(trials)
        self._embeddings: dict[str, torch.Tensor] = {}

    def training_step(self, batch: SuperbBatch, batch_idx: int) -> torch.Tensor:
        """AM-softmax loss of the batch's speaker labels."""
        out = self.head(self.features(batch), batch.lengths)  # (B, E)
        loss = self.loss(out, batch.targets)
        self._log_train(loss, batch)
        return loss

    def test_step(self, batch: SuperbBatch, batch_idx: int) -> None:
        """Keep each test utterance's embedding by id."""
        assert isinstance(self.head, XvectorHead)
        emb = self.head.embed(self.features(batch), batch.lengths)  # (B, E)
        for utt_id, row in zip(batch.ids, emb.cpu(), strict=True):
            self._embeddings[utt_id] = row

    def on_test_epoch_end(self) -> None:
        """Score every trial by cosine; log ``test/eer`` and ``test/min_dcf``."""
        missing = sorted({i for _, a, b in self.trials for i in (a, b)} - self._embeddings.keys())
        if missing:
            raise ManifestError(f"{len(missing)} trial ids are not in the test manifest, e.g. "
                                f"{missing[:3]}; the trial list must match task.test_manifest")
        emb_a = torch.stack([self._embeddings[a] for _, a, _ in self.trials])  # (N, E)
        emb_b = torch.stack([self._embeddings[b] for _, _, b in self.trials])  # (N, E)
        scores = cosine_scores(emb_a, emb_b)  # (N,)
        labels = [label for label, _, _ in self.trials]
        self.log("test/eer", eer(scores, labels)[0])
        self.log("test/min_dcf", min_dcf(scores, labels))
        self._embeddings = {}
