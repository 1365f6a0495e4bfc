"""Run the heads' tiny training loops on one thread: small ops are faster without the thread
pool, and much faster when other processes share the cores."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread: None) -> None:
    """Every test in this folder runs on one torch thread (``one_thread`` of tests/conftest.py)."""
