"""One SUPERB cell (upstream x task): cache features, train the head, test, write ``result.json``.

A cell's run folder (``runs/superb/<upstream>/<task>/``) holds ``config.yaml``,
``checkpoints/`` (``last.ckpt``, the newest numbered one and ``best.ckpt`` when a dev split
picks the checkpoint), TensorBoard and CSV logs and, once the test is done, ``result.json``:

``upstream``, ``kind``, ``params``, ``macs_per_second``, ``task`` (asr/ks/sv), ``metric``
(wer/acc/eer), ``value``, ``split`` (test), ``layer_weights`` (softmaxed featurizer weights),
``metrics`` (every test metric: cer, min_dcf, ...), ``steps``, ``checkpoint`` (tested) and
``wall_seconds`` (of the run that finished the cell).

A cell whose ``result.json`` exists is finished and skipped; otherwise ``resume=auto`` continues
from ``checkpoints/last.ckpt``. Both only for the same upstream: ``upstream.txt`` records its
identity (checkpoint path, size and mtime; FBANK settings; subnet), and a folder of another
upstream (say, a retrained teacher) is refused with the fix instead of reused.

Features come from the shared :class:`FeatureCache`: each split is computed once per upstream
(with a progress bar), utterances sorted by length so batches of the upstream hold little
padding.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from speechbert.data.datasets import UNKNOWN, AsrDataset, KeywordDataset, SpeakerDataset
from speechbert.data.feature_cache import CachedFeatures, FeatureCache, upstream_compute_fn
from speechbert.data.manifest import read_manifest, read_trials
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
from speechbert.lightning.superb_data import LabelledFeatures, SuperbDataModule
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
    for split, manifest in task_manifests(task).items():
        utterances = sorted(read_manifest(manifest), key=lambda u: u.num_samples)
        key = loaded.cache_key(manifest, fp16=task.cache_fp16)
        out[split] = cache.get_or_compute(key, utterances, compute,
                                          batch_size=task.cache_batch_size)
        log.info("%s %s: %d utterances %s", task.name, split, len(utterances),
                 "from the cache" if out[split].from_cache else "computed")
    return out


def build_task(task: TaskConfig, splits: Splits, frames_per_second: float,
               seed: int) -> tuple[SuperbModule, SuperbDataModule]:
    """The Lightning module and data module of ``task`` over cached ``splits``."""
    featurizer = Featurizer(splits["train"].num_layers, layer_norm=task.layer_norm)
    hparams = json.loads(json.dumps(asdict(task)))
    match task:
        case AsrTaskConfig():
            return _asr(task, splits, featurizer, hparams, seed)
        case KsTaskConfig():
            return _ks(task, splits, featurizer, hparams, seed)
        case SvTaskConfig():
            return _sv(task, splits, featurizer, hparams, frames_per_second, seed)
    raise ConfigError(f"task {type(task).__name__} is not a SUPERB task: use task=asr, ks or sv")


def input_dim(splits: Splits) -> int:
    """The feature width D every cached layer shares."""
    dims = set(splits["train"].dims)
    if len(dims) != 1:
        raise ConfigError(f"the upstream's layers differ in width {sorted(dims)}; the weighted "
                          f"layer sum needs one width")
    return dims.pop()


def _data(task: TaskConfig, splits: Splits, targets: dict[str, list[Any]], seed: int,
          crop_frames: int | None = None,
          weights: list[float] | None = None) -> SuperbDataModule:
    labelled = {split: LabelledFeatures(feats, targets[split],
                                        crop_frames if split == "train" else None)
                for split, feats in splits.items()}
    return SuperbDataModule(labelled["train"], labelled.get("valid"), labelled["test"],
                            task.batch_size, task.eval_batch_size, weights, seed)


def _asr(task: AsrTaskConfig, splits: Splits, featurizer: Featurizer, hparams: dict[str, Any],
         seed: int) -> tuple[SuperbModule, SuperbDataModule]:
    vocab = CharVocab()
    if task.head.vocab_size != len(vocab):
        raise ConfigError(f"task.head.vocab_size must be {len(vocab)} (SUPERB's characters + "
                          f"blank), got {task.head.vocab_size}")
    targets = {split: list(AsrDataset(feats.utterances, vocab).tokens)
               for split, feats in splits.items()}
    module = AsrModule(featurizer, AsrHead(input_dim(splits), task.head), task.optim, vocab,
                       hparams)
    return module, _data(task, splits, targets, seed)


def _ks(task: KsTaskConfig, splits: Splits, featurizer: Featurizer, hparams: dict[str, Any],
        seed: int) -> tuple[SuperbModule, SuperbDataModule]:
    targets = {split: KeywordDataset(feats.utterances, unknown_class=UNKNOWN).targets
               for split, feats in splits.items()}
    classes = len(KeywordDataset([]).classes)
    if task.head.num_classes != classes:
        raise ConfigError(f"task.head.num_classes must be {classes} (SUPERB's keyword "
                          f"classes), got {task.head.num_classes}")
    weights = class_balanced_weights(targets["train"]) if task.class_balanced else None
    module = KsModule(featurizer, KsHead(input_dim(splits), task.head), task.optim, hparams)
    return module, _data(task, splits, targets, seed, weights=weights)


def _sv(task: SvTaskConfig, splits: Splits, featurizer: Featurizer, hparams: dict[str, Any],
        frames_per_second: float, seed: int) -> tuple[SuperbModule, SuperbDataModule]:
    speakers = SpeakerDataset(splits["train"].utterances)
    targets = {"train": speakers.targets, "test": [0] * len(splits["test"])}
    loss = AMSoftmaxLoss(task.head.embed_dim, len(speakers.speakers), task.am_scale,
                         task.am_margin)
    trials = read_trials(task.trials)
    module = SvModule(featurizer, XvectorHead(input_dim(splits), task.head), loss, task.optim,
                      trials, hparams)
    crop = max(1, round(task.crop_seconds * frames_per_second))
    return module, _data(task, splits, targets, seed, crop_frames=crop)


def cell_trainer_config(trainer: TrainerConfig, task: TaskConfig) -> TrainerConfig:
    """The trainer settings with the task's validation and checkpoint cadence."""
    return dataclasses.replace(
        trainer, val_every_n_steps=task.val_every_n_steps,
        checkpoint_every_n_steps=task.val_every_n_steps,
        limit_val_batches=trainer.limit_val_batches if task.valid_manifest else 0,
        num_sanity_val_steps=trainer.num_sanity_val_steps if task.valid_manifest else 0)


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
    splits = cache_features(loaded, task, FeatureCache(cache_dir))
    seed_everything(seed)
    fps = SAMPLE_RATE / int(getattr(loaded.module, "downsample_rate", 320))
    module, data = build_task(task, splits, fps, seed)
    record = train_and_test(module, data, cell_trainer_config(trainer_cfg, task), run,
                            task.optim.max_steps, ckpt_path)
    record = {"upstream": spec.name, "kind": spec.kind, "params": loaded.params,
              "macs_per_second": loaded.macs_per_second, "task": task.name, **record,
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
