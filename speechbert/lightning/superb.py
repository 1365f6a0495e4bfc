"""SUPERB heads over a frozen upstream, on cached or online features: task configs and modules.

Every module holds the learnable weighted layer sum (:class:`Featurizer`) and a task head, and
trains them on :class:`~speechbert.lightning.superb_data.SuperbBatch` es: cached hidden states,
or audio that the module's frozen ``upstream`` encodes inside the step (``task.features``,
chosen in :mod:`~speechbert.lightning.superb_run`). The upstream is kept in eval mode, takes no
gradient and is left out of the checkpoints.

* :class:`AsrModule`: BiLSTM + CTC, SpecAugment on the weighted sum while training, greedy
  decoding; the dev WER picks the checkpoint (ties broken by the dev CER:
  ``val/wer_then_cer``), ``test/wer`` and ``test/cer`` are reported.
* :class:`KsModule`: mean-pooled classifier, cross-entropy, class-balanced sampling (set by the
  data module); ``val/acc`` picks the checkpoint, ``test/acc`` is reported.
* :class:`SvModule`: x-vector trained with AM-softmax over the training speakers; embeddings
  (after the first segment layer's ReLU, L2-normalised) are scored by cosine on the dev trials
  (held-out training speakers: ``val/eer`` picks the checkpoint) and on the test trials
  (``test/eer``, ``test/min_dcf``).

Optimisation is AdamW with the pretraining stage's warm-up/decay schedule
(:class:`~speechbert.lightning.pretrain.OptimConfig`); with zero weight decay it is Adam, which
s3prl's ASR and KS configs name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F

from speechbert.data.text import CharVocab
from speechbert.errors import ConfigError, ManifestError
from speechbert.lightning.pretrain import OptimConfig, adamw_with_schedule
from speechbert.lightning.superb_data import SuperbBatch, Trial
from speechbert.losses.aam_softmax import AMSoftmaxLoss
from speechbert.metrics import accuracy, cer, eer, min_dcf, wer
from speechbert.models.heads import asr, ks, sv
from speechbert.models.heads.asr import AsrHead, AsrHeadConfig, ctc_loss, greedy_decode
from speechbert.models.heads.featurizer import Featurizer
from speechbert.models.heads.ks import KsHead, KsHeadConfig
from speechbert.models.heads.pooling import frame_mask
from speechbert.models.heads.specaug import SpecAugment, SpecAugmentConfig
from speechbert.models.heads.sv import XvectorConfig, XvectorHead, cosine_scores

MINI = "data/mini/manifests/"
"""Manifest folder of the bundled corpus (the defaults of the task configs)."""
FEATURE_MODES = ("cache", "online", "auto")
"""Values of ``task.features``."""
UPSTREAM_PREFIX = "upstream."
"""State-dict prefix of the frozen upstream, left out of checkpoints."""


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
    features: str = "auto"
    """``cache`` (compute every split's hidden states once, train on them), ``online`` (the
    frozen upstream runs inside every step, as s3prl's ``downstream/runner.py`` lines 297-301 at
    ec8064b) or ``auto`` (cache when the
    estimated cache fits in ``cache_disk_share`` of the free disk, else online; logged)."""
    cache_disk_share: float = 0.5
    """``features=auto``: the largest share of the cache folder's free disk a cache may take."""
    gradient_clip_val: float | None = None
    """Clip the gradient norm to this; None keeps ``trainer.gradient_clip_val``."""
    accumulate_grad_batches: int | None = None
    """Batches per optimizer step (``optim.max_steps`` and ``val_every_n_steps`` count optimizer
    steps); None keeps ``trainer.accumulate_grad_batches``."""
    num_workers: int = 0
    """DataLoader worker processes (0: the main process; online audio loading may want more)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        self.optim.validate()
        for name in ("batch_size", "eval_batch_size", "val_every_n_steps", "cache_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"task.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_manifest", "test_manifest"):
            if not getattr(self, name):
                raise ConfigError(f"task.{name} must be a manifest path, got empty")
        if self.features not in FEATURE_MODES:
            raise ConfigError(f"task.features must be one of {FEATURE_MODES}, "
                              f"got {self.features!r}")
        if not 0.0 < self.cache_disk_share <= 1.0:
            raise ConfigError(f"task.cache_disk_share must be in (0, 1], "
                              f"got {self.cache_disk_share}")
        if self.gradient_clip_val is not None and self.gradient_clip_val < 0:
            raise ConfigError(f"task.gradient_clip_val must be >= 0 or null, "
                              f"got {self.gradient_clip_val}")
        if self.accumulate_grad_batches is not None and self.accumulate_grad_batches < 1:
            raise ConfigError(f"task.accumulate_grad_batches must be >= 1 or null, "
                              f"got {self.accumulate_grad_batches}")
        if self.num_workers < 0:
            raise ConfigError(f"task.num_workers must be >= 0, got {self.num_workers}")

    @property
    def has_dev(self) -> bool:
        """Whether a dev split picks the checkpoint (else the last one is tested)."""
        return bool(self.valid_manifest)


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
    specaug: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    """SpecAugment on the weighted-sum features while training (default: s3prl's settings)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        super().validate()
        self.specaug.validate()


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
    """Must be null: the dev trials come from ``dev_speakers`` held out of the training set."""
    test_manifest: str = MINI + "voxceleb1/test.tsv"
    """Test utterances (every id of the trial list must be here)."""
    trials: str = MINI + "voxceleb1/trials.tsv"
    """Trial list (``label enroll test``, label 1 = same speaker)."""
    head: XvectorConfig = field(default_factory=sv.tiny)
    """x-vector sizes."""
    crop_seconds: float = 3.0
    """Training crops of at most this many seconds (dev and test utterances are whole)."""
    min_train_seconds: float = 0.0
    """Training utterances shorter than this are dropped (s3prl: 2 s)."""
    dev_speakers: int = 0
    """Training speakers held out of the head's training; trials among their utterances pick
    the checkpoint by EER. 0: no dev selection, the last checkpoint is tested."""
    dev_trials: int = 2000
    """Trials drawn among the held-out speakers' utterances, half same-speaker."""
    am_scale: float = 30.0
    """AM-softmax scale s."""
    am_margin: float = 0.4
    """AM-softmax additive cosine margin m."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        super().validate()
        if self.valid_manifest is not None:
            raise ConfigError(f"task.valid_manifest must be null for sv (the dev trials come "
                              f"from task.dev_speakers), got {self.valid_manifest!r}")
        if self.crop_seconds <= 0:
            raise ConfigError(f"task.crop_seconds must be > 0, got {self.crop_seconds}")
        if self.min_train_seconds < 0:
            raise ConfigError(f"task.min_train_seconds must be >= 0, "
                              f"got {self.min_train_seconds}")
        if self.dev_speakers == 1 or self.dev_speakers < 0:
            raise ConfigError(f"task.dev_speakers must be 0 (no dev trials) or >= 2 (different-"
                              f"speaker trials need two), got {self.dev_speakers}")
        if self.dev_speakers and self.dev_trials < 2:
            raise ConfigError(f"task.dev_trials must be >= 2 with dev speakers, "
                              f"got {self.dev_trials}")

    @property
    def has_dev(self) -> bool:
        """Whether held-out speakers' trials pick the checkpoint."""
        return self.dev_speakers > 0


class SuperbModule(L.LightningModule):
    """Featurizer + head (+ the frozen upstream when online); subclasses define loss and metrics."""

    metric: ClassVar[str] = ""
    """Result metric name (logged as ``test/<metric>``)."""
    monitor: ClassVar[tuple[str, str] | None] = None
    """(dev metric, min|max) that picks the checkpoint; None tests the last one."""

    def __init__(self, featurizer: Featurizer, head: torch.nn.Module, optim: OptimConfig,
                 hparams: dict[str, Any], upstream: torch.nn.Module | None = None) -> None:
        super().__init__()
        optim.validate()
        self.featurizer = featurizer
        self.head = head
        self.optim = optim
        self.upstream = upstream
        """The frozen upstream that encodes audio batches (online features); None when cached."""
        if upstream is not None:
            upstream.requires_grad_(False).eval()
        self.save_hyperparameters(hparams)

    def features(self, batch: SuperbBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted sum (B, T, D) of the batch's layers and the valid frames (B,): cached
        layers as they are, or the upstream's hidden states of the batch's audio."""
        if batch.wavs is None:
            return self.featurizer(batch.hidden_states), batch.lengths  # (B, T, D), (B,)
        states, lengths = self.upstream_states(batch.wavs, batch.lengths)
        return self.featurizer(states), lengths  # (B, T, D), (B,)

    def upstream_states(self, wavs: torch.Tensor,
                        lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The frozen upstream's hidden states of ``wavs`` (B, T) with valid samples ``lengths``
        (B,): L tensors (B, T', D), zero past each row's valid frames (as the cache pads them),
        and those frame counts (B,)."""
        if self.upstream is None:
            raise ConfigError("an audio batch reached a module without an upstream; build the "
                              "module with upstream= for task.features=online")
        with torch.no_grad():
            out = self.upstream(wavs, lengths)
        frames = out.lengths.to(wavs.device)  # (B,)
        states = out.hidden_states
        mask = frame_mask(frames, states[0].shape[1]).unsqueeze(-1)  # (B, T', 1)
        return [h * mask.to(h.dtype) for h in states], frames

    def train(self, mode: bool = True) -> SuperbModule:
        """Set train/eval mode; the frozen upstream always stays in eval mode (no dropout)."""
        super().train(mode)
        if self.upstream is not None:
            self.upstream.eval()
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Leave the frozen upstream out of the checkpoint (it is loaded from its own file)."""
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                    if not k.startswith(UPSTREAM_PREFIX)}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """Load head and featurizer weights; the upstream keeps its own (checkpoints lack it)."""
        if self.upstream is not None:
            own = {f"{UPSTREAM_PREFIX}{k}": v for k, v in self.upstream.state_dict().items()}
            state_dict = {**state_dict, **own}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def layer_weights(self) -> list[float]:
        """The softmaxed layer weights, one float per layer."""
        return [float(w) for w in self.featurizer.normalized_weights]

    def configure_optimizers(self) -> Any:
        """AdamW over the featurizer and head; LambdaLR stepped after each optimizer step."""
        return adamw_with_schedule(self, self.optim)

    def _log_train(self, loss: torch.Tensor, batch: SuperbBatch) -> None:
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch.ids))


class AsrModule(SuperbModule):
    """CTC training with SpecAugment; greedy decoding for dev and test WER/CER."""

    metric = "wer"
    monitor = ("val/wer_then_cer", "min")
    CER_TIE_BREAK = 1e-3
    """Weight of the CER in the selection key: WER decides, CER breaks ties (a short run's WER
    sits at 1.0 while its CER already falls, and a tie would keep the first checkpoint)."""

    def __init__(self, featurizer: Featurizer, head: AsrHead, optim: OptimConfig,
                 vocab: CharVocab, hparams: dict[str, Any], specaug: SpecAugment,
                 upstream: torch.nn.Module | None = None) -> None:
        super().__init__(featurizer, head, optim, hparams, upstream)
        self.vocab = vocab
        self.specaug = specaug
        self._refs: list[str] = []
        self._hyps: list[str] = []

    def training_step(self, batch: SuperbBatch, batch_idx: int) -> torch.Tensor:
        """Mean CTC loss of the batch, its features SpecAugmented."""
        features, lengths = self.features(batch)  # (B, T, D), (B,)
        logits = self.head(self.specaug(features, lengths), lengths)  # (B, T, V)
        loss = ctc_loss(logits, lengths, batch.targets, batch.target_lengths)
        self._log_train(loss, batch)
        return loss

    def validation_step(self, batch: SuperbBatch, batch_idx: int) -> None:
        """Decode the batch and keep references and hypotheses for the epoch's WER."""
        self._decode(batch)

    def test_step(self, batch: SuperbBatch, batch_idx: int) -> None:
        """Decode the batch and keep references and hypotheses for the test WER."""
        self._decode(batch)

    def _decode(self, batch: SuperbBatch) -> None:
        features, lengths = self.features(batch)  # (B, T, D), (B,)
        logits = self.head(features, lengths)  # (B, T, V)
        self._hyps += greedy_decode(logits, lengths, self.vocab)
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
                 hparams: dict[str, Any], upstream: torch.nn.Module | None = None) -> None:
        super().__init__(featurizer, head, optim, hparams, upstream)
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def training_step(self, batch: SuperbBatch, batch_idx: int) -> torch.Tensor:
        """Mean cross-entropy of the batch."""
        logits = self.head(*self.features(batch))  # (B, C)
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
        logits = self.head(*self.features(batch))  # (B, C)
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
    """x-vector with AM-softmax over training speakers; cosine-scored trials for EER/minDCF.

    ``dev_trials`` (among held-out training speakers) give ``val/eer``, which picks the
    checkpoint when the data module has a dev split; ``trials`` give the test result.
    """

    metric = "eer"
    monitor = ("val/eer", "min")

    def __init__(self, featurizer: Featurizer, head: XvectorHead, loss: AMSoftmaxLoss,
                 optim: OptimConfig, trials: Sequence[Trial], hparams: dict[str, Any],
                 dev_trials: Sequence[Trial] = (),
                 upstream: torch.nn.Module | None = None) -> None:
        super().__init__(featurizer, head, optim, hparams, upstream)
        self.loss = loss
        self.trials = list(trials)
        self.dev_trials = list(dev_trials)
        self._embeddings: dict[str, torch.Tensor] = {}

    def training_step(self, batch: SuperbBatch, batch_idx: int) -> torch.Tensor:
        """AM-softmax loss of the batch's speaker labels."""
        out = self.head(*self.features(batch))  # (B, E)
        loss = self.loss(out, batch.targets)
        self._log_train(loss, batch)
        return loss

    def validation_step(self, batch: SuperbBatch, batch_idx: int) -> None:
        """Keep each dev utterance's embedding by id."""
        self._embed(batch)

    def test_step(self, batch: SuperbBatch, batch_idx: int) -> None:
        """Keep each test utterance's embedding by id."""
        self._embed(batch)

    def _embed(self, batch: SuperbBatch) -> None:
        assert isinstance(self.head, XvectorHead)
        emb = self.head.embed(*self.features(batch))  # (B, E), unit length
        for utt_id, row in zip(batch.ids, emb.float().cpu(), strict=True):
            self._embeddings[utt_id] = row

    def on_validation_epoch_end(self) -> None:
        """Score the dev trials by cosine; log ``val/eer`` and ``val/min_dcf`` (not during
        Lightning's sanity check, which embeds only a few dev utterances)."""
        if not self.trainer.sanity_checking and self._embeddings:
            self._log_scores("val", self.dev_trials, "the held-out dev speakers")
        self._embeddings = {}

    def on_test_epoch_end(self) -> None:
        """Score every test trial by cosine; log ``test/eer`` and ``test/min_dcf``."""
        self._log_scores("test", self.trials, "task.test_manifest")
        self._embeddings = {}

    def _log_scores(self, split: str, trials: Sequence[Trial], source: str) -> None:
        missing = sorted({i for _, a, b in trials for i in (a, b)} - self._embeddings.keys())
        if missing:
            raise ManifestError(f"{len(missing)} trial ids are not among the utterances of "
                                f"{source}, e.g. {missing[:3]}; the trial list must match it")
        emb_a = torch.stack([self._embeddings[a] for _, a, _ in trials])  # (N, E)
        emb_b = torch.stack([self._embeddings[b] for _, _, b in trials])  # (N, E)
        scores = cosine_scores(emb_a, emb_b)  # (N,)
        labels = [label for label, _, _ in trials]
        self.log(f"{split}/eer", eer(scores, labels)[0])
        self.log(f"{split}/min_dcf", min_dcf(scores, labels))
