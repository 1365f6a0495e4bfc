"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_thread() -> Iterator[None]:
    """``torch.set_num_threads(1)`` for the test, restored afterwards: tiny ops run faster
    without the thread pool, and much faster when other processes share the cores. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")`` or from a folder's conftest."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
