"""Exact resume of the GAN stage: SIGKILL a vec2wav run after a checkpoint, resume, same weights.

The killed run is a child process (blocked at the start of a known step, after the checkpoint
before it was written); the uninterrupted and resumed runs run in this process through the same
``speechbert.cli.tts.run`` the CLI calls. The run crosses the switch from the regression warm-up
to the adversarial losses, and the kill falls before it, so both optimizers' states, the data
position and the RNG states must all come back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speechbert.cli.tts import run
from tests.lightning.child_process import REPO, finish, wait_for_file
from tests.lightning.tts_toy import compose_config, toy_overrides, write_toy_tts

BATCHES = 6
"""vec2wav batches per run (Lightning counts 2 steps per batch: two optimizers)."""
KILL_AT = 6
"""Lightning step at whose start the child blocks (batch 3); last checkpoint at step 4."""


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy corpus and tiny HuBERT checkpoint."""
    return write_toy_tts(tmp_path_factory.mktemp("tts_toy"))


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_killed_vec2wav_run_resumes_to_identical_weights(toy_root: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    killed = tmp_path / "killed"
    killed.mkdir()
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.lightning.tts_toy", "--root", str(toy_root), "--run-dir",
         str(killed), "--stage", "vec2wav", "--pause-at-step", str(KILL_AT)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    reference = tmp_path / "uninterrupted"
    run(compose_config(toy_overrides(toy_root, reference, "vec2wav", BATCHES)))
    wait_for_file(killed / "paused", [proc])
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc, killed, expect_ok=False)
    assert _load(killed / "checkpoints" / "last.ckpt")["global_step"] == 4
    run(compose_config(toy_overrides(toy_root, killed, "vec2wav", BATCHES)))
    want = _load(reference / "checkpoints" / "last.ckpt")
    got = _load(killed / "checkpoints" / "last.ckpt")
    assert want["global_step"] == got["global_step"] == 2 * BATCHES
    assert got["state_dict"].keys() == want["state_dict"].keys()
    for key, value in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), key
    assert len(want["optimizer_states"]) == 2
    timing = json.loads((killed / "timing.json").read_text())  # the killed launch wrote none
    assert [x["global_step"] for x in timing["launches"]] == [2 * BATCHES]
    assert "train/disc_loss" in json.loads((reference / "metrics.json").read_text())
