"""Exact resume of a stage-2 distillation: SIGKILL after a checkpoint, resume, same weights.

The killed run is a child process (blocked at the start of a known step, after the checkpoint
before it); the uninterrupted reference and the resumed run run in this process, as the CLI
would after a restart. Sampled subnets (from the step), masks and dropout (RNG state in the
checkpoint) and the data position must all come back for the weights to be equal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from tests.lightning import toy_distill
from tests.lightning.child_process import REPO, finish, wait_for_file

MAX_STEPS = 7
"""Optimizer steps of every run (the toy epoch has 6 batches, one of them empty)."""
EVERY = 3
"""Checkpoint every n steps."""
KILL_AT = 4
"""Step at whose start the child is killed (the checkpoint of step 3 is on disk)."""


def _args(corpus: Path, run_dir: Path) -> list[str]:
    return ["--corpus", str(corpus), "--run-dir", str(run_dir), "--max-steps", str(MAX_STEPS),
            "--checkpoint-every", str(EVERY)]


def _start(corpus: Path, run_dir: Path) -> subprocess.Popen[str]:
    run_dir.mkdir(parents=True, exist_ok=True)
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.lightning.toy_distill", *_args(corpus, run_dir),
         "--pause-at-step", str(KILL_AT)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)


def _state(run_dir: Path) -> dict:
    last = run_dir / "checkpoints" / "last.ckpt"
    return torch.load(last, map_location="cpu", weights_only=True)


def test_killed_stage2_run_resumes_to_identical_weights(toy_corpus: Path, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    proc = _start(toy_corpus, killed)
    reference = tmp_path / "uninterrupted"
    toy_distill.main(_args(toy_corpus, reference))
    wait_for_file(killed / "paused", [proc])
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc, killed, expect_ok=False)
    assert _state(killed)["global_step"] == EVERY * (KILL_AT // EVERY)

    toy_distill.main(_args(toy_corpus, killed))
    want, got = _state(reference), _state(killed)
    assert want["global_step"] == got["global_step"] == MAX_STEPS
    assert got["state_dict"].keys() == want["state_dict"].keys()
    assert not any(k.startswith("teacher") for k in got["state_dict"])
    for key, value in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), f"{key} differs after the resume"
