"""Score subnets of a trained supernet by their validation distillation loss (for subnet search).

The loss of a subnet is :class:`~speechbert.losses.distill.DistillCriterion`'s on a fixed set of
validation batches, with the prediction head the supernet was trained with. Everything that does
not depend on the subnet is computed once, in :func:`prepare_scoring_batches`: the teacher's
targets, and one span mask per batch drawn from a seed of its own (``seed + index``), so every
subnet is scored on the same frames and the losses of two subnets are comparable. The score of a
subnet (:class:`SubnetScorer`) is the masked-frame-weighted mean of the per-batch losses.

Also here: reading the criterion settings back from a distillation checkpoint
(:func:`loss_config_from_hparams`, :func:`load_prediction_head`) and the fixed validation batches
of a manifest (:func:`validation_batches`). No Lightning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from speechbert.data.collate import AudioBatch, collate_pretrain
from speechbert.data.datasets import PretrainDataset
from speechbert.data.manifest import Utterance, read_manifest
from speechbert.data.sampler import BucketBatchSampler
from speechbert.errors import CheckpointError, ConfigError, ManifestError
from speechbert.losses.distill import (
    DistillCriterion,
    DistillLossConfig,
    PredictionHead,
    TeacherTargets,
)
from speechbert.models.lighthubert.supernet import LightHubertSupernet
from speechbert.models.upstream import Upstream
from speechbert.nn.elastic import SubnetConfig


@dataclass
class ScoringBatch:
    """One validation batch with everything that does not depend on the subnet."""

    batch: AudioBatch
    """Waveforms (B, T) and their lengths."""
    targets: TeacherTargets
    """The teacher's averaged layers (B, T', D_t), computed once."""
    mask: torch.Tensor
    """(B, T') bool span mask, the same for every subnet."""

    @property
    def num_masked(self) -> int:
        """Masked valid frames (the weight of this batch's loss)."""
        valid = torch.arange(self.mask.shape[1])[None, :] < self.targets.lengths[:, None]
        return int((self.mask & valid).sum())


def loss_config_from_hparams(values: Mapping[str, Any], source: str) -> DistillLossConfig:
    """The :class:`DistillLossConfig` of ``hyper_parameters["loss"]`` (``asdict`` output; tuples
    may have come back as lists); :class:`CheckpointError` names ``source`` and the bad key."""
    known = {f.name for f in fields(DistillLossConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(f"{source}: hyper_parameters['loss'] has keys {unknown} that "
                              f"DistillLossConfig does not know ({sorted(known)}); was it written "
                              f"by another speechbert version?")
    settings = dict(values)
    settings.setdefault("target_output", "hidden")  # written before the option: hidden states
    if "teacher_layers" in settings:
        settings["teacher_layers"] = tuple(int(i) for i in settings["teacher_layers"])
    try:
        return DistillLossConfig(**settings).validate()
    except ConfigError as exc:
        raise CheckpointError(f"{source}: hyper_parameters['loss']: {exc}") from exc


def load_prediction_head(state: Mapping[str, torch.Tensor], student_dim: int, teacher_dim: int,
                         source: str) -> PredictionHead:
    """The trained :class:`PredictionHead` from its state (``criterion.head.`` prefix removed)."""
    head = PredictionHead(student_dim, teacher_dim)
    try:
        head.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: the criterion.head.* weights do not fit a prediction "
                              f"head from the supernet's width {student_dim} to the teacher's "
                              f"{teacher_dim} (is it the teacher the supernet was distilled "
                              f"from?): {exc}") from exc
    return head.eval()


def seeded_mask(criterion: DistillCriterion, lengths: torch.Tensor, num_frames: int,
                seed: int) -> torch.Tensor:
    """:meth:`DistillCriterion.make_mask` (B, T') drawn from ``seed``; the global RNG is left as
    it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return criterion.make_mask(lengths, num_frames)


def prepare_scoring_batches(criterion: DistillCriterion, teacher: Upstream,
                            batches: Iterable[AudioBatch], seed: int = 0) -> list[ScoringBatch]:
    """Teacher targets and a fixed mask (seed ``seed + i`` for batch ``i``) for each batch."""
    prepared = []
    for i, batch in enumerate(batches):
        targets = criterion.teacher_targets(teacher, batch.wavs, batch.lengths)
        mask = seeded_mask(criterion, targets.lengths, targets.targets.shape[1], seed + i)
        prepared.append(ScoringBatch(batch=batch, targets=targets, mask=mask))
    if not prepared:
        raise ConfigError("prepare_scoring_batches needs at least one validation batch; got none")
    return prepared


class SubnetScorer:
    """``scorer(subnet) -> float``: the validation distillation loss of ``supernet`` at a subnet
    (mean over the batches weighted by their masked frames; lower is better)."""

    def __init__(self, supernet: LightHubertSupernet, criterion: DistillCriterion,
                 batches: Sequence[ScoringBatch]) -> None:
        if not batches:
            raise ConfigError("SubnetScorer needs at least one prepared validation batch")
        self.supernet = supernet.eval()
        self.criterion = criterion.eval()
        self.batches = list(batches)
        self.weights = [max(b.num_masked, 1) for b in self.batches]

    def __call__(self, subnet: SubnetConfig) -> float:
        """The loss at ``subnet`` (no gradients, no dropout)."""
        total = 0.0
        with torch.inference_mode():
            for prepared, weight in zip(self.batches, self.weights, strict=True):
                out = self.criterion(self.supernet, prepared.batch, subnet, prepared.targets,
                                     prepared.mask)
                total += float(out.loss) * weight
        return total / sum(self.weights)


def validation_batches(manifests: Sequence[str | Path], max_utterances: int | None,
                       max_batch_seconds: float, min_samples: int, max_samples: int,
                       seed: int = 0) -> list[AudioBatch]:
    """Fixed crops of the first ``max_utterances`` long-enough utterances of ``manifests``, in
    length-sorted batches of at most ``max_batch_seconds`` of padded audio (the same every run)."""
    utterances: list[Utterance] = []
    for manifest in manifests:
        utterances += read_manifest(manifest)
    utterances = [u for u in utterances if u.num_samples >= min_samples][:max_utterances]
    if not utterances:
        raise ManifestError(f"{list(manifests)}: no utterance is at least min_samples="
                            f"{min_samples} samples long; lower it or pass another manifest")
    dataset = PretrainDataset(utterances, min_samples=min_samples, max_samples=max_samples,
                              seed=seed)
    sampler = BucketBatchSampler(dataset.sizes, max_seconds=max_batch_seconds,
                                 bucket_size=len(dataset), shuffle=False, seed=seed,
                                 num_replicas=1, rank=0)
    return [collate_pretrain([dataset[i] for i in indices]) for indices in sampler]
