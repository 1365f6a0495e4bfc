"""Fixtures of the real-size recipe smoke runs: a few bundled utterances and their frame labels.

``few_utterances`` is the corpus every recipe's smoke run trains on (pretraining, distillation,
SUPERB): a handful of utterances of the bundled corpus (``data/mini``), each cut to its first
:data:`CLIP_SAMPLES` samples by the manifest row alone (the audio files are the bundled ones),
so a step of a 95-300 M-parameter model stays a few seconds on a CPU. The label fixtures give
HuBERT's ``.km`` files for those manifests: real MFCC k-means (iteration 1, made by the repo's
own ``data_prep.kmeans``) and random labels of any cluster count (iteration 2's 500 clusters
need more frames than a few clips hold).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from data_prep.kmeans import fit_kmeans, label_manifest
from speechbert.data.features import MfccFrames
from speechbert.data.frames import conv_frame_count
from speechbert.data.manifest import Utterance, read_manifest, write_manifest
from speechbert.data.targets import LabelInfo, write_label_info, write_labels

REPO = Path(__file__).parents[2]
"""Repository root: the working directory the CLIs are run from."""
MINI = REPO / "data" / "mini" / "manifests" / "librispeech"
"""LibriSpeech-layout manifests of the bundled corpus."""
CLIP_SAMPLES = 32_000
"""Samples kept of each utterance (2 s): the real recipes' ``data.min_samples``, so no clip
is dropped and no crop is taken."""
NUM_TRAIN = 4
"""Training utterances."""
NUM_VALID = 1
"""Validation utterances (Lightning's sanity check runs validation before training)."""


@dataclass(frozen=True)
class FewUtterances:
    """Manifests of a few 2 s clips of the bundled corpus."""

    train: str
    """Training manifest (TSV), absolute path."""
    valid: str
    """Validation manifest (TSV), absolute path."""
    folder: Path
    """Folder holding both manifests (and the label files the fixtures write)."""


@dataclass(frozen=True)
class FrameLabels:
    """``.km`` files aligned with :class:`FewUtterances`' manifests."""

    train: str
    """Labels of the training manifest."""
    valid: str
    """Labels of the validation manifest."""
    n_clusters: int
    """Cluster count (the model's ``num_classes``)."""


def _clips(source: Path, count: int) -> list[Utterance]:
    """The first ``count`` rows of ``source`` at least 2 s long, cut to their first 2 s."""
    rows = [u for u in read_manifest(source) if u.num_samples >= CLIP_SAMPLES][:count]
    assert len(rows) == count, f"{source} has fewer than {count} utterances of 2 s"
    return [replace(u, num_samples=CLIP_SAMPLES) for u in rows]


@pytest.fixture(scope="session")
def few_utterances(tmp_path_factory: pytest.TempPathFactory) -> FewUtterances:
    """4 training clips (train-clean-100) and 1 validation clip (dev-clean), 2 s each."""
    if not (MINI / "train-clean-100.tsv").is_file():
        pytest.fail("bundled corpus missing: run `make setup` "
                    "(or python -m data_prep.minicorpus --out data/mini)")
    folder = tmp_path_factory.mktemp("few_utterances")
    train = write_manifest(folder / "train.tsv", _clips(MINI / "train-clean-100.tsv", NUM_TRAIN))
    valid = write_manifest(folder / "valid.tsv", _clips(MINI / "dev-clean.tsv", NUM_VALID))
    return FewUtterances(train=str(train), valid=str(valid), folder=folder)


def random_labels(utterances: FewUtterances, n_clusters: int, seed: int = 0) -> FrameLabels:
    """Uniform random labels in ``[0, n_clusters)``, one per 20 ms frame, with their sidecars."""
    gen = torch.Generator().manual_seed(seed)
    paths = {}
    for split in ("train", "valid"):
        manifest = getattr(utterances, split)
        labels = [torch.randint(0, n_clusters, (conv_frame_count(u.num_samples),), generator=gen)
                  for u in read_manifest(manifest)]
        km = write_labels(utterances.folder / f"random{n_clusters}" / f"{split}.km", labels)
        write_label_info(km, LabelInfo(n_clusters=n_clusters, features="random",
                                       manifest=manifest))
        paths[split] = str(km)
    return FrameLabels(train=paths["train"], valid=paths["valid"], n_clusters=n_clusters)


@pytest.fixture(scope="session")
def mfcc_km100(few_utterances: FewUtterances) -> FrameLabels:
    """HuBERT iteration 1's labels: 100-cluster k-means of MFCCs (``data_prep.kmeans``), fitted
    on the training clips and assigned to both manifests."""
    features = MfccFrames()
    train_rows = read_manifest(few_utterances.train)
    model = fit_kmeans(train_rows, features, n_clusters=100, n_init=1)
    paths = {}
    for split in ("train", "valid"):
        manifest = getattr(few_utterances, split)
        rows = read_manifest(manifest)
        km = write_labels(few_utterances.folder / "mfcc100" / f"{split}.km",
                          label_manifest(rows, features, model))
        write_label_info(km, LabelInfo(n_clusters=100, features=features.description,
                                       manifest=manifest))
        paths[split] = str(km)
    return FrameLabels(train=paths["train"], valid=paths["valid"], n_clusters=100)


@pytest.fixture(scope="session")
def random_km500(few_utterances: FewUtterances) -> FrameLabels:
    """Stand-in for HuBERT iteration 2's labels: 500 random clusters (k-means of 500 clusters
    needs more frames than 4 clips of 2 s have)."""
    return random_labels(few_utterances, 500)
