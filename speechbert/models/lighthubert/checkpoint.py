"""Supernet checkpoints: the search space as plain JSON data, and loading a trained supernet.

A distillation run (stage 1 or 2, ``speechbert/lightning/distill.py``) writes a Lightning
checkpoint whose ``hyper_parameters["space"]`` is :func:`space_to_dict` of its search space and
whose state dict holds the supernet under ``student.`` and the distillation prediction head under
``criterion.head.``. :func:`load_supernet` rebuilds the supernet from such a file alone (no
Lightning, no config files): later stages (search, export, SUPERB) read it by path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from speechbert.errors import CheckpointError, ConfigError
from speechbert.models.lighthubert.dense import json_ready
from speechbert.models.lighthubert.space import SearchSpace, SupernetArch
from speechbert.models.lighthubert.supernet import LightHubertSupernet, build_supernet
from speechbert.nn.elastic import ElasticEncoderConfig, SubnetConfig

STUDENT_PREFIX = "student."
"""State-dict prefix of the supernet in a distillation checkpoint."""
HEAD_PREFIX = "criterion.head."
"""State-dict prefix of the distillation prediction head in a distillation checkpoint."""
NAMED_SUBNETS = ("default", "max", "min")
"""Subnet names :func:`resolve_subnet` accepts besides a JSON file."""


def space_to_dict(space: SearchSpace) -> dict[str, Any]:
    """``space`` as JSON-ready data (tuples become lists); :func:`space_from_dict` inverts it."""
    values = asdict(space)
    values["default"] = space.default.to_dict()
    return json_ready(values)


def space_from_dict(values: Mapping[str, Any], source: str = "space") -> SearchSpace:
    """The :class:`SearchSpace` of :func:`space_to_dict` output; :class:`ConfigError` names
    ``source`` and the bad or missing key."""
    try:
        arch_values = dict(values["arch"])
        encoder = dict(arch_values.pop("encoder"))
        encoder["depth_map"] = tuple(tuple(kept) for kept in encoder.get("depth_map", ()))
        arch = SupernetArch(
            encoder=ElasticEncoderConfig(**encoder),
            conv_layers=tuple(tuple(layer) for layer in arch_values.pop("conv_layers")),
            **arch_values)
        return SearchSpace(
            name=values["name"], arch=arch, embed_dims=tuple(values["embed_dims"]),
            heads=tuple(values["heads"]), ffn_ratios=tuple(float(r) for r in values["ffn_ratios"]),
            depths=tuple(values["depths"]),
            default=SubnetConfig.from_dict(dict(values["default"]))).validate()
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{source}: not a search space written by space_to_dict "
                          f"({type(exc).__name__}: {exc})") from exc


@dataclass
class SupernetCheckpoint:
    """A supernet rebuilt from a distillation checkpoint, with what else the file records."""

    supernet: LightHubertSupernet
    """The trained supernet, on the CPU, in eval mode."""
    space: SearchSpace
    """The search space it was trained over."""
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    """The checkpoint's other hyper-parameters (teacher path, loss and stage settings)."""
    head_state: dict[str, torch.Tensor] = field(default_factory=dict)
    """The distillation prediction head's weights (``criterion.head.`` prefix removed)."""
    global_step: int = 0
    """Optimizer steps the run had taken when the checkpoint was written."""


def load_supernet(path: str | Path) -> SupernetCheckpoint:
    """Rebuild the supernet of a distillation checkpoint (``weights_only=True``, CPU).

    :class:`CheckpointError` names the file and what is wrong with it.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"{source}: supernet checkpoint not found; train one with "
                              f"speechbert-distill (runs/distill/<name>/checkpoints/last.ckpt)")
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    hparams = dict(ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}
    if "space" not in hparams or "state_dict" not in ckpt:
        raise CheckpointError(f"{source}: not a distillation checkpoint (it has no "
                              f"hyper_parameters['space'] or no state_dict); pass the "
                              f"last.ckpt of a speechbert-distill run")
    try:
        space = space_from_dict(hparams.pop("space"), str(source))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    state = ckpt["state_dict"]
    supernet = build_supernet(space.arch)
    student = {k.removeprefix(STUDENT_PREFIX): v for k, v in state.items()
               if k.startswith(STUDENT_PREFIX)}
    try:
        supernet.load_state_dict(student, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: supernet weights do not fit its search space "
                              f"({exc})") from exc
    head = {k.removeprefix(HEAD_PREFIX): v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
    return SupernetCheckpoint(supernet=supernet.eval(), space=space, hyper_parameters=hparams,
                              head_state=head, global_step=int(ckpt.get("global_step", 0)))


def resolve_subnet(spec: str, space: SearchSpace) -> SubnetConfig:
    """The subnet ``spec`` names, checked to be in ``space``: ``default`` / ``max`` / ``min``, or
    a JSON file (``subnet.json``, or ``search.json`` of ``speechbert-subnet``, which holds it
    under ``"subnet"``). :class:`ConfigError` names the file and what to pass instead."""
    if spec in NAMED_SUBNETS:
        return {"default": space.default_subnet(), "max": space.max_subnet(),
                "min": space.min_subnet()}[spec]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"subnet={spec}: no such file; pass the subnet.json of a "
                          f"speechbert-subnet run or one of {NAMED_SUBNETS}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        subnet = SubnetConfig.from_dict(values.get("subnet", values))
        space.check_subnet(subnet)
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a subnet JSON file ({exc})") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: subnet is not in the checkpoint's search space "
                          f"{space.name!r}: {exc}; pick one with speechbert-subnet") from exc
    return subnet
