"""Tiny distillation checkpoints in the format ``speechbert-distill`` writes, for the subnet
and export CLI tests: a random tiny HuBERT teacher in our HuBERT ``.ckpt`` format, and a
supernet checkpoint (``student.`` + ``criterion.head.`` state, ``space`` / ``loss`` /
``teacher`` / ``stage`` hyper-parameters) pointing at it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from speechbert.losses.distill import DistillLossConfig, PredictionHead
from speechbert.models.hubert.build import build_hubert_pretrain
from speechbert.models.hubert.config import tiny as tiny_hubert
from speechbert.models.lighthubert.checkpoint import space_to_dict
from speechbert.models.lighthubert.space import tiny
from tests.models.lighthubert.tiny_supernet import randomise, tiny_supernet

LOSS = DistillLossConfig(teacher_layers=(-2, -1), mask_prob=0.5, mask_length=5)
"""Loss settings of the tiny checkpoint (the tiny teacher has only 3 hidden states)."""


def write_teacher(path: Path, seed: int = 0) -> Path:
    """A random tiny HuBERT as our Lightning checkpoint (``model.`` keys, ``model_config``)."""
    torch.manual_seed(seed)
    cfg = tiny_hubert()
    model = build_hubert_pretrain(cfg)
    randomise(model, std=0.1)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model_config": asdict(cfg)}}, path)
    return path


def write_supernet_checkpoint(path: Path, teacher: Path, seed: int = 0) -> Path:
    """A randomised tiny supernet and head as a stage-2 distillation checkpoint."""
    supernet = tiny_supernet(seed=seed)
    head = PredictionHead(tiny().arch.encoder.embed_dim, tiny_hubert().embed_dim)
    randomise(head, std=0.1)
    state = {f"student.{k}": v for k, v in supernet.state_dict().items()}
    state |= {f"criterion.head.{k}": v for k, v in head.state_dict().items()}
    hparams = {"space": space_to_dict(tiny()), "teacher": str(teacher), "stage": 2,
               "loss": json.loads(json.dumps(asdict(LOSS)))}  # tuples come back as lists
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "hyper_parameters": hparams, "global_step": 10}, path)
    return path
