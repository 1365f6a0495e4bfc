"""One SUPERB cell (upstream x task): features, train the head, test, write ``result.json``.

A cell's run folder (``runs/superb/<upstream>/<task>/``) holds ``config.yaml``,
``checkpoints/`` (``last.ckpt``, the newest numbered one and ``best.ckpt`` when a dev split
picks the checkpoint), TensorBoard and CSV logs, ``dev_trials.tsv`` for SV with held-out dev
speakers and, once the test is done, ``result.json``:

``upstream``, ``kind``, ``params``, ``macs_per_second``, ``task`` (asr/ks/sv), ``features``
(cache/online), ``metric`` (wer/acc/eer), ``value``, ``split`` (test), ``layer_weights``
(softmaxed featurizer weights), ``metrics`` (every test metric: cer, min_dcf, ...), ``steps``,
``checkpoint`` (tested) and ``wall_seconds`` (of the run that finished the cell).

A cell whose ``result.json`` exists is finished and skipped; otherwise ``resume=auto`` continues
from ``checkpoints/last.ckpt``. Both only for the same upstream: ``upstream.txt`` records its
identity (checkpoint path, size and mtime; FBANK settings; subnet), and a folder of another
upstream (say, a retrained teacher) is refused with the fix instead of reused.

Features (``task.features``): ``cache`` reads the shared :class:`FeatureCache`, each split
computed once per upstream (with a progress bar), utterances sorted by length so batches of the
upstream hold little padding; ``online`` runs the frozen upstream inside every step, on the same
length-sorted utterances, so both modes see the same batches; ``auto`` estimates the cache
(layers x frames x width x bytes) against the free disk of ``cache_dir`` and logs its choice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from speechbert.data.datasets import UNKNOWN, AsrDataset, KeywordDataset
from speechbert.data.feature_cache import (
    CachedFeatures,
    FeatureCache,
    cache_bytes,
    free_disk_bytes,
    upstream_compute_fn,
)
from speechbert.data.manifest import Utterance, read_manifest, read_trials, write_trials
from speechbert.data.text import CharVocab
from speechbert.errors import ConfigError, ManifestError
from speechbert.lightning.superb import (
    AsrModule,
    AsrTaskConfig,
    KsModule,
    KsTaskConfig,
    SuperbModule,
    SvModule,
    SvTaskConfig,
    TaskConfig,
)
from speechbert.lightning.superb_data import (
    LabelledAudio,
    LabelledFeatures,
    SuperbDataModule,
    draw_trials,
    hold_out_speakers,
)
from speechbert.lightning.trainer import (
    TrainerConfig,
    build_trainer,
    resume_checkpoint,
    seed_everything,
)
from speechbert.losses.aam_softmax import AMSoftmaxLoss
from speechbert.models.heads.asr import AsrHead
from speechbert.models.heads.featurizer import Featurizer
from speechbert.models.heads.ks import KsHead, class_balanced_weights
from speechbert.models.heads.specaug import SpecAugment
from speechbert.models.heads.sv import XvectorHead
from speechbert.models.load import (
    LoadedUpstream,
    UpstreamSpec,
    describe,
    load_upstream,
    upstream_identity,
)

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
"""Written into the run folder when the cell is finished."""
UPSTREAM_FILE = "upstream.txt"
"""The upstream's identity (:func:`~speechbert.models.load.upstream_identity`), written when the
cell starts: a folder holding another checkpoint's head or result is refused, not reused."""
DEV_TRIALS_FILE = "dev_trials.tsv"
"""SV: the dev trial list drawn among the held-out training speakers, written for inspection."""
SAMPLE_RATE = 16_000
"""Samples per second of the audio the upstreams read."""
Splits = dict[str, CachedFeatures]
"""Cached features by split name: train, valid (if the task has one), test."""


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    """The cell's result record, or None when the cell is not finished."""
    path = Path(run_dir) / RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def task_manifests(task: TaskConfig) -> dict[str, str]:
    """The task's manifests by split (no ``valid`` when the task has none)."""
    splits = {"train": task.train_manifest, "valid": task.valid_manifest,
              "test": task.test_manifest}
    return {split: path for split, path in splits.items() if path}


def check_manifests(task: TaskConfig) -> None:
    """Raise :class:`ManifestError` naming the first missing manifest or trial list."""
    paths = {f"task.{split}_manifest": path for split, path in task_manifests(task).items()}
    if isinstance(task, SvTaskConfig):
        paths["task.trials"] = task.trials
    for key, path in paths.items():
        if not Path(path).is_file():
            raise ManifestError(f"{path}: not found ({key}); run the corpus's data_prep command "
                                f"or override {key}=<path>")


def cache_features(loaded: LoadedUpstream, task: TaskConfig, cache: FeatureCache) -> Splits:
    """Each split's hidden states from the cache, computing the missing ones (sorted by length)."""
    compute = upstream_compute_fn(loaded.module)
    out: Splits = {}
    for split, utterances in task_utterances(task).items():
        key = loaded.cache_key(task_manifests(task)[split], fp16=task.cache_fp16)
        out[split] = cache.get_or_compute(key, utterances, compute,
                                          batch_size=task.cache_batch_size)
        log.info("%s %s: %d utterances %s", task.name, split, len(utterances),
                 "from the cache" if out[split].from_cache else "computed")
    return out


def task_utterances(task: TaskConfig) -> dict[str, list[Utterance]]:
    """Each split's manifest rows, sorted by length (the order the cache stores them in)."""
    return {split: sorted(read_manifest(manifest), key=lambda u: u.num_samples)
            for split, manifest in task_manifests(task).items()}


@dataclass
class UpstreamShape:
    """What a cache of an upstream's hidden states holds per second of audio."""

    layer_dims: list[int]
    """Width of each hidden state."""
    frames_per_second: float
    """Frames per second of 16 kHz audio."""


def probe_upstream(module: nn.Module) -> UpstreamShape:
    """Run ``module`` on 1 s of silence: its layers' widths and frame rate."""
    with torch.no_grad():
        out = module(torch.zeros(1, SAMPLE_RATE), torch.tensor([SAMPLE_RATE]))
    return UpstreamShape([int(h.shape[-1]) for h in out.hidden_states], float(out.lengths[0]))


def choose_features(loaded: LoadedUpstream, task: TaskConfig,
                    cache: FeatureCache) -> tuple[str, str]:
    """``("cache" | "online", why)`` for ``task.features``; ``auto`` caches when the splits not
    cached yet (layers x frames x width x bytes) fit in ``task.cache_disk_share`` of the free
    disk of the cache folder."""
    if task.features != "auto":
        return task.features, f"task.features={task.features}"
    shape = probe_upstream(loaded.module)
    missing = [(split, utts) for split, utts in task_utterances(task).items()
               if cache.lookup(loaded.cache_key(task_manifests(task)[split], task.cache_fp16),
                               utts) is None]
    frames = round(sum(u.num_samples for _, utts in missing for u in utts)
                   * shape.frames_per_second / SAMPLE_RATE)
    need = cache_bytes(shape.layer_dims, frames, task.cache_fp16)
    free = free_disk_bytes(cache.root)
    mode = "cache" if need <= task.cache_disk_share * free else "online"
    why = (f"task.features=auto: caching {len(missing)} split(s) needs about {need / 1e9:.3g} GB "
           f"({len(shape.layer_dims)} layers x {frames} frames x {max(shape.layer_dims)} wide x "
           f"{2 if task.cache_fp16 else 4} bytes), {free / 1e9:.3g} GB free under {cache.root}, "
           f"share {task.cache_disk_share}: {mode}")
    return mode, why


@dataclass
class TaskFeatures:
    """A task's features by split: cache entries, or utterances the upstream encodes online."""

    utterances: dict[str, list[Utterance]]
    """Manifest rows by split (train, valid when the task has one, test), sorted by length."""
    layer_dims: list[int]
    """Width of each hidden state the featurizer sums."""
    frames_per_second: float
    """Frames per second of audio (converts crop seconds to frames)."""
    cached: Splits | None = None
    """Cache entries by split; None when the upstream runs online."""
    upstream: nn.Module | None = None
    """The frozen upstream for online features; None when cached."""

    @classmethod
    def from_cache(cls, splits: Splits, frames_per_second: float) -> TaskFeatures:
        """Features read from cache entries."""
        return cls(utterances={split: list(f.utterances) for split, f in splits.items()},
                   layer_dims=list(splits["train"].dims), frames_per_second=frames_per_second,
                   cached=splits)

    @classmethod
    def online(cls, task: TaskConfig, upstream: nn.Module) -> TaskFeatures:
        """Features computed by ``upstream`` inside the steps."""
        shape = probe_upstream(upstream)
        return cls(utterances=task_utterances(task), layer_dims=shape.layer_dims,
                   frames_per_second=SAMPLE_RATE / int(getattr(upstream, "downsample_rate", 320)),
                   upstream=upstream)

    def dataset(self, split: str, targets: list[Any], crop_seconds: float | None = None,
                indices: list[int] | None = None) -> LabelledFeatures | LabelledAudio:
        """``split`` with one target per utterance, optional training crops and a subset."""
        if self.cached is not None:
            crop = None if crop_seconds is None else max(
                1, round(crop_seconds * self.frames_per_second))
            return LabelledFeatures(self.cached[split], targets, crop, indices)
        samples = None if crop_seconds is None else max(1, round(crop_seconds * SAMPLE_RATE))
        return LabelledAudio(self.utterances[split], targets, samples, indices)

    def input_dim(self) -> int:
        """The feature width D every layer shares."""
        dims = set(self.layer_dims)
        if len(dims) != 1:
            raise ConfigError(f"the upstream's layers differ in width {sorted(dims)}; the "
                              f"weighted layer sum needs one width")
        return dims.pop()


def task_features(loaded: LoadedUpstream, task: TaskConfig, cache_dir: str | Path) -> TaskFeatures:
    """The task's features in the mode :func:`choose_features` picks (logged with its reason)."""
    cache = FeatureCache(cache_dir)
    mode, why = choose_features(loaded, task, cache)
    log.info("%s features: %s (%s)", task.name, mode, why)
    if mode == "online":
        return TaskFeatures.online(task, loaded.module)
    fps = SAMPLE_RATE / int(getattr(loaded.module, "downsample_rate", 320))
    return TaskFeatures.from_cache(cache_features(loaded, task, cache), fps)


def build_task(task: TaskConfig, features: TaskFeatures,
               seed: int) -> tuple[SuperbModule, SuperbDataModule]:
    """The Lightning module and data module of ``task`` over ``features``."""
    featurizer = Featurizer(len(features.layer_dims), layer_norm=task.layer_norm)
    hparams = json.loads(json.dumps(asdict(task)))
    match task:
        case AsrTaskConfig():
            return _asr(task, features, featurizer, hparams, seed)
        case KsTaskConfig():
            return _ks(task, features, featurizer, hparams, seed)
        case SvTaskConfig():
            return _sv(task, features, featurizer, hparams, seed)
    raise ConfigError(f"task {type(task).__name__} is not a SUPERB task: use task=asr, ks or sv")


def _data(task: TaskConfig, features: TaskFeatures, targets: dict[str, list[Any]], seed: int,
          weights: list[float] | None = None) -> SuperbDataModule:
    data = {split: features.dataset(split, targets[split]) for split in features.utterances}
    return SuperbDataModule(data["train"], data.get("valid"), data["test"], task.batch_size,
                            task.eval_batch_size, weights, seed, task.num_workers)


def _asr(task: AsrTaskConfig, features: TaskFeatures, featurizer: Featurizer,
         hparams: dict[str, Any], seed: int) -> tuple[SuperbModule, SuperbDataModule]:
    vocab = CharVocab()
    if task.head.vocab_size != len(vocab):
        raise ConfigError(f"task.head.vocab_size must be {len(vocab)} (SUPERB's characters + "
                          f"blank), got {task.head.vocab_size}")
    targets = {split: list(AsrDataset(utts, vocab).tokens)
               for split, utts in features.utterances.items()}
    module = AsrModule(featurizer, AsrHead(features.input_dim(), task.head), task.optim, vocab,
                       hparams, SpecAugment(task.specaug), features.upstream)
    return module, _data(task, features, targets, seed)


def _ks(task: KsTaskConfig, features: TaskFeatures, featurizer: Featurizer,
        hparams: dict[str, Any], seed: int) -> tuple[SuperbModule, SuperbDataModule]:
    targets = {split: KeywordDataset(utts, unknown_class=UNKNOWN).targets
               for split, utts in features.utterances.items()}
    classes = len(KeywordDataset([]).classes)
    if task.head.num_classes != classes:
        raise ConfigError(f"task.head.num_classes must be {classes} (SUPERB's keyword "
                          f"classes), got {task.head.num_classes}")
    weights = class_balanced_weights(targets["train"]) if task.class_balanced else None
    module = KsModule(featurizer, KsHead(features.input_dim(), task.head), task.optim, hparams,
                      features.upstream)
    return module, _data(task, features, targets, seed, weights=weights)


def _sv(task: SvTaskConfig, features: TaskFeatures, featurizer: Featurizer,
        hparams: dict[str, Any], seed: int) -> tuple[SuperbModule, SuperbDataModule]:
    utts = features.utterances["train"]
    train_idx, dev_idx = (hold_out_speakers(utts, task.dev_speakers, seed) if task.dev_speakers
                          else (list(range(len(utts))), []))
    min_samples = round(task.min_train_seconds * SAMPLE_RATE)
    train_idx = [i for i in train_idx if utts[i].num_samples >= min_samples]
    if not train_idx:
        raise ConfigError(f"no training utterance of task.train_manifest is at least "
                          f"task.min_train_seconds={task.min_train_seconds} s long; lower it")
    speakers = {s: n for n, s in enumerate(sorted({utts[i].speaker for i in train_idx}))}
    targets = [speakers.get(u.speaker, -1) for u in utts]  # -1: held out, never a loss target
    dev_trials = draw_trials([utts[i] for i in dev_idx], task.dev_trials, seed) if dev_idx else []
    in_trials = {utt_id for _, a, b in dev_trials for utt_id in (a, b)}
    dev_idx = [i for i in dev_idx if utts[i].id in in_trials]
    loss = AMSoftmaxLoss(task.head.embed_dim, len(speakers), task.am_scale, task.am_margin)
    module = SvModule(featurizer, XvectorHead(features.input_dim(), task.head), loss, task.optim,
                      read_trials(task.trials), hparams, dev_trials, features.upstream)
    train = features.dataset("train", targets, task.crop_seconds, train_idx)
    valid = features.dataset("train", targets, indices=dev_idx) if dev_idx else None
    test = features.dataset("test", [0] * len(features.utterances["test"]))
    return module, SuperbDataModule(train, valid, test, task.batch_size, task.eval_batch_size,
                                    seed=seed, num_workers=task.num_workers)


def cell_trainer_config(trainer: TrainerConfig, task: TaskConfig) -> TrainerConfig:
    """The trainer settings with the task's clipping, accumulation and validation cadence
    (``task.val_every_n_steps`` counts optimizer steps; Lightning's interval counts batches)."""
    accumulate = task.accumulate_grad_batches or trainer.accumulate_grad_batches
    clip = trainer.gradient_clip_val if task.gradient_clip_val is None else task.gradient_clip_val
    return dataclasses.replace(
        trainer, val_every_n_steps=task.val_every_n_steps * accumulate,
        checkpoint_every_n_steps=task.val_every_n_steps, gradient_clip_val=clip,
        accumulate_grad_batches=accumulate,
        limit_val_batches=trainer.limit_val_batches if task.has_dev else 0,
        num_sanity_val_steps=trainer.num_sanity_val_steps if task.has_dev else 0)


def best_checkpoint(module: SuperbModule, run_dir: Path,
                    has_valid: bool) -> ModelCheckpoint | None:
    """``checkpoints/best.ckpt`` by the module's dev metric, if it has one and a dev split."""
    if module.monitor is None or not has_valid:
        return None
    metric, mode = module.monitor
    return ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=metric,
                           mode=mode, save_top_k=1, auto_insert_metric_name=False)


def run_cell(spec: UpstreamSpec, task: TaskConfig, trainer_cfg: TrainerConfig, *,
             run_dir: str | Path, cache_dir: str | Path, resume: str = "auto", seed: int = 0,
             config_text: str | None = None) -> dict[str, Any]:
    """Evaluate ``spec`` on ``task`` in ``run_dir`` (skipped when finished); return the record."""
    run = Path(run_dir)
    identity = check_upstream(run, spec)
    done = read_result(run)
    if done is not None:
        log.info("%s: finished (%s); skipping", run, RESULT_FILE)
        return done
    spec.validate()
    task.validate()
    check_manifests(task)
    start = time.monotonic()
    ckpt_path = resume_checkpoint(run, resume)
    run.mkdir(parents=True, exist_ok=True)
    (run / UPSTREAM_FILE).write_text(identity + "\n", encoding="utf-8")
    if config_text is not None:
        (run / "config.yaml").write_text(config_text, encoding="utf-8")
    loaded = load_upstream(spec)
    log.info("upstream %s: %s", spec.name, describe(loaded))
    features = task_features(loaded, task, cache_dir)
    seed_everything(seed)
    module, data = build_task(task, features, seed)
    if isinstance(module, SvModule) and module.dev_trials:
        write_trials(run / DEV_TRIALS_FILE, module.dev_trials)
    record = train_and_test(module, data, cell_trainer_config(trainer_cfg, task), run,
                            task.optim.max_steps, ckpt_path)
    record = {"upstream": spec.name, "kind": spec.kind, "params": loaded.params,
              "macs_per_second": loaded.macs_per_second, "task": task.name,
              "features": "cache" if features.cached is not None else "online", **record,
              "wall_seconds": round(time.monotonic() - start, 1)}
    write_result(run, record)
    return record


def check_upstream(run: Path, spec: UpstreamSpec) -> str:
    """``spec``'s identity; :class:`ConfigError` if ``run`` holds a cell of another one (a
    retrained or replaced checkpoint), which would otherwise be skipped or resumed."""
    identity = upstream_identity(spec)
    path = run / UPSTREAM_FILE
    recorded = path.read_text(encoding="utf-8").strip() if path.is_file() else identity
    if recorded != identity:
        raise ConfigError(f"{run}: this cell was run on another upstream ({recorded}), not on "
                          f"{identity}; its head and result do not apply. Delete the folder to "
                          f"score the new upstream, or pass another out= to keep both")
    return identity


def train_and_test(module: SuperbModule, data: SuperbDataModule, trainer_cfg: TrainerConfig,
                   run: Path, max_steps: int, ckpt_path: str | None) -> dict[str, Any]:
    """Fit (resuming from ``ckpt_path``), test the best or last weights; the record's metric
    part: ``metric``, ``value``, ``split``, ``layer_weights``, ``metrics``, ``steps``,
    ``checkpoint``."""
    best = best_checkpoint(module, run, data.valid is not None)
    trainer = build_trainer(trainer_cfg, run, max_steps,
                            extra_callbacks=[best] if best is not None else [])
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    tested = (best.best_model_path if best is not None else "") or None
    metrics = trainer.test(module, datamodule=data, ckpt_path=tested, verbose=False)[0]
    values = {k.removeprefix("test/"): float(v) for k, v in metrics.items()}
    return {"metric": module.metric, "value": values[module.metric], "split": "test",
            "layer_weights": module.layer_weights(), "metrics": values,
            "steps": int(trainer.global_step),
            "checkpoint": tested or str(run / "checkpoints" / "last.ckpt")}


def write_result(run: Path, record: dict[str, Any]) -> Path:
    """Write ``result.json`` atomically (a crash never leaves a half-written, "finished" cell)."""
    path = run / RESULT_FILE
    partial = run / f".{RESULT_FILE}.partial"
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path
