"""Benchmark: a SUPERB head-training epoch on cached features vs recomputing the upstream.

    python -m evals.bench_superb [--utterances 512] [--threads 1]

Keyword spotting on the bundled Speech Commands training clips (the first ``--utterances``),
tiny KS head, batches of 32, the same AdamW step either way. "recompute" loads each batch's
audio and runs the frozen upstream (``torch.no_grad``) every step, as a pipeline without a
cache does; "cached" reads the hidden states from a :class:`FeatureCache` entry built once
beforehand (its build time is reported separately: it is paid once per upstream and split,
the epoch time every epoch). Upstreams: the FBANK baseline and the tiny HuBERT (the
``hubert_mini_iter2`` checkpoint when ``make pretrain-demo`` has made it, else random weights
of the same size). Prints JSON; ``ratio`` = recompute / cached epoch seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from speechbert.data.collate import pad_batch
from speechbert.data.datasets import UNKNOWN, KeywordDataset
from speechbert.data.feature_cache import FeatureCache, upstream_compute_fn
from speechbert.data.manifest import Utterance, load_utterance, read_manifest
from speechbert.lightning.superb_data import LabelledFeatures, collate_labelled
from speechbert.models.heads import ks
from speechbert.models.heads.featurizer import Featurizer
from speechbert.models.hubert import config as hubert_config
from speechbert.models.hubert.build import build_wav2vec2
from speechbert.models.hubert.upstream import HubertUpstream
from speechbert.models.load import LoadedUpstream, UpstreamSpec, load_upstream

MANIFEST = "data/mini/manifests/speech_commands/train.tsv"
"""Bundled Speech Commands training clips."""
CHECKPOINT = "runs/pretrain/hubert_mini_iter2/checkpoints/last.ckpt"
"""The demo's tiny HuBERT, used when present."""
BATCH = 32
"""Clips per training step."""
Step = Callable[[list[torch.Tensor], torch.Tensor, torch.Tensor], None]
"""One optimizer step of featurizer + head on (layers, frame lengths, labels)."""


def tiny_hubert() -> LoadedUpstream:
    """The demo's tiny HuBERT, or a random one of the same config."""
    if Path(CHECKPOINT).is_file():
        return load_upstream(UpstreamSpec(name="hubert_mini_iter2", kind="hubert",
                                          path=CHECKPOINT))
    torch.manual_seed(0)
    module = HubertUpstream(build_wav2vec2(hubert_config.tiny()))
    return LoadedUpstream(module=module, identity="name random tiny hubert", subnet=None,
                          params=sum(p.numel() for p in module.parameters()),
                          macs_per_second=0)


def make_step(num_layers: int, dim: int) -> Step:
    """A fresh featurizer + tiny KS head and the AdamW step that trains them."""
    torch.manual_seed(0)
    featurizer, head = Featurizer(num_layers), ks.KsHead(dim, ks.tiny())
    params = [*featurizer.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3)

    def step(layers: list[torch.Tensor], lengths: torch.Tensor, labels: torch.Tensor) -> None:
        loss = F.cross_entropy(head(featurizer(layers), lengths), labels)  # (B, C) logits
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return step


def recompute_epoch(loaded: LoadedUpstream, utts: Sequence[Utterance],
                    labels: Sequence[int]) -> float:
    """Seconds of one epoch that loads audio and runs the upstream every step."""
    module: Any = loaded.module  # an Upstream
    step = make_step(int(module.num_layers), int(module.hidden_size))
    start = time.perf_counter()
    for first in range(0, len(utts), BATCH):
        wavs, lengths = pad_batch([load_utterance(u) for u in utts[first:first + BATCH]], 0.0,
                                  torch.float32)  # (B, T), (B,)
        with torch.no_grad():
            out = module(wavs, lengths)
        step([h.float() for h in out.hidden_states], out.lengths,
             torch.tensor(labels[first:first + BATCH]))
    return time.perf_counter() - start


def cached_epoch(loaded: LoadedUpstream, utts: Sequence[Utterance], labels: Sequence[int],
                 manifest: str, root: Path) -> tuple[float, float]:
    """(cache build seconds, seconds of one epoch reading the cache)."""
    start = time.perf_counter()
    feats = FeatureCache(root).get_or_compute(
        loaded.cache_key(manifest), utts, upstream_compute_fn(loaded.module), batch_size=8,
        progress=False)
    built = time.perf_counter() - start
    step = make_step(feats.num_layers, feats.dims[0])
    loader = DataLoader(LabelledFeatures(feats, labels), batch_size=BATCH,
                        collate_fn=collate_labelled)
    start = time.perf_counter()
    for batch in loader:
        step(batch.hidden_states, batch.lengths, batch.targets)
    return built, time.perf_counter() - start


def bench(loaded: LoadedUpstream, utts: Sequence[Utterance], labels: Sequence[int],
          root: Path) -> dict[str, Any]:
    """Cached vs recomputed epoch seconds of one upstream."""
    built, cached = cached_epoch(loaded, utts, labels, MANIFEST, root)
    recompute = recompute_epoch(loaded, utts, labels)
    return {"params": loaded.params, "cache_build_s": round(built, 3),
            "cached_epoch_s": round(cached, 3), "recompute_epoch_s": round(recompute, 3),
            "ratio": round(recompute / cached, 1)}


def main(argv: list[str] | None = None) -> None:
    """Run both upstreams and print the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=512, help="training clips per epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    utts = read_manifest(MANIFEST)[:args.utterances]
    labels = KeywordDataset(utts, unknown_class=UNKNOWN).targets
    upstreams = {"fbank": load_upstream(UpstreamSpec()), "hubert_tiny": tiny_hubert()}
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: bench(loaded, utts, labels, Path(tmp))
                   for name, loaded in upstreams.items()}
    print(json.dumps({"task": "ks", "utterances": len(utts), "batch_size": BATCH,
                      "threads": args.threads, "head": asdict(ks.tiny()),
                      "upstreams": results}, indent=2))


if __name__ == "__main__":
    main()
