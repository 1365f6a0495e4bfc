"""Command-line entry points: the only package that imports Hydra (one module per stage)."""

from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
"""The repo's ``configs/`` folder, where every command's Hydra config lives."""
