"""Run the LightHuBERT tests on one thread: their tiny ops are faster without the thread pool
(a new shape costs ~0.5 s of thread start-up per call with two threads), and much faster when
other processes share the cores."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread: None) -> None:
    """Every test in this folder runs on one torch thread (``one_thread`` of tests/conftest.py)."""
