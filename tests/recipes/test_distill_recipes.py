"""Real-size smoke runs of the LightHuBERT recipes: the one stage 1, then Base and Small stage 2
from that same stage-1 checkpoint.

Each recipe runs from its command line (``python -m speechbert.cli.distill
distill_experiment=<recipe>``) at its real dimensions (a randomly initialised HuBERT Base teacher in
our ``.ckpt`` format, the 768-wide supernet) on the CPU, on a few 2 s clips of the bundled corpus
(``tests/recipes/conftest.py``), for 2 optimizer steps; a second launch resumes from ``last.ckpt``
and trains one more step (global step 2 -> 3). The only overrides are steps, devices, precision,
batch seconds, data loader workers and paths. Run folders are deleted at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from speechbert.models.hubert.config import base as hubert_base
from speechbert.models.lighthubert import space as spaces
from speechbert.models.lighthubert.checkpoint import load_supernet
from tests.lightning.toy_distill import save_teacher_checkpoint
from tests.recipes.conftest import REPO, FewUtterances

pytestmark = [pytest.mark.slow, pytest.mark.corpus]

DEADLINE_S = 300.0
"""Longest one CLI launch may take before the test fails."""
CPU = ("trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32",
       "trainer.progress_bar=false", "data.num_workers=0", "data.max_batch_seconds=2")
"""Run on one CPU process in float32 (the recipes ask for 8 GPUs in bf16-mixed), one 2 s clip
per batch: a step of a Base teacher and a Base-size student is seconds on this CPU."""
RESTORED = "Restored all states from the checkpoint"
"""Lightning's log line when a run continues from a checkpoint."""


def run_distill(*overrides: str) -> tuple[str, float]:
    """Launch ``speechbert-distill`` with ``overrides`` from the repo root; return its output
    and wall time, failing the test with the output's tail on a non-zero exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "speechbert.cli.distill", *overrides],
                            cwd=REPO, capture_output=True, text=True, timeout=DEADLINE_S,
                            env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr, time.perf_counter() - start


def smoke_run(experiment: str, run_dir: Path, *extra: str) -> str:
    """2 steps, then a resumed launch to step 3; returns the first launch's output."""
    common = [f"distill_experiment={experiment}", f"run_dir={run_dir}", *extra, *CPU,
              "optim.warmup_steps=1"]
    first, first_s = run_distill(*common, "optim.max_steps=2")
    assert RESTORED not in first
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 2
    log, resume_s = run_distill(*common, "optim.max_steps=3")
    assert RESTORED in log, log[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and torch.isfinite(torch.tensor(metrics["train/loss"]))
    print(f"\n{experiment}: 2 steps {first_s:.1f} s, resume + 1 step {resume_s:.1f} s")
    return first


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The teacher and the three runs (deleted afterwards: each holds ~1 GB of checkpoints)."""
    root = tmp_path_factory.mktemp("distill_recipes")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def data(few_utterances: FewUtterances, folder: Path) -> list[str]:
    """Data and teacher overrides shared by the three recipes."""
    teacher = save_teacher_checkpoint(folder / "teacher" / "last.ckpt", config=hubert_base())
    return [f"data.train_manifests=[{few_utterances.train}]",
            f"data.valid_manifests=[{few_utterances.valid}]", f"distill.teacher={teacher}"]


@pytest.fixture(scope="module")
def stage1(data: list[str], folder: Path) -> Path:
    """The one stage-1 run of LightHuBERT Base and Small; its ``last.ckpt``."""
    run_dir = folder / "lighthubert_base_stage1"
    log = smoke_run("lighthubert_base_stage1", run_dir, *data)
    assert "stage 1 student initialised from the teacher: copied" in log
    assert "(every supernet tensor but mask_embedding)" in log
    return run_dir / "checkpoints" / "last.ckpt"


def test_stage1_trains_the_whole_768_wide_supernet(stage1: Path) -> None:
    loaded = load_supernet(stage1)
    assert loaded.space.arch == spaces.base().arch  # HuBERT Base's group_norm front end
    assert loaded.global_step == 3


@pytest.mark.parametrize("size", ["base", "small"])
def test_stage2_reads_the_one_stage1(size: str, stage1: Path, data: list[str],
                                     folder: Path) -> None:
    run_dir = folder / f"lighthubert_{size}_stage2"
    log = smoke_run(f"lighthubert_{size}_stage2", run_dir, *data,
                    f"distill.init_from={stage1}")
    assert f"space 'base'; now space '{size}'" in log
    loaded = load_supernet(run_dir / "checkpoints" / "last.ckpt")
    assert loaded.space == spaces.PRESETS[size]()
