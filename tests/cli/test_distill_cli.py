"""``speechbert-distill`` end to end on a slice of the bundled corpus: stage 1 from a tiny fbank
teacher checkpoint (as the demo's), then stage 2 (sandwich, rewired) from stage 1's
``last.ckpt``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechbert.models.hubert.config import tiny_fbank as hubert_tiny_fbank
from speechbert.models.lighthubert.checkpoint import load_supernet
from speechbert.models.lighthubert.space import tiny_fbank
from tests.cli.run_cli import DEADLINE_S, REPO
from tests.lightning.toy_distill import save_teacher_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.corpus]


def _distill(stage: int, data: dict[str, str], run_dir: Path, *extra: str) -> str:
    """Run ``python -m speechbert.cli.distill`` briefly on the slice; return its output."""
    overrides = [f"distill_experiment=lighthubert_mini_stage{stage}", f"run_dir={run_dir}",
                 f"data.train_manifests=[{data['train']}]",
                 f"data.valid_manifests=[{data['valid']}]", "data.num_workers=0",
                 "data.max_batch_seconds=8", "optim.max_steps=2", "optim.warmup_steps=1",
                 "trainer.val_every_n_steps=2", "trainer.checkpoint_every_n_steps=2",
                 "trainer.limit_val_batches=2", "trainer.progress_bar=false", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "speechbert.cli.distill", *overrides],
                            cwd=REPO, capture_output=True, text=True, timeout=DEADLINE_S, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def test_stage1_then_stage2_on_the_bundled_corpus(mini_slice: dict[str, str],
                                                  tmp_path: Path) -> None:
    teacher = save_teacher_checkpoint(tmp_path / "teacher" / "last.ckpt",
                                      config=hubert_tiny_fbank())
    stage1 = tmp_path / "stage1"
    log = _distill(1, mini_slice, stage1, f"distill.teacher={teacher}")
    assert "stage 1 student initialised from the teacher: copied" in log
    assert {"config.yaml", "checkpoints", "tensorboard", "csv", "metrics.json"} <= {
        p.name for p in stage1.iterdir()}
    metrics = json.loads((stage1 / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and "val/loss" in metrics

    stage2 = tmp_path / "stage2"
    log = _distill(2, mini_slice, stage2, f"distill.teacher={teacher}",
                   f"distill.init_from={stage1}/checkpoints/last.ckpt",
                   "distill.rewire_batches=1", "distill.sandwich=true")
    assert "rewired heads and FFN units on 1 batches" in log
    metrics = json.loads((stage2 / "metrics.json").read_text())
    assert {"val/loss_max", "val/loss_default", "val/loss_min", "train/loss_sampled"} <= set(
        metrics)
    for run_dir, stage in ((stage1, 1), (stage2, 2)):
        loaded = load_supernet(run_dir / "checkpoints" / "last.ckpt")
        assert loaded.space == tiny_fbank() and loaded.global_step == 2
        assert loaded.hyper_parameters["stage"] == stage
        assert loaded.hyper_parameters["teacher"] == str(teacher)
        assert loaded.hyper_parameters["loss"]["teacher_layers"] == [-2, -1]
