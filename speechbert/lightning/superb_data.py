"""SUPERB head-training data, cached or online, with each task's targets, for Lightning.

Two sources give the same batches:

* cached (:class:`LabelledFeatures`): hidden states read from a
  :class:`~speechbert.data.feature_cache.FeatureCache` entry (computed once per split); a
  speaker-training item is a random crop of at most ``crop_frames`` frames.
* online (:class:`LabelledAudio`): the utterances' audio, which the module's frozen upstream
  encodes inside the training step (s3prl's way, for corpora too large to cache); a
  speaker-training item is a random crop of at most ``crop_samples`` samples of the waveform.

Both pair each utterance with its target (ASR character ids, keyword class, speaker index) and
may read a subset of their utterances (``indices``: the SV training speakers, or the held-out
dev speakers of :func:`hold_out_speakers`). :class:`SuperbDataModule` serves the splits:
shuffled training batches (or class-balanced draws for keyword spotting), validation and test
in order. With no workers everything runs in the main process: reading memory-mapped shards is
faster than a worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from speechbert.data.collate import pad_batch
from speechbert.data.feature_cache import CachedFeatures, CachedItem, collate_cached
from speechbert.data.manifest import Utterance, load_utterance
from speechbert.errors import ConfigError

Target = int | torch.Tensor
"""One utterance's target: a class index, or a (S,) tensor of token ids."""
PAD_TARGET = -100
"""Padding of batched token targets (``ctc_loss`` reads only the valid ones)."""
Trial = tuple[int, str, str]
"""A verification trial: (1 same speaker | 0 different, enrolment id, test id)."""


@dataclass
class SuperbBatch:
    """A batch of cached hidden states or of audio, with the targets of its utterances."""

    hidden_states: list[torch.Tensor]
    """One (B, T, D) tensor per cached layer; empty when the batch holds audio (online)."""
    lengths: torch.Tensor
    """(B,) int64: valid frames per row of ``hidden_states``, or valid samples of ``wavs``."""
    targets: torch.Tensor
    """(B,) class indices, or (B, S) token ids padded with ``PAD_TARGET``."""
    target_lengths: torch.Tensor
    """(B,) valid tokens per row (all ones for class targets)."""
    ids: list[str]
    """Utterance ids, one per row."""
    wavs: torch.Tensor | None = None
    """(B, T) float32 16 kHz audio for the upstream to encode (online); None when cached."""


class LabelledFeatures(Dataset):
    """A cache entry read with one target per utterance; optional random crops in frames."""

    def __init__(self, features: CachedFeatures, targets: Sequence[Target],
                 crop_frames: int | None = None, indices: Sequence[int] | None = None) -> None:
        assert len(features) == len(targets), f"{len(features)} utterances, {len(targets)} targets"
        self.features = features
        """The cache entry."""
        self.targets = list(targets)
        """Target of each utterance of the entry, in cache order."""
        self.crop_frames = crop_frames
        """Longest training crop in frames; None keeps whole utterances."""
        self.indices = list(range(len(features)) if indices is None else indices)
        """Entry positions read, in order (all by default)."""

    def __len__(self) -> int:
        """Number of utterances read."""
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[CachedItem, Target]:
        """Item ``index``'s hidden states (cropped if asked) and its target."""
        position = self.indices[index]
        item = self.features[position]
        frames = item.hidden_states[0].shape[0]
        if self.crop_frames is not None and frames > self.crop_frames:
            start = int(torch.randint(0, frames - self.crop_frames + 1, ()))
            states = [h[start:start + self.crop_frames] for h in item.hidden_states]
            item = CachedItem(utterance=item.utterance, hidden_states=states)
        return item, self.targets[position]

    @staticmethod
    def collate(items: Sequence[tuple[CachedItem, Target]]) -> SuperbBatch:
        """:func:`collate_labelled` (the DataLoader's ``collate_fn``)."""
        return collate_labelled(items)


class LabelledAudio(Dataset):
    """Utterances' audio with one target each, for online features; optional random crops."""

    def __init__(self, utterances: Sequence[Utterance], targets: Sequence[Target],
                 crop_samples: int | None = None, indices: Sequence[int] | None = None) -> None:
        assert len(utterances) == len(targets), f"{len(utterances)} utterances, {len(targets)} " \
                                                f"targets"
        self.utterances = list(utterances)
        """Manifest rows (sorted by length, as the cache stores them)."""
        self.targets = list(targets)
        """Target of each utterance."""
        self.crop_samples = crop_samples
        """Longest training crop in samples; None keeps whole utterances."""
        self.indices = list(range(len(utterances)) if indices is None else indices)
        """Positions read, in order (all by default)."""

    def __len__(self) -> int:
        """Number of utterances read."""
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Utterance, torch.Tensor, Target]:
        """Item ``index``'s row, its audio (T,) (a random crop if asked) and its target."""
        position = self.indices[index]
        utt = self.utterances[position]
        if self.crop_samples is not None and utt.num_samples > self.crop_samples:
            start = int(torch.randint(0, utt.num_samples - self.crop_samples + 1, ()))
            utt = dataclasses.replace(utt, offset=utt.offset + start,
                                      num_samples=self.crop_samples)
        return utt, load_utterance(utt), self.targets[position]

    @staticmethod
    def collate(items: Sequence[tuple[Utterance, torch.Tensor, Target]]) -> SuperbBatch:
        """Pad the audio and targets of ``items`` into a :class:`SuperbBatch` (online)."""
        wavs, lengths = pad_batch([wav for _, wav, _ in items], 0.0, torch.float32)  # (B, T)
        targets, target_lengths = _collate_targets([target for _, _, target in items])
        return SuperbBatch(hidden_states=[], lengths=lengths, targets=targets,
                           target_lengths=target_lengths, ids=[u.id for u, _, _ in items],
                           wavs=wavs)


def _collate_targets(targets: list[Target]) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (B,) or (B, S) padded with ``PAD_TARGET``, and their lengths (B,)."""
    if isinstance(targets[0], torch.Tensor):
        tokens = [t for t in targets if isinstance(t, torch.Tensor)]
        padded = pad_sequence(tokens, batch_first=True, padding_value=PAD_TARGET)  # (B, S)
        return padded, torch.tensor([t.numel() for t in tokens], dtype=torch.int64)
    return torch.tensor(targets, dtype=torch.int64), torch.ones(len(targets), dtype=torch.int64)


def collate_labelled(items: Sequence[tuple[CachedItem, Target]]) -> SuperbBatch:
    """Pad features and targets of ``items`` into a :class:`SuperbBatch`; features are cast to
    float32 (fp16 caches)."""
    batch = collate_cached([item for item, _ in items])
    targets, target_lengths = _collate_targets([target for _, target in items])
    return SuperbBatch(hidden_states=[h.float() for h in batch.hidden_states],
                       lengths=batch.lengths, targets=targets, target_lengths=target_lengths,
                       ids=[u.id for u in batch.utterances])


def hold_out_speakers(utterances: Sequence[Utterance], count: int,
                      seed: int) -> tuple[list[int], list[int]]:
    """(kept, held-out) positions of ``utterances``: every utterance of ``count`` speakers drawn
    with ``seed`` is held out. :class:`ConfigError` when fewer than ``count + 1`` speakers."""
    speakers = sorted({u.speaker for u in utterances})
    if count >= len(speakers):
        raise ConfigError(f"task.dev_speakers={count} must be below the {len(speakers)} training "
                          f"speakers (some must remain to train on); lower it, or 0 for none")
    order = torch.randperm(len(speakers), generator=torch.Generator().manual_seed(seed))
    held = {speakers[i] for i in order[:count].tolist()}
    kept = [i for i, u in enumerate(utterances) if u.speaker not in held]
    return kept, [i for i, u in enumerate(utterances) if u.speaker in held]


def draw_trials(utterances: Sequence[Utterance], count: int, seed: int) -> list[Trial]:
    """``count`` verification trials among ``utterances``, alternately same-speaker (two
    different utterances) and different-speaker, drawn with ``seed``."""
    by_speaker: dict[str, list[str]] = {}
    for u in utterances:
        by_speaker.setdefault(u.speaker, []).append(u.id)
    speakers = sorted(by_speaker)
    several = [s for s in speakers if len(by_speaker[s]) >= 2]
    if len(speakers) < 2 or not several:
        raise ConfigError(f"the held-out dev speakers ({len(speakers)}, {len(several)} with two or "
                          f"more utterances) cannot form trials; raise task.dev_speakers")
    gen = torch.Generator().manual_seed(seed)

    def pick(items: Sequence[Any], k: int) -> list[Any]:
        return [items[i] for i in torch.randperm(len(items), generator=gen)[:k].tolist()]

    trials: list[Trial] = []
    for n in range(count):
        if n % 2 == 0:
            (speaker,) = pick(several, 1)
            enrol, test = pick(by_speaker[speaker], 2)
            trials.append((1, enrol, test))
        else:
            first, second = pick(speakers, 2)
            trials.append((0, pick(by_speaker[first], 1)[0], pick(by_speaker[second], 1)[0]))
    return trials


class SuperbDataModule(L.LightningDataModule):
    """Train / valid / test loaders over :class:`LabelledFeatures` or :class:`LabelledAudio`.

    ``sample_weights`` (e.g. :func:`~speechbert.models.heads.ks.class_balanced_weights`, one per
    training item) makes training draw ``len(train)`` items per epoch with replacement by those
    weights; otherwise the training set is shuffled. The order comes from a generator seeded
    with ``seed`` (a resumed run starts the order afresh).
    """

    def __init__(self, train: LabelledFeatures | LabelledAudio,
                 valid: LabelledFeatures | LabelledAudio | None,
                 test: LabelledFeatures | LabelledAudio, batch_size: int, eval_batch_size: int,
                 sample_weights: Sequence[float] | None = None, seed: int = 0,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.train, self.valid, self.test = train, valid, test
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.sample_weights = None if sample_weights is None else list(sample_weights)
        self.seed = seed
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        """Shuffled (or weighted) training batches; the last partial batch is kept."""
        generator = torch.Generator().manual_seed(self.seed)
        if self.sample_weights is not None:
            sampler = WeightedRandomSampler(self.sample_weights, len(self.train),
                                            replacement=True, generator=generator)
            return DataLoader(self.train, batch_size=self.batch_size, sampler=sampler,
                              collate_fn=self.train.collate, num_workers=self.num_workers)
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True,
                          generator=generator, collate_fn=self.train.collate,
                          num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Validation batches in order (an empty list when the task has no dev split)."""
        if self.valid is None:
            return []
        return self._ordered(self.valid)

    def test_dataloader(self) -> DataLoader:
        """Test batches in order."""
        return self._ordered(self.test)

    def _ordered(self, data: LabelledFeatures | LabelledAudio) -> DataLoader:
        return DataLoader(data, batch_size=self.eval_batch_size, shuffle=False,
                          collate_fn=data.collate, num_workers=self.num_workers)
