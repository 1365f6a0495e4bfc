"""Supernet checkpoints: search-space JSON round trip and rebuilding a supernet from a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speechbert.errors import CheckpointError
from speechbert.models.lighthubert import space as spaces
from speechbert.models.lighthubert.checkpoint import (
    load_supernet,
    space_from_dict,
    space_to_dict,
)
from speechbert.models.lighthubert.supernet import build_supernet


@pytest.mark.parametrize("preset", ["tiny", "base", "small"])
def test_space_round_trips_through_json(preset: str) -> None:
    space = spaces.PRESETS[preset]()
    assert space_from_dict(json.loads(json.dumps(space_to_dict(space)))) == space


def _write_checkpoint(path: Path, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    space = spaces.tiny()
    supernet = build_supernet(space.arch)
    state = {f"student.{k}": v for k, v in supernet.state_dict().items()}
    state["criterion.head.proj.weight"] = torch.ones(3, 2)
    torch.save({"state_dict": state, "global_step": 7,
                "hyper_parameters": {"space": space_to_dict(space), "teacher": "t.ckpt"}}, path)
    return supernet


def test_load_supernet_restores_weights_and_extras(tmp_path: Path) -> None:
    supernet = _write_checkpoint(tmp_path / "last.ckpt")
    loaded = load_supernet(tmp_path / "last.ckpt")
    assert loaded.space == spaces.tiny()
    assert loaded.global_step == 7
    assert loaded.hyper_parameters == {"teacher": "t.ckpt"}
    assert list(loaded.head_state) == ["proj.weight"]
    for key, value in supernet.state_dict().items():
        assert torch.equal(loaded.supernet.state_dict()[key], value), key
    assert not loaded.supernet.training


def test_load_supernet_names_the_file_when_it_is_not_a_distill_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model_config": {}}}, path)
    with pytest.raises(CheckpointError, match="other.ckpt: not a distillation checkpoint"):
        load_supernet(path)
    with pytest.raises(CheckpointError, match="missing.ckpt: supernet checkpoint not found"):
        load_supernet(tmp_path / "missing.ckpt")
