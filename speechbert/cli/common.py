"""What every training command does around its run: record the config, report errors, exit."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from speechbert.errors import SpeechbertError
from speechbert.lightning.trainer import is_rank_zero

log = logging.getLogger(__name__)


def write_run_config(run_dir: str | Path, cfg: DictConfig) -> None:
    """Create ``run_dir`` and write the resolved config to ``config.yaml`` (global rank 0 only)."""
    if is_rank_zero():
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def run_main(run: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> None:
    """Call ``run(cfg)``; a :class:`SpeechbertError` (bad config, data, checkpoint) is logged as
    one line and exits with status 2, a finished run logs its final metrics."""
    try:
        metrics = run(cfg)
    except SpeechbertError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        sys.exit(2)
    log.info("done: %s", {k: round(v, 4) for k, v in sorted(metrics.items())})
