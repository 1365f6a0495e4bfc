"""``speechbert-export``: cut a subnet out of a trained supernet as a standalone encoder.

    speechbert-export checkpoint=runs/distill/<name>/checkpoints/last.ckpt \\
        subnet=runs/subnet/<search>/subnet.json out=runs/export/<name>
    speechbert-export checkpoint=... subnet=... out=... hf=true   # also a transformers folder

``subnet`` is a JSON file holding a :class:`SubnetConfig` (``speechbert-subnet``'s
``subnet.json``, or its ``search.json``, whose ``subnet`` key is read), or one of ``default``,
``max`` and ``min`` for the space's own. The subnet must be in the checkpoint's search space.

Writes ``<out>/encoder.pt``, a self-describing dense checkpoint (``load_dense`` rebuilds it with
no supernet), ``<out>/subnet.json``, and with ``hf=true`` ``<out>/hf/``, a transformers
``HubertModel`` folder (uniform subnets only, where heads x head width = width; anything else is
refused before anything is written).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from speechbert.cli import CONFIG_DIR
from speechbert.errors import ConfigError, SpeechbertError
from speechbert.models.lighthubert.checkpoint import load_supernet, resolve_subnet
from speechbert.models.lighthubert.dense import DenseEncoderConfig
from speechbert.models.lighthubert.extract import (
    export_hf,
    extract_subnet,
    hf_config_kwargs,
    save_dense,
)
from speechbert.models.lighthubert.space import SearchSpace, count_params
from speechbert.nn.elastic import SubnetConfig

log = logging.getLogger(__name__)

DENSE_FILE = "encoder.pt"
"""Name of the dense checkpoint in the output folder."""
HF_FOLDER = "hf"
"""Name of the transformers folder in the output folder."""


@dataclass
class ExportConfig:
    """One export: the supernet checkpoint, the subnet, where to write, which formats."""

    checkpoint: str = MISSING
    """Distillation checkpoint (``runs/distill/<name>/checkpoints/last.ckpt``)."""
    subnet: str = MISSING
    """subnet.json / search.json of ``speechbert-subnet``, or ``default`` / ``max`` / ``min``."""
    name: str = "subnet"
    """Export name; the default output folder is ``runs/export/<name>``."""
    out: str = "runs/export/${name}"
    """Output folder: encoder.pt, subnet.json, hf/ (with ``hf=true``)."""
    hf: bool = False
    """Also write a transformers ``HubertModel`` folder (uniform subnets only)."""


def register_configs() -> None:
    """Put the schema into Hydra's ConfigStore (``configs/export.yaml`` builds on it)."""
    ConfigStore.instance().store(name="export_schema", node=ExportConfig)


def check_hf_exportable(space: SearchSpace, subnet: SubnetConfig, source: str) -> None:
    """Raise :class:`ConfigError` naming ``source`` when transformers cannot hold ``subnet``."""
    try:
        hf_config_kwargs(DenseEncoderConfig.from_supernet(space.arch, subnet))
    except ConfigError as exc:
        raise ConfigError(f"subnet={source}: hf=true is not possible: {exc}; drop hf=true to "
                          f"write only the dense checkpoint") from exc


def run(cfg: DictConfig) -> dict[str, object]:
    """Extract, check HF compatibility first when asked, then write the outputs."""
    for key, example in (("checkpoint", "runs/distill/<name>/checkpoints/last.ckpt"),
                         ("subnet", "runs/subnet/<search>/subnet.json")):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key} must be given: {key}={example}")
    run_cfg = OmegaConf.to_object(cfg)
    assert isinstance(run_cfg, ExportConfig)
    ckpt = load_supernet(run_cfg.checkpoint)
    subnet = resolve_subnet(run_cfg.subnet, ckpt.space)
    if run_cfg.hf:  # refuse before writing anything
        check_hf_exportable(ckpt.space, subnet, run_cfg.subnet)
    dense = extract_subnet(ckpt.supernet, subnet).eval()
    out = Path(run_cfg.out)
    written = {"dense": str(save_dense(dense, out / DENSE_FILE))}
    (out / "subnet.json").write_text(json.dumps(subnet.to_dict(), indent=1) + "\n")
    if run_cfg.hf:
        written["hf"] = str(export_hf(dense, out / HF_FOLDER))
    return {"subnet": subnet.to_dict(), "params": count_params(ckpt.space, subnet), **written}


register_configs()


@hydra.main(config_path=CONFIG_DIR, config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Entry point of ``speechbert-export`` (Hydra parses the command line)."""
    try:
        report = run(cfg)
    except SpeechbertError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        sys.exit(2)
    log.info("exported %s", json.dumps(report))


if __name__ == "__main__":
    main()
