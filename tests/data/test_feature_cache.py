"""The on-disk feature cache: hits, misses on any key change, complete-only reads, layout."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from speechbert.data.feature_cache import (
    PARTIAL_PREFIX,
    CachedFeatures,
    CacheKey,
    FeatureCache,
    cache_bytes,
    collate_cached,
    free_disk_bytes,
    upstream_compute_fn,
)
from speechbert.data.manifest import Utterance, load_utterance, write_manifest
from speechbert.errors import ConfigError
from speechbert.models.fbank import FbankConfig, FbankUpstream
from speechbert.models.upstream import UpstreamOutput
from tests.data.conftest import MakeUtts


class ThreeLayers(torch.nn.Module):
    """A stand-in upstream: fbank, 2 x fbank, 3 x fbank."""

    def __init__(self) -> None:
        super().__init__()
        self.fbank = FbankUpstream(FbankConfig(normalize=False, delta_order=0))

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        out = self.fbank(wavs, lengths)
        x = out.hidden_states[0]  # (B, T', 80)
        return UpstreamOutput(hidden_states=[x, 2 * x, 3 * x], lengths=out.lengths)


class Counting:
    """Wraps a compute function and counts the utterances it computes."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.inner = upstream_compute_fn(ThreeLayers())
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, utterances: Sequence[Utterance]) -> list[list[torch.Tensor]]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += len(utterances)
        return self.inner(utterances)


@pytest.fixture
def setup(tmp_path: Path, make_utts: MakeUtts) -> tuple[list[Utterance], Path, Path]:
    """Five utterances, their manifest and a fake checkpoint file."""
    utts = make_utts([4_000, 800, 6_400, 1_600, 3_200])
    manifest = write_manifest(tmp_path / "split.tsv", utts)
    checkpoint = tmp_path / "upstream.ckpt"
    checkpoint.write_bytes(b"weights v1")
    return utts, manifest, checkpoint


def _expected(utt: Utterance) -> torch.Tensor:
    wav = load_utterance(utt)
    plain = FbankUpstream(FbankConfig(normalize=False, delta_order=0))
    out = plain(wav[None], torch.tensor([wav.numel()]))
    return out.hidden_states[0][0]  # (T', 80)


def test_miss_computes_then_hit_reads_the_same_features(tmp_path: Path, setup) -> None:
    utts, manifest, checkpoint = setup
    cache = FeatureCache(tmp_path / "cache", shard_size=2)
    key = CacheKey.create(manifest=manifest, checkpoint=checkpoint)
    compute = Counting()
    first = cache.get_or_compute(key, utts, compute, batch_size=2, progress=False)
    assert compute.calls == 5 and not first.from_cache
    second = cache.get_or_compute(key, utts, compute, progress=False)
    assert compute.calls == 5 and second.from_cache
    assert len(list(second.folder.glob("shard-*.pt"))) == 3  # 2 + 2 + 1
    for i in (4, 0, 3, 1, 2):  # random access across shards
        item = second[i]
        assert item.utterance == utts[i]
        assert len(item.hidden_states) == 3
        assert torch.allclose(item.hidden_states[0], _expected(utts[i]), atol=1e-5)
        assert torch.equal(item.hidden_states[2], first[i].hidden_states[2])


def test_checkpoint_change_is_a_miss(tmp_path: Path, setup) -> None:
    utts, manifest, checkpoint = setup
    cache = FeatureCache(tmp_path / "cache")
    compute = Counting()
    key = CacheKey.create(manifest=manifest, checkpoint=checkpoint)
    cache.get_or_compute(key, utts, compute, progress=False)
    checkpoint.write_bytes(b"weights v2")  # same size: the mtime tells them apart
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    new_key = CacheKey.create(manifest=manifest, checkpoint=checkpoint)
    assert new_key != key
    assert not cache.get_or_compute(new_key, utts, compute, progress=False).from_cache
    assert compute.calls == 10
    assert cache.lookup(key, utts) is not None  # the old entry is kept, just not used


def test_subnet_change_is_a_miss_and_equal_subnets_hit(tmp_path: Path, setup) -> None:
    utts, manifest, checkpoint = setup
    cache = FeatureCache(tmp_path / "cache")
    compute = Counting()
    subnet = {"embed_dim": 64, "heads": [2, 2], "ffn_dims": [128, 96]}
    key = CacheKey.create(manifest=manifest, checkpoint=checkpoint, subnet=subnet)
    cache.get_or_compute(key, utts, compute, progress=False)
    same = CacheKey.create(manifest=manifest, checkpoint=checkpoint,
                           subnet='{"ffn_dims": [128, 96], "heads": [2, 2], "embed_dim": 64}')
    assert cache.get_or_compute(same, utts, compute, progress=False).from_cache
    other = CacheKey.create(manifest=manifest, checkpoint=checkpoint,
                            subnet={**subnet, "ffn_dims": [128, 64]})
    dense = CacheKey.create(manifest=manifest, checkpoint=checkpoint)
    assert not cache.get_or_compute(other, utts, compute, progress=False).from_cache
    assert not cache.get_or_compute(dense, utts, compute, progress=False).from_cache
    assert compute.calls == 15


def test_manifest_or_utterance_change_is_a_miss(tmp_path: Path, setup) -> None:
    utts, manifest, _ = setup
    cache = FeatureCache(tmp_path / "cache")
    compute = Counting()
    key = CacheKey.create(manifest=manifest, name="three-layer-fbank")
    cache.get_or_compute(key, utts, compute, progress=False)
    assert not cache.get_or_compute(key, utts[:3], compute, progress=False).from_cache
    write_manifest(manifest, utts[::-1])
    changed = CacheKey.create(manifest=manifest, name="three-layer-fbank")
    assert changed.manifest != key.manifest
    assert not cache.get_or_compute(changed, utts[::-1], compute, progress=False).from_cache
    assert compute.calls == 5 + 3 + 5


def test_layer_selection_and_fp16(tmp_path: Path, setup) -> None:
    utts, manifest, _ = setup
    cache = FeatureCache(tmp_path / "cache")
    key = CacheKey.create(manifest=manifest, name="x", layers=[2, 0], fp16=True)
    feats = cache.get_or_compute(key, utts, Counting(), progress=False)
    assert feats.num_layers == 2 and feats.dims == [80, 80]
    top, bottom = feats[0].hidden_states
    assert top.dtype == torch.float16
    assert torch.allclose(top.float(), 3 * bottom.float(), rtol=1e-2, atol=1e-2)
    bad = CacheKey.create(manifest=manifest, name="x", layers=[3])
    with pytest.raises(ConfigError, match="outside the upstream's 3 hidden states"):
        cache.get_or_compute(bad, utts, Counting(), progress=False)
    assert cache.partial_folders() == []


def test_a_crashed_write_is_never_read(tmp_path: Path, setup) -> None:
    utts, manifest, _ = setup
    cache = FeatureCache(tmp_path / "cache", shard_size=1)
    key = CacheKey.create(manifest=manifest, name="x")
    with pytest.raises(RuntimeError, match="simulated crash"):
        cache.get_or_compute(key, utts, Counting(fail_after=3), progress=False)
    assert cache.lookup(key, utts) is None
    assert cache.partial_folders() == []  # an exception cleans up after itself
    # a killed process leaves a partial folder behind, index and all: it is never read
    folder = cache.folder(key, utts)
    partial = folder.with_name(f"{PARTIAL_PREFIX}{folder.name}-dead")
    partial.mkdir()
    (partial / "index.json").write_text("{}")
    assert cache.lookup(key, utts) is None
    compute = Counting()
    assert not cache.get_or_compute(key, utts, compute, progress=False).from_cache
    assert compute.calls == 5 and cache.partial_folders() == [partial]


def test_a_broken_entry_is_recomputed_and_replaced(tmp_path: Path, setup) -> None:
    utts, manifest, _ = setup
    cache = FeatureCache(tmp_path / "cache")
    key = CacheKey.create(manifest=manifest, name="x")
    folder = cache.get_or_compute(key, utts, Counting(), progress=False).folder
    (folder / "shard-00000.pt").unlink()
    compute = Counting()
    with pytest.warns(UserWarning, match="missing shards"):
        again = cache.get_or_compute(key, utts, compute, progress=False)
    assert compute.calls == 5 and again.folder == folder
    assert cache.lookup(key, utts) is not None
    index = json.loads((folder / "index.json").read_text())
    assert index["key"] == key.as_json() and index["ids"] == [u.id for u in utts]


def test_cached_items_collate_into_padded_batches(tmp_path: Path, setup) -> None:
    utts, manifest, _ = setup
    feats = FeatureCache(tmp_path / "cache").get_or_compute(
        CacheKey.create(manifest=manifest, name="x"), utts, Counting(), progress=False)
    assert isinstance(feats, CachedFeatures)
    batch = next(iter(DataLoader(feats, batch_size=5, collate_fn=collate_cached)))
    frames = [feats[i].hidden_states[0].shape[0] for i in range(5)]
    assert batch.lengths.tolist() == frames
    assert batch.hidden_states[1].shape == (5, max(frames), 80)
    assert [u.id for u in batch.utterances] == [u.id for u in utts]


def test_key_needs_exactly_one_upstream_identity(setup) -> None:
    _, manifest, checkpoint = setup
    with pytest.raises(ConfigError, match="exactly one of checkpoint"):
        CacheKey.create(manifest=manifest)
    with pytest.raises(ConfigError, match="exactly one of checkpoint"):
        CacheKey.create(manifest=manifest, checkpoint=checkpoint, name="x")
    with pytest.raises(ConfigError, match="checkpoint not found"):
        CacheKey.create(manifest=manifest, checkpoint=checkpoint.with_name("nope.ckpt"))
    with pytest.raises(ConfigError, match="subnet must be JSON"):
        CacheKey.create(manifest=manifest, name="x", subnet="{not json")


def test_cache_size_estimate_matches_what_an_entry_stores(tmp_path: Path, setup) -> None:
    utts, manifest, _ = setup
    for fp16 in (True, False):
        feats = FeatureCache(tmp_path / f"cache{fp16}").get_or_compute(
            CacheKey.create(manifest=manifest, name="x", fp16=fp16), utts, Counting(),
            progress=False)
        frames = sum(feats[i].hidden_states[0].shape[0] for i in range(len(feats)))
        stored = sum(h.numel() * h.element_size() for i in range(len(feats))
                     for h in feats[i].hidden_states)
        assert cache_bytes(feats.dims, frames, fp16) == stored
    assert cache_bytes([768] * 13, 1_000, fp16=True) == 13 * 768 * 1_000 * 2


def test_free_disk_is_read_from_the_nearest_existing_folder(tmp_path: Path) -> None:
    free = free_disk_bytes(tmp_path / "not" / "made" / "yet")
    assert abs(free - shutil.disk_usage(tmp_path).free) < 64 << 20  # others write meanwhile
    assert not (tmp_path / "not").exists()
