"""SUPERB heads through their Lightning modules on separable synthetic features; cells: resume,
skip when finished, result.json; the feature cache is computed once per upstream and split."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

from speechbert.data.datasets import SUPERB_KS_CLASSES
from speechbert.data.feature_cache import CachedFeatures, CacheKey, FeatureCache
from speechbert.data.manifest import Utterance, read_manifest, write_manifest, write_trials
from speechbert.data.text import CharVocab
from speechbert.errors import ConfigError
from speechbert.lightning import superb_run
from speechbert.lightning.superb import (
    AsrTaskConfig,
    KsTaskConfig,
    SvModule,
    SvTaskConfig,
    TaskConfig,
    head_optim,
)
from speechbert.lightning.superb_data import draw_trials, hold_out_speakers
from speechbert.lightning.superb_run import (
    Splits,
    TaskFeatures,
    build_task,
    cache_features,
    cell_trainer_config,
    choose_features,
    run_cell,
    task_features,
    train_and_test,
)
from speechbert.lightning.trainer import TrainerConfig, build_trainer, seed_everything
from speechbert.models.fbank import FbankUpstream
from speechbert.models.heads import asr, ks, specaug, sv
from speechbert.models.load import LoadedUpstream, UpstreamSpec, load_upstream
from speechbert.models.upstream import UpstreamOutput
from tests.cli.supernet_checkpoint import write_teacher
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


# ------------------------------------------------------------------ online features, auto, SV dev

BUNDLED = Path(__file__).parents[2] / "data" / "mini" / "manifests"
"""Manifests of the bundled corpus."""


def _bundled_slice(tmp_path: Path, corpus: str, splits: dict[str, str],
                   step: int) -> dict[str, str]:
    """Every ``step``-th row of the bundled ``corpus`` splits, as manifests under ``tmp_path``."""
    if not (BUNDLED / corpus).is_dir():
        pytest.fail("bundled corpus missing: run `make setup`")
    return {split: str(write_manifest(tmp_path / f"{corpus}-{split}.tsv",
                                      read_manifest(BUNDLED / corpus / f"{name}.tsv")[::step]))
            for split, name in splits.items()}


def _head_after(task: TaskConfig, mode: str, tmp_path: Path) -> dict[str, torch.Tensor]:
    """Featurizer and head weights after training ``task`` with ``task.features=mode``."""
    loaded = load_upstream(UpstreamSpec())  # FBANK: deterministic, row by row
    features = task_features(loaded, dataclasses.replace(task, features=mode),
                             tmp_path / "cache")
    assert (features.cached is None) == (mode == "online")
    seed_everything(0)
    module, data = build_task(task, features, seed=0)
    trainer = build_trainer(cell_trainer_config(TRAINER, task), tmp_path / mode,
                            task.optim.max_steps)
    trainer.fit(module, datamodule=data)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_online_and_cached_features_train_the_same_ks_head(tmp_path: Path) -> None:
    """The frozen upstream inside the step and the fp32 cache give equal weights (5 steps)."""
    manifests = _bundled_slice(tmp_path, "speech_commands",
                               {"train": "train", "valid": "valid", "test": "test"}, step=40)
    task = KsTaskConfig(train_manifest=manifests["train"], valid_manifest=manifests["valid"],
                        test_manifest=manifests["test"], head=ks.tiny(), batch_size=8,
                        val_every_n_steps=5, cache_fp16=False, gradient_clip_val=1.0,
                        optim=head_optim(1e-2, 5, 1))
    cached = _head_after(task, "cache", tmp_path)
    online = _head_after(task, "online", tmp_path)
    assert _max_difference(cached, online) < 1e-4
    assert _max_difference(cached, _ks_initial(task, tmp_path)) > 1e-3  # it did train


def _ks_initial(task: KsTaskConfig, tmp_path: Path) -> dict[str, torch.Tensor]:
    loaded = load_upstream(UpstreamSpec())
    seed_everything(0)
    features = task_features(loaded, dataclasses.replace(task, features="cache"),
                             tmp_path / "cache")
    seed_everything(0)
    module, _ = build_task(task, features, seed=0)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_online_and_cached_features_train_the_same_asr_head_with_specaugment(
        tmp_path: Path) -> None:
    manifests = _bundled_slice(tmp_path, "librispeech", {
        "train": "train-clean-100", "valid": "dev-clean", "test": "test-clean"}, step=60)
    task = AsrTaskConfig(train_manifest=manifests["train"], valid_manifest=manifests["valid"],
                         test_manifest=manifests["test"], batch_size=4, val_every_n_steps=4,
                         cache_fp16=False, head=asr.AsrHeadConfig(
                             project_dim=16, hidden_size=16, num_layers=1, dropout=0.0),
                         specaug=specaug.SpecAugmentConfig(), optim=head_optim(1e-2, 4, 1))
    cached = _head_after(task, "cache", tmp_path)
    online = _head_after(task, "online", tmp_path)
    assert _max_difference(cached, online) < 1e-4


def test_auto_caches_what_fits_on_the_disk_and_says_why(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    manifests = write_keyword_manifests(tmp_path)
    task = _cell_task(manifests, 1)  # features=auto by default
    assert task.features == "auto"
    loaded = load_upstream(UpstreamSpec())
    cache = FeatureCache(tmp_path / "cache")
    # 20 s of audio at the probe's rate (98 frames in 1 s) = 1960 frames, 240 dims, fp16
    need = 1960 * 240 * 2
    monkeypatch.setattr(superb_run, "free_disk_bytes", lambda folder: 2 * need)
    assert choose_features(loaded, task, cache)[0] == "cache"  # share 0.5 of 2 x need
    monkeypatch.setattr(superb_run, "free_disk_bytes", lambda folder: 2 * need - 1)
    mode, why = choose_features(loaded, task, cache)
    assert mode == "online" and f"{need / 1e9:.3g} GB" in why and "1 layers x 1960 frames" in why
    with caplog.at_level(logging.INFO, logger="speechbert.lightning.superb_run"):
        features = task_features(loaded, task, tmp_path / "cache")
    assert features.cached is None and "ks features: online (task.features=auto" in caplog.text
    explicit = dataclasses.replace(task, features="cache")
    assert choose_features(loaded, explicit, cache) == ("cache", "task.features=cache")
    cache_features(loaded, task, cache)  # once cached, nothing is missing: auto reads it
    assert choose_features(loaded, task, cache)[0] == "cache"


def test_online_checkpoints_leave_the_upstream_out_and_resume(tmp_path: Path) -> None:
    teacher = write_teacher(tmp_path / "hubert.ckpt")
    spec = UpstreamSpec(name="tiny", kind="hubert", path=str(teacher))
    manifests = write_keyword_manifests(tmp_path)
    task = dataclasses.replace(_cell_task(manifests, 2), features="online")
    run_dir = tmp_path / "runs" / "tiny" / "ks"
    first = run_cell(spec, task, TRAINER, run_dir=run_dir, cache_dir=tmp_path / "cache")
    assert first["features"] == "online" and first["steps"] == 2
    assert not (tmp_path / "cache").exists()
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state and not [k for k in state if k.startswith("upstream.")]
    assert {k.split(".")[0] for k in state} == {"featurizer", "head"}
    (run_dir / "result.json").unlink()
    again = run_cell(spec, dataclasses.replace(task, optim=head_optim(1e-3, 4, 1)), TRAINER,
                     run_dir=run_dir, cache_dir=tmp_path / "cache")
    assert again["steps"] == 4


def test_task_sets_clipping_accumulation_and_counts_validation_in_optimizer_steps() -> None:
    task = SvTaskConfig(gradient_clip_val=1000.0, accumulate_grad_batches=5,
                        val_every_n_steps=10, dev_speakers=2)
    cfg = cell_trainer_config(TRAINER, task)
    assert (cfg.gradient_clip_val, cfg.accumulate_grad_batches) == (1000.0, 5)
    assert (cfg.val_every_n_steps, cfg.checkpoint_every_n_steps) == (50, 10)
    assert cfg.limit_val_batches is None  # the held-out speakers' trials are validated
    kept = cell_trainer_config(TRAINER, SvTaskConfig())
    assert (kept.gradient_clip_val, kept.accumulate_grad_batches) == (
        TRAINER.gradient_clip_val, TRAINER.accumulate_grad_batches)
    assert kept.limit_val_batches == 0


def test_held_out_speakers_and_their_trials() -> None:
    utts = _utts("u", [(f"s{i % 6}", None, None) for i in range(30)])
    kept, held = hold_out_speakers(utts, 2, seed=0)
    assert sorted(kept + held) == list(range(30))
    held_speakers = {utts[i].speaker for i in held}
    assert len(held_speakers) == 2 and not held_speakers & {utts[i].speaker for i in kept}
    assert hold_out_speakers(utts, 2, seed=0) == (kept, held)
    trials = draw_trials([utts[i] for i in held], 100, seed=0)
    speaker = {u.id: u.speaker for u in utts}
    assert len(trials) == 100 and sum(label for label, _, _ in trials) == 50
    for label, a, b in trials:
        assert a != b and {a, b} <= {utts[i].id for i in held}
        assert label == int(speaker[a] == speaker[b])
    with pytest.raises(ConfigError, match="task.dev_speakers=6 must be below the 6"):
        hold_out_speakers(utts, 6, seed=0)


def test_sv_dev_speakers_pick_the_checkpoint_and_short_utterances_are_dropped(
        tmp_path: Path) -> None:
    speakers = [f"spk{i}" for i in range(10)]
    codes = _codes(speakers, seed=4)

    def features(u: Utterance, gen: torch.Generator) -> list[torch.Tensor]:
        return _two_layers(codes[u.speaker].expand(12, DIM), gen)

    rows = [(s, None, None) for s in speakers for _ in range(4)]
    train = [dataclasses.replace(u, num_samples=8_000) if i % 4 == 0 else u  # 0.5 s: too short
             for i, u in enumerate(_utts("train", rows))]
    test = _utts("test", [(s, None, None) for s in speakers[:4] for _ in range(2)])
    trials = [(int(a.speaker == b.speaker), a.id, b.id)
              for i, a in enumerate(test) for b in test[i + 1:]]
    write_trials(tmp_path / "trials.tsv", trials)
    splits = {"train": _cache(tmp_path / "cache", "train", train, features),
              "test": _cache(tmp_path / "cache", "test", test, features)}
    task = SvTaskConfig(trials=str(tmp_path / "trials.tsv"), crop_seconds=0.2, batch_size=8,
                        min_train_seconds=1.0, dev_speakers=3, dev_trials=40,
                        val_every_n_steps=10,
                        head=sv.XvectorConfig(project_dim=16, tdnn_dim=16, stats_dim=16,
                                              embed_dim=16),
                        optim=head_optim(1e-2, 30, 5))
    seed_everything(0)
    module, data = build_task(task, TaskFeatures.from_cache(splits, 50.0), seed=0)
    assert isinstance(module, SvModule) and data.valid is not None
    assert len(data.train) == 7 * 3  # 7 training speakers, 3 of 4 utterances long enough
    assert module.loss.weight.shape[0] == 7  # AM-softmax classes: the training speakers
    assert len(module.dev_trials) == 40
    record = train_and_test(module, data, cell_trainer_config(TRAINER, task), tmp_path / "run",
                            task.optim.max_steps, None)
    assert record["checkpoint"].endswith("best.ckpt") and record["metric"] == "eer"
