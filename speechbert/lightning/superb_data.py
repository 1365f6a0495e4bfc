"""SUPERB head-training data: cached upstream features with each task's targets, for Lightning.

The features come from :class:`~speechbert.data.feature_cache.FeatureCache` entries (computed
once per split); :class:`LabelledFeatures` pairs each cached utterance with its target (ASR
character ids, keyword class, speaker index) and, for speaker training, cuts a random crop of
at most ``crop_frames`` frames. :class:`SuperbDataModule` serves the splits: shuffled training
batches (or class-balanced draws for keyword spotting), validation and test in cache order.
Everything runs in the main process: reading memory-mapped shards is faster than a worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from speechbert.data.feature_cache import CachedFeatures, CachedItem, collate_cached

Target = int | torch.Tensor
"""One utterance's target: a class index, or a (S,) tensor of token ids."""
PAD_TARGET = -100
"""Padding of batched token targets (``ctc_loss`` reads only the valid ones)."""


@dataclass
class SuperbBatch:
    """Padded cached hidden states of a batch with the targets of its utterances."""

    hidden_states: list[torch.Tensor]
    """One (B, T, D) tensor per cached layer."""
    lengths: torch.Tensor
    """Valid frames per row (B,) int64."""
    targets: torch.Tensor
    """(B,) class indices, or (B, S) token ids padded with ``PAD_TARGET``."""
    target_lengths: torch.Tensor
    """(B,) valid tokens per row (all ones for class targets)."""
    ids: list[str]
    """Utterance ids, one per row."""


class LabelledFeatures(Dataset):
    """A cache entry read with one target per utterance; optional random crops in frames."""

    def __init__(self, features: CachedFeatures, targets: Sequence[Target],
                 crop_frames: int | None = None) -> None:
        assert len(features) == len(targets), f"{len(features)} utterances, {len(targets)} targets"
        self.features = features
        """The cache entry."""
        self.targets = list(targets)
        """Target of each utterance, in cache order."""
        self.crop_frames = crop_frames
        """Longest training crop in frames; None keeps whole utterances."""

    def __len__(self) -> int:
        """Number of utterances."""
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[CachedItem, Target]:
        """Utterance ``index``'s hidden states (cropped if asked) and its target."""
        item = self.features[index]
        frames = item.hidden_states[0].shape[0]
        if self.crop_frames is not None and frames > self.crop_frames:
            start = int(torch.randint(0, frames - self.crop_frames + 1, ()))
            states = [h[start:start + self.crop_frames] for h in item.hidden_states]
            item = CachedItem(utterance=item.utterance, hidden_states=states)
        return item, self.targets[index]


def collate_labelled(items: Sequence[tuple[CachedItem, Target]]) -> SuperbBatch:
    """Pad features and targets of ``items`` into a :class:`SuperbBatch`; features are cast to
    float32 (fp16 caches)."""
    batch = collate_cached([item for item, _ in items])
    targets = [target for _, target in items]
    if isinstance(targets[0], torch.Tensor):
        tokens = [t for t in targets if isinstance(t, torch.Tensor)]
        padded = pad_sequence(tokens, batch_first=True, padding_value=PAD_TARGET)  # (B, S)
        target_lengths = torch.tensor([t.numel() for t in tokens], dtype=torch.int64)
    else:
        padded = torch.tensor(targets, dtype=torch.int64)  # (B,)
        target_lengths = torch.ones(len(targets), dtype=torch.int64)
    return SuperbBatch(hidden_states=[h.float() for h in batch.hidden_states],
                       lengths=batch.lengths, targets=padded, target_lengths=target_lengths,
                       ids=[u.id for u in batch.utterances])


class SuperbDataModule(L.LightningDataModule):
    """Train / valid / test loaders over :class:`LabelledFeatures`.

    ``sample_weights`` (e.g. :func:`~speechbert.models.heads.ks.class_balanced_weights`) makes
    training draw ``len(train)`` utterances per epoch with replacement by those weights;
    otherwise the training set is shuffled. The order comes from a generator seeded with
    ``seed`` (a resumed run starts the order afresh: with cached features an epoch is seconds).
    """

    def __init__(self, train: LabelledFeatures, valid: LabelledFeatures | None,
                 test: LabelledFeatures, batch_size: int, eval_batch_size: int,
                 sample_weights: Sequence[float] | None = None, seed: int = 0) -> None:
        super().__init__()
        self.train, self.valid, self.test = train, valid, test
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.sample_weights = None if sample_weights is None else list(sample_weights)
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        """Shuffled (or weighted) training batches; the last partial batch is kept."""
        generator = torch.Generator().manual_seed(self.seed)
        if self.sample_weights is not None:
            sampler = WeightedRandomSampler(self.sample_weights, len(self.train),
                                            replacement=True, generator=generator)
            return DataLoader(self.train, batch_size=self.batch_size, sampler=sampler,
                              collate_fn=collate_labelled)
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True,
                          generator=generator, collate_fn=collate_labelled)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Validation batches in cache order (an empty list when the task has no dev split)."""
        if self.valid is None:
            return []
        return self._ordered(self.valid)

    def test_dataloader(self) -> DataLoader:
        """Test batches in cache order."""
        return self._ordered(self.test)

    def _ordered(self, data: LabelledFeatures) -> DataLoader:
        return DataLoader(data, batch_size=self.eval_batch_size, shuffle=False,
                          collate_fn=collate_labelled)
