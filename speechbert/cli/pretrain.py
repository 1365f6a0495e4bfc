"""``speechbert-pretrain``: HuBERT or w2v-BERT pretraining from a Hydra config.

    speechbert-pretrain experiment=hubert_mini_iter1
    speechbert-pretrain experiment=w2vbert_mini trainer=ddp trainer.devices=2 optim.lr=1e-3

The config is :class:`PretrainConfig` (typed: an unknown key or a wrong type fails before any
work). ``configs/pretrain.yaml`` picks one entry per group: ``model`` (presets registered here
from the families' preset functions), ``loss``, ``data``, ``trainer`` and ``experiment``.
Everything a run writes goes to ``run_dir`` (``runs/pretrain/<name>/``): the resolved
``config.yaml``, ``checkpoints/``, TensorBoard and CSV logs, ``metrics.json``; ``resume=auto``
continues from ``checkpoints/last.ckpt`` when it exists. Relative paths are relative to the
working directory (run from the repo root; Hydra does not change it). Where fairseq2 cannot be
imported (a GPU image with HuBERT only), the w2v-BERT presets are :class:`Unavailable`
placeholders that ``run`` refuses with a :class:`ConfigError`; the HuBERT recipes run.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn

from speechbert.cli import CONFIG_DIR
from speechbert.cli.common import run_main, write_run_config
from speechbert.cli.store import from_node, retuple, to_node
from speechbert.data.targets import label_info_path, read_label_info
from speechbert.errors import ConfigError, ManifestError
from speechbert.lightning.datamodule import DataConfig, PretrainDataModule
from speechbert.lightning.pretrain import OptimConfig, PretrainModule
from speechbert.lightning.trainer import (
    TrainerConfig,
    build_trainer,
    fit,
    resume_checkpoint,
    seed_everything,
)
from speechbert.losses.criterion import PretrainCriterion
from speechbert.losses.hubert import HubertCriterion, HubertLossConfig
from speechbert.models.hubert import config as hubert_presets
from speechbert.models.hubert.build import build_hubert_pretrain
from speechbert.models.hubert.config import HubertConfig

try:  # w2v-BERT is fairseq2's model; the HuBERT recipes also run where fairseq2 is missing
    from speechbert.losses.w2vbert import W2VBertCriterion, W2VBertLossConfig
    from speechbert.models.w2vbert import config as w2vbert_presets
    from speechbert.models.w2vbert.build import build_w2vbert
    from speechbert.models.w2vbert.config import W2VBertConfig
    FAIRSEQ2_MISSING: str | None = None
except ImportError as exc:
    FAIRSEQ2_MISSING = str(exc)

log = logging.getLogger(__name__)

W2VBERT_PRESETS = ("tiny", "300m", "600m")
"""Names of the w2v-BERT presets (``speechbert.models.w2vbert.config.PRESETS``); without
fairseq2 they are registered as :class:`Unavailable` placeholders."""

KMEANS_HINT = ("make them with: python -m data_prep.kmeans --features mfcc --n-clusters 100 "
               "--manifests <train.tsv> <valid.tsv> --out runs/kmeans/<name> (iteration 1), "
               "or --features layer --checkpoint <iteration-1 last.ckpt> --layer N (iteration 2)")
"""What to do when label files are missing."""


@dataclass
class Unavailable:
    """A ``model`` or ``loss`` preset whose library is not installed (w2v-BERT without fairseq2)."""

    preset: str = ""
    """The preset as chosen on the command line, e.g. ``model=w2vbert_300m``."""
    reason: str = ""
    """Why it cannot be built (the import error)."""


@dataclass
class PretrainConfig:
    """One pretraining run: model and loss, data, optimizer, trainer, run folder."""

    name: str = MISSING
    """Run name (experiments set it); the run folder is ``runs/pretrain/<name>``."""
    run_dir: str = "runs/pretrain/${name}"
    """Run folder: config.yaml, checkpoints/, tensorboard/, csv/, metrics.json."""
    resume: str = "auto"
    """``auto`` (continue from ``last.ckpt`` if any), ``never``, or a ``.ckpt`` path."""
    seed: int = 0
    """Seed of model initialisation, masking and dropout (the data order uses data.seed)."""
    model: Any = MISSING
    """Model preset of the ``model`` group (hubert_tiny, ..., w2vbert_600m), with overrides."""
    loss: Any = MISSING
    """Loss weights of the model's family: ``loss=hubert`` or ``loss=w2vbert``."""
    data: DataConfig = field(default_factory=DataConfig)
    """Manifests, labels, crops and batching."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW and the learning-rate schedule; ``optim.max_steps`` ends the run."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Devices, precision, clipping, validation and checkpoint cadence."""


def register_configs() -> None:
    """Put the schema, the model presets and the loss configs into Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="pretrain_schema", node=PretrainConfig)
    for preset, make in hubert_presets.PRESETS.items():
        cs.store(group="model", name=f"hubert_{preset}", node=to_node(make()))
    cs.store(group="loss", name="hubert", node=to_node(HubertLossConfig()))
    if FAIRSEQ2_MISSING is not None:
        for preset in W2VBERT_PRESETS:
            cs.store(group="model", name=f"w2vbert_{preset}",
                     node=Unavailable(f"model=w2vbert_{preset}", FAIRSEQ2_MISSING))
        cs.store(group="loss", name="w2vbert", node=Unavailable("loss=w2vbert", FAIRSEQ2_MISSING))
        return
    assert tuple(w2vbert_presets.PRESETS) == W2VBERT_PRESETS, "update W2VBERT_PRESETS"
    for preset, make_w2vbert in w2vbert_presets.PRESETS.items():
        cs.store(group="model", name=f"w2vbert_{preset}", node=to_node(make_w2vbert()))
    cs.store(group="loss", name="w2vbert", node=to_node(W2VBertLossConfig()))


def refuse_unavailable(*configs: Any) -> None:
    """Raise :class:`ConfigError` for a preset whose library is missing (:class:`Unavailable`)."""
    for cfg in configs:
        if isinstance(cfg, Unavailable):
            raise ConfigError(f"{cfg.preset} needs fairseq2, which cannot be imported here "
                              f"({cfg.reason}); install it (pip install fairseq2==0.8.1, with "
                              f"torch 2.9.1) or pick a HuBERT model (model=hubert_base)")


def to_run_config(cfg: DictConfig) -> PretrainConfig:
    """The composed Hydra config as dataclasses (the family configs as the families' own)."""
    run = OmegaConf.to_object(cfg)
    assert isinstance(run, PretrainConfig)
    return dataclasses.replace(run, model=from_node(run.model), loss=from_node(run.loss),
                               optim=retuple(run.optim))


def build_pretraining(model_cfg: Any, loss_cfg: Any) -> tuple[nn.Module, PretrainCriterion]:
    """The model and criterion of the family that ``model_cfg`` belongs to."""
    match model_cfg, loss_cfg:
        case HubertConfig(), HubertLossConfig():
            return build_hubert_pretrain(model_cfg), HubertCriterion(loss_cfg)
        case W2VBertConfig(), W2VBertLossConfig():
            return build_w2vbert(model_cfg), W2VBertCriterion(
                loss_cfg, compile_quantizer=model_cfg.compile_quantizer)
    raise ConfigError(f"loss {type(loss_cfg).__name__} does not go with model "
                      f"{type(model_cfg).__name__}: use loss=hubert with HuBERT models and "
                      f"loss=w2vbert with w2v-BERT models")


def check_data(model_cfg: Any, data: DataConfig) -> None:
    """Fail early when the data cannot feed the model (missing files, labels, lengths)."""
    for path in [*data.train_manifests, *data.valid_manifests]:
        if not Path(path).is_file():
            raise ManifestError(f"{path}: manifest not found (data.train_manifests / "
                                f"data.valid_manifests); run the corpus's data_prep command")
    for path in [*(data.train_labels or []), *(data.valid_labels or [])]:
        if not Path(path).is_file():
            raise ManifestError(f"{path}: label file not found (data.train_labels / "
                                f"data.valid_labels); {KMEANS_HINT}")
    match model_cfg:
        case HubertConfig():
            _check_hubert_labels(model_cfg, data)
        case W2VBertConfig() if data.min_samples < model_cfg.min_samples():
            raise ConfigError(f"data.min_samples must be >= {model_cfg.min_samples()} for "
                              f"w2v-BERT's masking, got {data.min_samples}")


def _check_hubert_labels(model_cfg: HubertConfig, data: DataConfig) -> None:
    if data.train_labels is None:
        raise ConfigError(f"HuBERT needs k-means frame labels: set data.train_labels and "
                          f"data.valid_labels (.km files); {KMEANS_HINT}")
    for path in data.train_labels:
        if label_info_path(path).is_file():
            clusters = read_label_info(path).n_clusters
            if clusters != model_cfg.num_classes:
                raise ConfigError(f"model.num_classes is {model_cfg.num_classes} but {path} "
                                  f"has {clusters} clusters; set model.num_classes={clusters}")


def run(cfg: DictConfig) -> dict[str, float]:
    """Check the config, build everything, write ``config.yaml`` and train."""
    run_cfg = to_run_config(cfg)
    refuse_unavailable(run_cfg.model, run_cfg.loss)
    run_cfg.optim.validate()
    run_cfg.data.validate()
    run_cfg.trainer.validate()
    check_data(run_cfg.model, run_cfg.data)
    ckpt_path = resume_checkpoint(run_cfg.run_dir, run_cfg.resume)
    write_run_config(run_cfg.run_dir, cfg)
    seed_everything(run_cfg.seed)
    model, criterion = build_pretraining(run_cfg.model, run_cfg.loss)
    module = PretrainModule(model, criterion, run_cfg.optim,
                            model_config=dataclasses.asdict(run_cfg.model))
    trainer = build_trainer(run_cfg.trainer, run_cfg.run_dir, run_cfg.optim.max_steps)
    return fit(trainer, module, PretrainDataModule(run_cfg.data), ckpt_path)


register_configs()


@hydra.main(config_path=CONFIG_DIR, config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Entry point of ``speechbert-pretrain`` (Hydra parses the command line)."""
    run_main(run, cfg)


if __name__ == "__main__":
    main()
