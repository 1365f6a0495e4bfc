"""``speechbert-superb upstream=fbank task=ks`` end to end on a slice of the bundled corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechbert.data.manifest import read_manifest, write_manifest
from tests.cli.conftest import BUNDLED_MISSING
from tests.cli.run_cli import DEADLINE_S, REPO

pytestmark = [pytest.mark.slow, pytest.mark.corpus]

COMMANDS = REPO / "data" / "mini" / "manifests" / "speech_commands"
"""Speech Commands manifests of the bundled corpus."""


@pytest.fixture
def ks_slice(tmp_path: Path) -> dict[str, str]:
    """Every 20th clip of each bundled Speech Commands split (about 100 / 13 / 14 clips)."""
    if not (COMMANDS / "train.tsv").is_file():
        pytest.fail(BUNDLED_MISSING)
    return {split: str(write_manifest(tmp_path / f"{split}.tsv",
                                      read_manifest(COMMANDS / f"{split}.tsv")[::20]))
            for split in ("train", "valid", "test")}


def _superb(*overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "speechbert.cli.superb", *overrides], cwd=REPO,
                          capture_output=True, text=True, timeout=DEADLINE_S, env=env)


def test_fbank_ks_cell_end_to_end(ks_slice: dict[str, str], tmp_path: Path) -> None:
    overrides = ["upstream=fbank", "task=ks", f"out={tmp_path / 'superb'}",
                 f"cache_dir={tmp_path / 'cache'}", f"task.train_manifest={ks_slice['train']}",
                 f"task.valid_manifest={ks_slice['valid']}",
                 f"task.test_manifest={ks_slice['test']}", "task.optim.max_steps=4",
                 "task.optim.warmup_steps=1", "task.val_every_n_steps=2",
                 "trainer.progress_bar=false"]
    result = _superb(*overrides)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    run_dir = tmp_path / "superb" / "fbank" / "ks"
    record = json.loads((run_dir / "result.json").read_text())
    assert (record["upstream"], record["task"], record["metric"], record["split"]) == (
        "fbank", "ks", "acc", "test")
    assert 0.0 <= record["value"] <= 1.0 and record["layer_weights"] == [1.0]
    assert record["steps"] == 4 and (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert "max_steps: 4" in (run_dir / "config.yaml").read_text()

    again = _superb(*overrides)
    assert again.returncode == 0
    assert "finished (result.json); skipping" in again.stderr + again.stdout


def test_missing_manifest_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = _superb("task=ks", f"out={tmp_path}", f"task.test_manifest={tmp_path / 'no.tsv'}")
    assert result.returncode == 2
    assert "task.test_manifest" in result.stdout + result.stderr
