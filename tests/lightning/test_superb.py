"""SUPERB heads through their Lightning modules on separable synthetic features; cells: resume,
skip when finished, result.json; the feature cache is computed once per upstream and split."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

from speechbert.data.datasets import SUPERB_KS_CLASSES
from speechbert.data.feature_cache import CachedFeatures, CacheKey, FeatureCache
from speechbert.data.manifest import Utterance, write_trials
from speechbert.data.text import CharVocab
from speechbert.errors import ConfigError
from speechbert.lightning import superb_run
from speechbert.lightning.superb import (
    AsrTaskConfig,
    KsTaskConfig,
    SvTaskConfig,
    TaskConfig,
    head_optim,
)
from speechbert.lightning.superb_run import (
    Splits,
    TaskFeatures,
    build_task,
    cache_features,
    cell_trainer_config,
    run_cell,
    train_and_test,
)
from speechbert.lightning.trainer import TrainerConfig, seed_everything
from speechbert.models.fbank import FbankUpstream
from speechbert.models.heads import asr, ks, specaug, sv
from speechbert.models.load import LoadedUpstream, UpstreamSpec
from speechbert.models.upstream import UpstreamOutput
from tests.lightning.superb_corpus import write_keyword_manifests

DIM = 8
"""Width of the synthetic features."""
TRAINER = TrainerConfig(accelerator="cpu", devices="1", progress_bar=False, log_every_n_steps=5,
                        num_sanity_val_steps=0)
"""One CPU process, quiet."""
FeatureFn = Callable[[Utterance, torch.Generator], list[torch.Tensor]]


pytestmark = pytest.mark.usefixtures("one_thread")


def _utts(prefix: str, rows: Sequence[tuple[str, str | None, str | None]]) -> list[Utterance]:
    """Utterances (speaker, text, label) with no audio behind them (features are synthetic)."""
    return [Utterance(id=f"{prefix}{i}", path=Path(f"/nonexistent/{prefix}{i}.wav"),
                      num_samples=16_000, speaker=spk, text=text, label=label)
            for i, (spk, text, label) in enumerate(rows)]


def _cache(root: Path, split: str, utts: list[Utterance], fn: FeatureFn) -> CachedFeatures:
    gen = torch.Generator().manual_seed(len(split) + len(utts))
    key = CacheKey(upstream="name synthetic", manifest=f"synthetic {split}")
    return FeatureCache(root).get_or_compute(
        key, utts, lambda chunk: [fn(u, gen) for u in chunk], progress=False)


def _codes(names: list[str], seed: int) -> dict[str, torch.Tensor]:
    """A random unit-scale vector per name (class, letter, speaker)."""
    gen = torch.Generator().manual_seed(seed)
    return {name: 2.0 * torch.randn(DIM, generator=gen) for name in names}


def _two_layers(signal: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
    """Layer 0 is noise only, layer 1 carries ``signal`` (T, D): the weights should favour 1."""
    return [torch.randn(signal.shape, generator=gen),
            signal + 0.3 * torch.randn(signal.shape, generator=gen)]


def _fit(task: TaskConfig, splits: Splits, run_dir: Path,
         ckpt_path: str | None = None) -> dict:
    seed_everything(0)
    module, data = build_task(task, TaskFeatures.from_cache(splits, 50.0), seed=0)
    return train_and_test(module, data, cell_trainer_config(TRAINER, task), run_dir,
                          task.optim.max_steps, ckpt_path)


def _ks_splits(root: Path) -> Splits:
    codes = _codes(list(SUPERB_KS_CLASSES), seed=1)

    def features(u: Utterance, gen: torch.Generator) -> list[torch.Tensor]:
        assert u.label is not None
        return _two_layers(codes[u.label].expand(10, DIM), gen)

    rows = {split: [("s", None, c) for c in SUPERB_KS_CLASSES for _ in range(n)]
            for split, n in (("train", 4), ("valid", 2), ("test", 2))}
    return {split: _cache(root, split, _utts(split, r), features) for split, r in rows.items()}


def _ks_task(max_steps: int) -> KsTaskConfig:
    return KsTaskConfig(head=ks.KsHeadConfig(project_dim=16), batch_size=16,
                        val_every_n_steps=20, optim=head_optim(1e-2, max_steps, 5))


def test_ks_learns_and_weights_the_informative_layer(tmp_path: Path) -> None:
    record = _fit(_ks_task(60), _ks_splits(tmp_path / "cache"), tmp_path / "run")
    assert record["metric"] == "acc" and record["split"] == "test"
    assert record["value"] > 0.9, record
    low, high = record["layer_weights"]
    assert high > low and abs(low + high - 1.0) < 1e-6
    assert record["checkpoint"].endswith("best.ckpt")


def test_ks_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    splits = _ks_splits(tmp_path / "cache")
    first = _fit(_ks_task(10), splits, tmp_path / "run")
    assert first["steps"] == 10
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    second = _fit(_ks_task(30), splits, tmp_path / "run", ckpt_path=str(last))
    assert second["steps"] == 30
    assert torch.load(last, weights_only=True)["global_step"] == 30


def test_asr_learns_letter_sequences(tmp_path: Path) -> None:
    letters = "ABCD"
    codes = _codes(list(letters), seed=2)

    def features(u: Utterance, gen: torch.Generator) -> list[torch.Tensor]:
        assert u.text is not None
        frames = [torch.zeros(1, DIM)]
        for ch in u.text:
            frames += [codes[ch].expand(3, DIM), torch.zeros(1, DIM)]
        return _two_layers(torch.cat(frames), gen)  # (T, D) per layer

    gen = torch.Generator().manual_seed(3)
    texts = ["".join(letters[int(i)] for i in torch.randint(0, 4, (int(n),), generator=gen))
             for n in torch.randint(2, 5, (96,), generator=gen)]
    rows = {"train": texts[:64], "valid": texts[64:80], "test": texts[80:]}
    splits = {split: _cache(tmp_path / "cache", split,
                            _utts(split, [("s", t, None) for t in r]), features)
              for split, r in rows.items()}
    task = AsrTaskConfig(head=asr.AsrHeadConfig(project_dim=16, hidden_size=16, num_layers=1,
                                                dropout=0.0),
                         batch_size=16, val_every_n_steps=50, optim=head_optim(2e-2, 150, 10),
                         specaug=specaug.off())
    record = _fit(task, splits, tmp_path / "run")
    assert record["metric"] == "wer"
    assert record["metrics"]["cer"] < 0.2, record
    assert len(CharVocab()) == task.head.vocab_size


def test_sv_separates_speakers(tmp_path: Path) -> None:
    speakers = [f"spk{i}" for i in range(8)]
    codes = _codes(speakers, seed=4)

    def features(u: Utterance, gen: torch.Generator) -> list[torch.Tensor]:
        return _two_layers(codes[u.speaker].expand(12, DIM), gen)

    train = _utts("train", [(s, None, None) for s in speakers for _ in range(4)])
    test = _utts("test", [(s, None, None) for s in speakers for _ in range(2)])
    trials = [(int(a.speaker == b.speaker), a.id, b.id)
              for i, a in enumerate(test) for b in test[i + 1:]]
    write_trials(tmp_path / "trials.tsv", trials)
    splits = {"train": _cache(tmp_path / "cache", "train", train, features),
              "test": _cache(tmp_path / "cache", "test", test, features)}
    task = SvTaskConfig(trials=str(tmp_path / "trials.tsv"), crop_seconds=0.2, batch_size=16,
                        head=sv.XvectorConfig(project_dim=16, tdnn_dim=16, stats_dim=16,
                                              embed_dim=16),
                        optim=head_optim(1e-2, 60, 5))
    record = _fit(task, splits, tmp_path / "run")
    assert record["metric"] == "eer" and record["value"] < 0.1, record
    assert 0.0 <= record["metrics"]["min_dcf"] <= 1.0
    assert record["checkpoint"].endswith("last.ckpt")


# ------------------------------------------------------------------ whole cells on audio


def _cell_task(manifests: dict[str, str], max_steps: int) -> KsTaskConfig:
    return KsTaskConfig(train_manifest=manifests["train"], valid_manifest=manifests["valid"],
                        test_manifest=manifests["test"], head=ks.KsHeadConfig(project_dim=8),
                        batch_size=8, val_every_n_steps=2, optim=head_optim(1e-3, max_steps, 1))


def test_cell_writes_result_and_is_skipped_when_finished(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = write_keyword_manifests(tmp_path)
    run_dir = tmp_path / "runs" / "fbank" / "ks"
    record = run_cell(UpstreamSpec(), _cell_task(manifests, 3), TRAINER, run_dir=run_dir,
                      cache_dir=tmp_path / "cache", config_text="task: ks\n")
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved == record
    assert {"upstream", "params", "macs_per_second", "task", "metric", "value", "split",
            "layer_weights"} <= saved.keys()
    assert (saved["upstream"], saved["task"], saved["metric"], saved["params"]) == (
        "fbank", "ks", "acc", 0)
    assert saved["layer_weights"] == [1.0] and saved["steps"] == 3
    assert (run_dir / "config.yaml").read_text() == "task: ks\n"

    def no_loading(spec: UpstreamSpec) -> LoadedUpstream:
        raise AssertionError("a finished cell must not load its upstream")

    monkeypatch.setattr(superb_run, "load_upstream", no_loading)
    again = run_cell(UpstreamSpec(), _cell_task(manifests, 50), TRAINER, run_dir=run_dir,
                     cache_dir=tmp_path / "cache")
    assert again == record
    other = UpstreamSpec(fbank_mel_bins=40)  # another upstream must not reuse this result
    with pytest.raises(ConfigError, match="was run on another upstream.*Delete the folder"):
        run_cell(other, _cell_task(manifests, 3), TRAINER, run_dir=run_dir,
                 cache_dir=tmp_path / "cache")


def test_unfinished_cell_resumes_and_reuses_the_cache(tmp_path: Path) -> None:
    manifests = write_keyword_manifests(tmp_path)
    run_dir = tmp_path / "runs" / "fbank" / "ks"
    run_cell(UpstreamSpec(), _cell_task(manifests, 2), TRAINER, run_dir=run_dir,
             cache_dir=tmp_path / "cache")
    (run_dir / "result.json").unlink()  # as if the first run had died after its last step
    record = run_cell(UpstreamSpec(), _cell_task(manifests, 4), TRAINER, run_dir=run_dir,
                      cache_dir=tmp_path / "cache")
    assert record["steps"] == 4


class CountingUpstream(torch.nn.Module):
    """FBANK that counts the utterances it encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = FbankUpstream()
        self.downsample_rate, self.num_layers = 160, 1
        self.hidden_size = self.inner.hidden_size
        self.seen = 0

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        self.seen += len(wavs)
        return self.inner(wavs, lengths)


def test_second_run_reads_the_cache_without_the_upstream(tmp_path: Path) -> None:
    manifests = write_keyword_manifests(tmp_path)
    counting = CountingUpstream()
    loaded = LoadedUpstream(module=counting, identity="name counting", subnet=None, params=0,
                            macs_per_second=0)
    task = _cell_task(manifests, 1)
    first = cache_features(loaded, task, FeatureCache(tmp_path / "cache"))
    assert counting.seen == 40 and not any(f.from_cache for f in first.values())
    second = cache_features(loaded, task, FeatureCache(tmp_path / "cache"))
    assert counting.seen == 40 and all(f.from_cache for f in second.values())
    assert [u.num_samples for u in second["train"].utterances] == sorted(
        u.num_samples for u in second["train"].utterances)
