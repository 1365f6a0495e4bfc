"""Real-size smoke runs of the pretraining recipes: HuBERT Base iterations 1 and 2, w2v-BERT 300m.

Each recipe runs from its command line (``python -m speechbert.cli.pretrain
experiment=<recipe>``) at its real model dimensions on the CPU, on a few 2 s clips of the
bundled corpus (``tests/recipes/conftest.py``), for 2 optimizer steps; it writes
``last.ckpt``, and a second launch resumes from it and trains one more step (global step 2 ->
3). The only overrides are steps, devices, precision, data loader workers, batch seconds (one clip
a step) and paths; everything else is the recipe's. A w2v-BERT 300m checkpoint with
AdamW state is several GB: every run folder is deleted when its test ends.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from speechbert.models.hubert.config import HubertConfig
from speechbert.models.hubert.config import base as hubert_base
from speechbert.models.w2vbert.config import arch_300m, config_from_dict
from tests.recipes.conftest import CLIP_SAMPLES, REPO, FewUtterances, FrameLabels

pytestmark = [pytest.mark.slow, pytest.mark.corpus]

DEADLINE_S = 300.0
"""Longest one CLI launch may take before the test fails."""
CPU = ("trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32",
       "trainer.progress_bar=false", "data.num_workers=0")
"""Run on one CPU process in float32 (the recipes ask for 8 GPUs in bf16-mixed)."""
RESTORED = "Restored all states from the checkpoint"
"""Lightning's log line when a run continues from a checkpoint."""


@dataclass(frozen=True)
class Launch:
    """What one CLI launch printed and cost."""

    log: str
    """stdout and stderr together."""
    wall_s: float
    """Wall time in seconds (inflated when other processes share the cores)."""
    cpu_s: float
    """User + system CPU seconds of the child process (steadier on a shared machine)."""


def run_pretrain(*overrides: str) -> Launch:
    """Launch ``speechbert-pretrain`` with ``overrides`` from the repo root, failing the test
    with the output's tail on a non-zero exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "speechbert.cli.pretrain", *overrides],
                            cwd=REPO, capture_output=True, text=True, timeout=DEADLINE_S,
                            env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return Launch(result.stdout + result.stderr, wall, cpu)


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """A run folder that is deleted after the test (checkpoints of GB size)."""
    folder = tmp_path / "run"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _checkpoint(run_dir: Path) -> dict:
    """``last.ckpt`` memory-mapped (the tensors are not read)."""
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, mmap=True,
                      map_location="cpu")


def _model_parameters(ckpt: dict) -> int:
    """Parameters of the model in a checkpoint's state dict (buffers excluded where named)."""
    return sum(t.numel() for k, t in ckpt["state_dict"].items()
               if k.startswith("model.") and t.is_floating_point())


def smoke_run(experiment: str, run_dir: Path, data: list[str]) -> dict:
    """2 steps, then a resumed launch to step 3; returns the final checkpoint (mmap) and
    prints both launches' wall times."""
    common = [f"experiment={experiment}", f"run_dir={run_dir}", *data, *CPU,
              "optim.warmup_steps=1"]
    first = run_pretrain(*common, "optim.max_steps=2")
    assert RESTORED not in first.log
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 2
    assert _checkpoint(run_dir)["global_step"] == 2

    resumed = run_pretrain(*common, "optim.max_steps=3")
    assert RESTORED in resumed.log, resumed.log[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and torch.isfinite(torch.tensor(metrics["train/loss"]))
    ckpt = _checkpoint(run_dir)
    assert ckpt["global_step"] == 3
    print(f"\n{experiment}: 2 steps {first.wall_s:.1f} s wall ({first.cpu_s:.1f} s CPU), "
          f"resume + 1 step {resumed.wall_s:.1f} s wall ({resumed.cpu_s:.1f} s CPU)")
    return ckpt


def _data(utts: FewUtterances, labels: FrameLabels | None = None) -> list[str]:
    """Manifest and label paths, and batches of one 2 s clip: a real-size step costs seconds
    of CPU per second of audio, so one clip a step is enough to run every code path."""
    paths = [f"data.train_manifests=[{utts.train}]", f"data.valid_manifests=[{utts.valid}]",
             f"data.max_batch_seconds={CLIP_SAMPLES / 16_000}"]
    if labels is not None:
        paths += [f"data.train_labels=[{labels.train}]", f"data.valid_labels=[{labels.valid}]"]
    return paths


@pytest.mark.parametrize(("experiment", "labels_fixture"), [
    ("hubert_base_librispeech_iter1", "mfcc_km100"),
    ("hubert_base_librispeech_iter2", "random_km500"),
])
def test_hubert_base(experiment: str, labels_fixture: str, few_utterances: FewUtterances,
                     run_dir: Path, request: pytest.FixtureRequest) -> None:
    labels: FrameLabels = request.getfixturevalue(labels_fixture)
    ckpt = smoke_run(experiment, run_dir, _data(few_utterances, labels))
    saved = HubertConfig.from_dict(ckpt["hyper_parameters"]["model_config"])
    assert saved == replace(hubert_base(), num_classes=labels.n_clusters)  # the preset, untouched
    # HuBERT Base is ~95 M parameters (fairseq's examples/hubert/README.md, model table)
    assert 94e6 < _model_parameters(ckpt) < 96e6


def test_w2vbert_300m(few_utterances: FewUtterances, run_dir: Path) -> None:
    ckpt = smoke_run("w2vbert_300m_librispeech", run_dir, _data(few_utterances))
    assert config_from_dict(ckpt["hyper_parameters"]["model_config"]) == arch_300m()
    assert 300e6 < _model_parameters(ckpt) < 315e6


WITHOUT_FAIRSEQ2 = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "fairseq2" or name.startswith("fairseq2."):
            raise ImportError(f"No module named {name!r}")

sys.meta_path.insert(0, Block())
from hydra import compose, initialize_config_dir
from speechbert.cli import CONFIG_DIR
from speechbert.cli.pretrain import build_pretraining, run, to_run_config
from speechbert.errors import ConfigError

with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
    hubert = to_run_config(compose("pretrain", ["experiment=hubert_base_librispeech_iter1"]))
    model, _ = build_pretraining(hubert.model, hubert.loss)
    print("hubert parameters", sum(p.numel() for p in model.parameters()))
    try:
        run(compose("pretrain", ["experiment=w2vbert_300m_librispeech"]))
    except ConfigError as exc:
        print("refused:", exc)
"""
"""A child that cannot import fairseq2 builds HuBERT Base and is refused w2v-BERT."""


def test_hubert_recipes_without_fairseq2() -> None:
    """The GPU image has no fairseq2: HuBERT pretraining must not need it, and a w2v-BERT
    recipe must fail with our ConfigError naming what to install."""
    result = subprocess.run([sys.executable, "-c", WITHOUT_FAIRSEQ2], cwd=REPO, text=True,
                            capture_output=True, timeout=DEADLINE_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "hubert parameters 94" in result.stdout  # HuBERT Base, ~95 M
    assert "refused: model=w2vbert_300m needs fairseq2" in result.stdout
    assert "pip install fairseq2==0.8.1" in result.stdout
