"""``speechbert-pretrain`` end to end on a slice of the bundled corpus (HuBERT tiny).

One process: the run folder, ``resume=auto`` continuing from ``last.ckpt``, and the checkpoint
read back by the HuBERT loader. Two CPU processes (DDP, gloo) through Hydra's relaunch, with
LayerDrop high enough that ranks skip different layers in the same step.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from speechbert.models.hubert.config import HubertConfig, tiny_fbank
from speechbert.models.hubert.convert import load_hubert_checkpoint
from tests.cli.run_cli import NUM_CLASSES, run_cli, slice_overrides

pytestmark = [pytest.mark.slow, pytest.mark.corpus]


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def test_run_folder_resume_auto_and_checkpoint_contract(mini_slice: dict[str, str],
                                                        tmp_path: Path) -> None:
    run_dir = tmp_path / "hubert_slice"
    _ok(run_cli(*slice_overrides(mini_slice, run_dir), "optim.max_steps=2"))
    assert {"config.yaml", "checkpoints", "tensorboard", "csv", "metrics.json"} <= {
        p.name for p in run_dir.iterdir()}
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "num_classes: 8" in (run_dir / "config.yaml").read_text()
    assert list(run_dir.glob("csv/version_0/metrics.csv"))

    log = _ok(run_cli(*slice_overrides(mini_slice, run_dir), "optim.max_steps=4"))
    assert "Restored all states from the checkpoint" in log
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and "val/masked_acc" in metrics
    assert list(run_dir.glob("csv/version_1/metrics.csv")), "a resume keeps the first logs"

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    model_config = ckpt["hyper_parameters"]["model_config"]
    assert HubertConfig.from_dict(model_config) == HubertConfig.from_dict(
        {**asdict(tiny_fbank()), "num_classes": NUM_CLASSES})
    assert all(k.startswith("model.") for k in ckpt["state_dict"])
    upstream = load_hubert_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    out = upstream(torch.zeros(1, 16_000), torch.tensor([16_000]))
    assert len(out.hidden_states) == 5  # input + 4 layers of the tiny fbank model


def test_two_cpu_processes_with_layer_drop(mini_slice: dict[str, str], tmp_path: Path) -> None:
    run_dir = tmp_path / "hubert_ddp"
    log = _ok(run_cli(*slice_overrides(mini_slice, run_dir), "optim.max_steps=3",
                      "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
                      "model.layer_drop=0.5"))
    assert "Starting with 2 processes" in log
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 re-launched through Hydra
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 3
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert len(ckpt["rng_states"]) == 2  # one per rank
    loader = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert loader["num_replicas"] == 2
