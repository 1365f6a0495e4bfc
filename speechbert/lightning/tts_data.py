"""TTS data for Lightning: an upstream layer's cached embeddings with text, audio and speaker.

Both WavThruVec stages read one upstream layer's 50 Hz hidden states, computed once per manifest
by :class:`~speechbert.data.feature_cache.FeatureCache` and normalised per dimension with the
training set's mean and standard deviation (:class:`FeatureStats`, stored in the stage's
checkpoint so inference normalises the same way):

* text2vec: whole utterances, their normalised character tokens, the layer's frames as targets;
* vec2wav: random ``segment_frames``-frame windows and the audio under them (``320 x`` samples;
  untranscribed audio is enough).

Every utterance also carries a speaker vector: the mean over its frames of the normalised
``speaker_layer`` (a content-averaged timbre summary the same upstream gives for any wav, so a
speaker can be named by id, by the mean of their training vectors, or by a reference wav).
Batches come from :class:`~speechbert.data.sampler.BucketBatchSampler` through the pretraining
:class:`~speechbert.lightning.datamodule.ResumableDataLoader`, so a killed run resumes exactly
mid-epoch; random windows are drawn from ``(seed, epoch, index)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from speechbert.data.feature_cache import (
    CachedFeatures,
    CacheKey,
    FeatureCache,
    upstream_compute_fn,
)
from speechbert.data.manifest import Utterance, load_utterance, read_manifest
from speechbert.data.sampler import BucketBatchSampler
from speechbert.errors import ConfigError, ManifestError
from speechbert.lightning.datamodule import MINI, ResumableDataLoader
from speechbert.models.tts.embeddings import FeatureStats, speaker_vector
from speechbert.models.tts.text import character_encoder

FRAME_SAMPLES = 320
"""Audio samples per upstream frame (50 Hz at 16 kHz)."""
CONDITIONINGS = ("upstream", "mel")
"""Values of ``data.conditioning``."""
MEL_CACHE_NAME = "tts_log_mel_80_hop320"
"""Feature-cache identity of :class:`~speechbert.models.tts.mel.MelUpstream`."""


@dataclass
class TtsDataConfig:
    """Manifests, the upstream layer read, and batching, for both TTS stages."""

    train_manifests: list[str] = field(default_factory=lambda: [MINI + "train-clean-100.tsv"])
    """Training manifests (TSV with a ``text`` column for text2vec)."""
    valid_manifests: list[str] = field(default_factory=lambda: [MINI + "dev-clean.tsv"])
    """Validation manifests; an empty list disables validation."""
    upstream_checkpoint: str = "runs/pretrain/hubert_mini_iter2/checkpoints/last.ckpt"
    """Encoder whose hidden states are the embeddings: a HuBERT (any ``load_teacher`` format) or
    w2v-BERT checkpoint, or a subnet's ``encoder.pt`` from ``speechbert-export``, the kind read
    from the file (:func:`~speechbert.models.load.checkpoint_kind`)."""
    conditioning: str = "upstream"
    """``upstream``: the checkpoint's hidden states; ``mel``: the 50 Hz log-mel Griffin-Lim
    inverts (:class:`~speechbert.models.tts.mel.MelUpstream`, layer 0; the baseline vocoder)."""
    layer: int = 1
    """Hidden state predicted by text2vec and read by vec2wav (0 = after the projection)."""
    speaker_layer: int = 0
    """Hidden state whose utterance mean is the speaker vector."""
    cache_dir: str = "runs/cache/features"
    """Root of the on-disk feature cache (shared with other stages)."""
    segment_frames: int = 24
    """vec2wav: frames per random training window (x 320 samples); text2vec ignores it."""
    batch_size: int = 16
    """Utterances (text2vec) or windows (vec2wav) per batch at most."""
    max_batch_seconds: float = 60.0
    """text2vec: padded audio seconds per batch at most (length-bucketed)."""
    num_workers: int = 0
    """DataLoader worker processes (0 loads in the training process)."""
    seed: int = 0
    """Seed of the batch order and the random windows (combined with the epoch)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        if not self.train_manifests:
            raise ConfigError("data.train_manifests must name at least one manifest, got []")
        for name in ("segment_frames", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if min(self.layer, self.speaker_layer, self.num_workers) < 0:
            raise ConfigError(f"data.layer, data.speaker_layer and data.num_workers must be "
                              f">= 0, got {self.layer}, {self.speaker_layer}, "
                              f"{self.num_workers}")
        if self.conditioning not in CONDITIONINGS:
            raise ConfigError(f"data.conditioning must be one of {CONDITIONINGS}, got "
                              f"{self.conditioning!r}")
        if self.conditioning == "mel" and (self.layer, self.speaker_layer) != (0, 0):
            raise ConfigError(f"data.layer and data.speaker_layer must be 0 with "
                              f"conditioning=mel (one state), got {self.layer}, "
                              f"{self.speaker_layer}")
        if self.segment_frames * FRAME_SAMPLES < 1024:
            raise ConfigError(f"data.segment_frames must be >= 4 (the mel loss needs 1024 "
                              f"samples), got {self.segment_frames}")
        if self.conditioning == "upstream" and not Path(self.upstream_checkpoint).exists():
            raise ConfigError(f"data.upstream_checkpoint={self.upstream_checkpoint}: not found; "
                              f"train it first (make pretrain-demo) or point to a HuBERT "
                              f"checkpoint")


@dataclass
class TtsItem:
    """One training example of either stage."""

    utterance: Utterance
    """Its manifest row."""
    features: torch.Tensor
    """Normalised layer frames (T, D)."""
    speaker: torch.Tensor
    """Speaker vector (D_s,)."""
    tokens: torch.Tensor | None = None
    """text2vec: character ids (N,)."""
    audio: torch.Tensor | None = None
    """vec2wav: the samples under ``features`` (320 T,)."""


@dataclass
class TtsBatch:
    """A padded batch."""

    features: torch.Tensor
    """(B, T, D), zero past ``lengths``."""
    lengths: torch.Tensor
    """Valid frames (B,) int64."""
    speakers: torch.Tensor
    """(B, D_s)."""
    tokens: torch.Tensor | None
    """(B, N) ids, 0-padded (text2vec)."""
    token_lengths: torch.Tensor | None
    """(B,) int64 (text2vec)."""
    audio: torch.Tensor | None
    """(B, 320 T) (vec2wav)."""
    ids: list[str]
    """Utterance ids."""


def collate_tts(items: Sequence[TtsItem]) -> TtsBatch:
    """Pad :class:`TtsItem` s into a :class:`TtsBatch`."""
    tokens = [it.tokens for it in items if it.tokens is not None]
    audio = [it.audio for it in items if it.audio is not None]
    return TtsBatch(
        features=pad_sequence([it.features for it in items], batch_first=True),
        lengths=torch.tensor([it.features.shape[0] for it in items], dtype=torch.int64),
        speakers=torch.stack([it.speaker for it in items]),
        tokens=pad_sequence(tokens, batch_first=True) if tokens else None,
        token_lengths=torch.tensor([t.numel() for t in tokens]) if tokens else None,
        audio=torch.stack(audio) if audio else None, ids=[it.utterance.id for it in items])


class TtsDataset(Dataset):
    """Cached layer frames of a manifest as text2vec utterances or vec2wav windows."""

    def __init__(self, cached: CachedFeatures, stats: FeatureStats, speaker_stats: FeatureStats,
                 cfg: TtsDataConfig, stage: str) -> None:
        self.cached, self.stats, self.cfg, self.stage = cached, stats, cfg, stage
        self.speaker_stats = speaker_stats
        self.encode = character_encoder()
        self.epoch = 0
        self.indices = [i for i, u in enumerate(cached.utterances) if self._usable(i, u)]
        if not self.indices:
            raise ManifestError(f"no utterance of {cfg.train_manifests} is usable for {stage} "
                                f"(text2vec needs a text column and >= 1 frame per character, "
                                f"vec2wav > segment_frames frames)")

    def _usable(self, index: int, utt: Utterance) -> bool:
        frames = utt.num_samples // FRAME_SAMPLES
        if self.stage == "vec2wav":
            return frames > self.cfg.segment_frames
        return bool(utt.text) and len(self.encode(utt.text or "", utt.id)) < frames

    @property
    def sizes(self) -> list[int]:
        """Item lengths in samples for the bucketing sampler."""
        if self.stage == "vec2wav":
            return [self.cfg.segment_frames * FRAME_SAMPLES] * len(self.indices)
        return [self.cached.utterances[i].num_samples for i in self.indices]

    def speaker_vectors(self) -> list[torch.Tensor]:
        """The speaker vector (D_s,) of every usable utterance, in order (no audio loaded)."""
        layer = self.cfg.speaker_layer
        return [speaker_vector(self.speaker_stats.normalise(self.cached[i].hidden_states[layer]))
                for i in self.indices]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the random windows are drawn for."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Usable utterances."""
        return len(self.indices)

    def __getitem__(self, index: int) -> TtsItem:
        """Item ``index``: a whole utterance (text2vec) or a random window (vec2wav)."""
        cached = self.cached[self.indices[index]]
        states = cached.hidden_states
        features = self.stats.normalise(states[self.cfg.layer])  # (T, D)
        speaker = speaker_vector(self.speaker_stats.normalise(states[self.cfg.speaker_layer]))
        utt = cached.utterance
        if self.stage == "text2vec":
            tokens = torch.tensor(self.encode(utt.text or "", utt.id), dtype=torch.int64)
            return TtsItem(utt, features, speaker, tokens=tokens)
        return self._window(utt, features, speaker, index)

    def _window(self, utt: Utterance, features: torch.Tensor, speaker: torch.Tensor,
                index: int) -> TtsItem:
        n = self.cfg.segment_frames
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.epoch * 7919
                                            + index)
        start = int(torch.randint(0, features.shape[0] - n + 1, (1,), generator=gen))
        wav = load_utterance(utt)  # (S,)
        samples = wav[start * FRAME_SAMPLES:(start + n) * FRAME_SAMPLES]
        audio = torch.nn.functional.pad(samples, (0, n * FRAME_SAMPLES - samples.numel()))
        return TtsItem(utt, features[start:start + n], speaker, audio=audio)


def load_upstream_features(cfg: TtsDataConfig, manifest: str) -> CachedFeatures:
    """All hidden states of ``manifest`` from the cache, computing them on a miss."""
    from speechbert.models.load import load_checkpoint_encoder
    from speechbert.models.tts.mel import MelUpstream

    utterances = read_manifest(manifest)
    cache = FeatureCache(cfg.cache_dir)
    key = CacheKey.create(manifest=manifest, name=MEL_CACHE_NAME) if cfg.conditioning == "mel" \
        else CacheKey.create(manifest=manifest, checkpoint=cfg.upstream_checkpoint)
    found = cache.lookup(key, utterances)
    if found is not None:
        return found
    upstream = MelUpstream() if cfg.conditioning == "mel" else \
        load_checkpoint_encoder(cfg.upstream_checkpoint)
    return cache.get_or_compute(key, utterances, upstream_compute_fn(upstream), batch_size=8,
                                progress=False)


class TtsDataModule(L.LightningDataModule):
    """Cached embeddings for one TTS stage (``text2vec`` or ``vec2wav``)."""

    def __init__(self, cfg: TtsDataConfig, stage: str) -> None:
        super().__init__()
        cfg.validate()
        if stage not in ("text2vec", "vec2wav"):
            raise ConfigError(f"stage must be 'text2vec' or 'vec2wav', got {stage!r}")
        self.cfg, self.stage = cfg, stage
        self.train_set: TtsDataset | None = None
        self.valid_set: TtsDataset | None = None
        self.stats: FeatureStats | None = None
        self.speaker_stats: FeatureStats | None = None

    def setup(self, stage: str = "fit") -> None:
        """Compute or read the cached features and the normalisation statistics (once)."""
        if self.train_set is not None:
            return
        train = [load_upstream_features(self.cfg, m) for m in self.cfg.train_manifests]
        states = [train[0][i].hidden_states for i in range(len(train[0]))]
        self.stats = FeatureStats.of([s[self.cfg.layer] for s in states])
        self.speaker_stats = FeatureStats.of([s[self.cfg.speaker_layer] for s in states])
        self.train_set = self._concat(train)
        if self.cfg.valid_manifests:
            self.valid_set = self._concat([load_upstream_features(self.cfg, m)
                                           for m in self.cfg.valid_manifests])

    def _concat(self, parts: list[CachedFeatures]) -> TtsDataset:
        if len(parts) > 1:
            raise ConfigError(f"data.*_manifests: one manifest per split for now (merge them "
                              f"into one TSV), got {len(parts)}")
        assert self.stats is not None and self.speaker_stats is not None
        return TtsDataset(parts[0], self.stats, self.speaker_stats, self.cfg, self.stage)

    def _sampler(self, dataset: TtsDataset, shuffle: bool) -> BucketBatchSampler:
        seconds = self.cfg.max_batch_seconds if self.stage == "text2vec" else 1e9
        return BucketBatchSampler(dataset.sizes, max_seconds=seconds,
                                  max_batch_size=self.cfg.batch_size, bucket_size=len(dataset),
                                  shuffle=shuffle, seed=self.cfg.seed)

    def train_dataloader(self) -> ResumableDataLoader:
        """Shuffled batches, resumable mid-epoch."""
        assert self.train_set is not None, "call setup('fit') first"
        loader = ResumableDataLoader(self.train_set,  # type: ignore[arg-type]
                                     self._sampler(self.train_set, True),
                                     num_workers=self.cfg.num_workers)
        loader.collate_fn = collate_tts
        return loader

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Fixed batches (the same windows every time); [] without a manifest."""
        if self.valid_set is None:
            return []
        return DataLoader(self.valid_set, batch_sampler=self._sampler(self.valid_set, False),
                          collate_fn=collate_tts, num_workers=self.cfg.num_workers)
