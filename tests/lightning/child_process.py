"""Run a toy training module (``tests.lightning.toy_*``) as a child process, wait for it or for a
file it writes; run a toy's ``run`` on a given number of torch threads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from argparse import Namespace
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

REPO = Path(__file__).parents[2]
"""Repository root (the working directory of the child processes)."""
DEADLINE_S = 150.0
"""Longest a test waits for a child process or a file it should write."""


def start_module(module: str, corpus: Path, run_dir: Path,
                 *args: str) -> subprocess.Popen[str]:
    """Start ``python -m <module> --corpus C --run-dir R`` with ``args``; its output goes to
    ``<run_dir>.log`` (read it with :func:`finish`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", module, "--corpus", str(corpus), "--run-dir", str(run_dir), *args],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)


def start_toy(corpus: Path, run_dir: Path, *args: str) -> subprocess.Popen[str]:
    """Start ``python -m tests.lightning.toy_pretrain`` with ``args``; output goes to a log."""
    return start_module("tests.lightning.toy_pretrain", corpus, run_dir, *args)


def run_with_threads(run: Callable[[Namespace], None], args: Namespace, threads: int) -> None:
    """``run(args)`` on ``threads`` torch threads; torch's thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run(args)
    finally:
        torch.set_num_threads(before)


def finish(proc: subprocess.Popen[str], run_dir: Path, expect_ok: bool = True) -> str:
    """Wait for ``proc`` (with the deadline); return its log, failing with it if rc is wrong."""
    try:
        proc.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log = (run_dir.parent / f"{run_dir.name}.log").read_text()
    assert (proc.returncode == 0) == expect_ok, f"rc={proc.returncode}\n{log[-4000:]}"
    return log


def wait_for_file(path: Path, procs: Sequence[subprocess.Popen[str]]) -> None:
    """Poll until ``path`` exists; fail if a process in ``procs`` exits or the deadline passes."""
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():
        exited = [p.args for p in procs if p.poll() is not None]
        assert not exited, f"{exited} exited before writing {path}"
        assert time.monotonic() < deadline, f"{path} not written within {DEADLINE_S} s"
        time.sleep(0.05)
