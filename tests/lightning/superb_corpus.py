"""A tiny keyword corpus on disk for SUPERB cell tests (noise clips, real manifests)."""

from __future__ import annotations

from pathlib import Path

import torch

from speechbert.audio import save_audio
from speechbert.data.datasets import KEYWORDS
from speechbert.data.manifest import Utterance, write_manifest


def write_keyword_manifests(root: Path) -> dict[str, str]:
    """Half-second noise clips of the ten keywords, train / valid / test manifests."""
    gen = torch.Generator().manual_seed(5)
    out = {}
    for split, n in (("train", 2), ("valid", 1), ("test", 1)):
        utts = []
        for word in KEYWORDS:
            for i in range(n):
                path = root / "audio" / f"{split}-{word}-{i}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                save_audio(path, 0.1 * torch.randn(8_000, generator=gen))
                utts.append(Utterance(id=path.stem, path=path, num_samples=8_000,
                                      speaker=f"s{i}", label=word))
        out[split] = str(write_manifest(root / f"{split}.tsv", utts))
    return out
