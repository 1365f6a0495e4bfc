"""evals.tts helpers: MCD table, training times, the spectrogram PNG, the pending judges."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from evals.tts import mcd_figures, spectrogram_png, training_times
from evals.tts_superb import asr_figures, sv_figures


def _versions() -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    t = torch.arange(8000) / 16_000
    real = 0.3 * torch.sin(2 * torch.pi * 200 * t) * (1 + torch.sin(2 * torch.pi * 3 * t))
    return [{"real": real, "copy": real + 0.01 * torch.randn_like(real),
             "tts": 0.05 * torch.randn_like(real)}]


def test_mcd_table_ranks_a_near_copy_above_noise() -> None:
    mcd = mcd_figures(_versions())
    assert mcd["real"] == 0.0 and 0 < mcd["copy"] < mcd["tts"]


def test_training_times_and_png(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "timing.json").write_text(json.dumps({"total_seconds": 12.5}))
    assert training_times({"a": tmp_path / "a", "b": tmp_path / "b"}) == {"a": 12.5, "b": None}
    png = spectrogram_png(_versions()[0], "title", tmp_path / "s.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_missing_superb_cells_are_reported_pending(tmp_path: Path) -> None:
    assert asr_figures(_versions(), [], tmp_path / "asr")["status"].startswith("pending")
    assert sv_figures(_versions(), tmp_path / "sv")["status"].startswith("pending")
