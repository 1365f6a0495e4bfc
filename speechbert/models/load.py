"""Load any upstream SUPERB can evaluate from a typed spec, with its size and compute per second.

:func:`load_upstream` turns an :class:`UpstreamSpec` (kind + path) into a
:class:`LoadedUpstream`: the module (implementing :class:`~speechbert.models.upstream.Upstream`,
in eval mode, on the CPU), what identifies it in the feature cache, its parameter count and its
multiply-accumulates per second of 16 kHz audio.

MACs: for ``supernet`` and ``dense`` they are the exact analytic count of
:func:`~speechbert.models.lighthubert.space.count_macs` at 50 frames (1 s). For the other kinds
they are measured with ``torch.utils.flop_counter.FlopCounterMode`` on 1 s of audio, which counts
the FLOPs of matmuls and convolutions as 2 x MACs, so its total is halved. Either way norms,
activations, softmax and the FFTs of filterbank front ends are not counted (the FBANK baseline's
figure is its mel-filter matmul and its two delta convolutions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from speechbert.data.feature_cache import (
    CacheKey,
    canonical_subnet,
    checkpoint_identity,
    manifest_identity,
)
from speechbert.errors import CheckpointError, ConfigError
from speechbert.models.fbank import FbankConfig, FbankUpstream
from speechbert.models.lighthubert.space import SupernetArch, count_macs, count_params
from speechbert.nn.elastic import ElasticEncoderConfig, SubnetConfig

UPSTREAM_KINDS = ("fbank", "hubert", "w2vbert", "supernet", "dense", "hf", "fairseq")
"""What :attr:`UpstreamSpec.kind` may be."""
SAMPLE_RATE = 16_000
"""Samples per second of the audio the upstreams read."""
FRAMES_PER_SECOND = 50
"""Frames of 1 s of audio for HuBERT-style front ends (20 ms frames), for analytic MACs."""
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""Weight files of a transformers folder, the first one present identifies the folder."""


@dataclass
class UpstreamSpec:
    """Which upstream to evaluate: its kind, where it is, and the name its results carry."""

    name: str = "fbank"
    """Name in run folders and results (``runs/superb/<name>/<task>``)."""
    kind: str = "fbank"
    """One of fbank, hubert (our .ckpt), w2vbert (our .ckpt), supernet, dense, hf, fairseq."""
    path: str | None = None
    """Checkpoint file (a transformers folder for ``hf``); None for ``fbank``."""
    subnet: str | None = None
    """``supernet`` only: ``default`` (also when None), ``max``, ``min``, or a subnet.json /
    search.json file of ``speechbert-subnet``."""
    fbank_mel_bins: int = 80
    """``fbank`` only: mel channels per frame."""
    fbank_delta_order: int = 2
    """``fbank`` only: 0 plain, 2 adds deltas and delta-deltas (s3prl's 240 dims, the default)."""

    def validate(self) -> UpstreamSpec:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        if self.kind not in UPSTREAM_KINDS:
            raise ConfigError(f"upstream.kind must be one of {UPSTREAM_KINDS}, got {self.kind!r}")
        if not self.name or "/" in self.name:
            raise ConfigError(f"upstream.name must be non-empty without '/', got {self.name!r}")
        if self.kind != "fbank" and not self.path:
            raise ConfigError(f"upstream.path must be set for kind={self.kind!r} (a checkpoint "
                              f"file, or a transformers folder for hf), got {self.path!r}")
        if self.subnet is not None and self.kind != "supernet":
            raise ConfigError(f"upstream.subnet is only read for kind='supernet', got "
                              f"subnet={self.subnet!r} with kind={self.kind!r}")
        return self


@dataclass
class LoadedUpstream:
    """A loaded upstream and what the SUPERB results record about it."""

    module: nn.Module
    """The encoder (an :class:`~speechbert.models.upstream.Upstream`), eval mode, CPU."""
    identity: str
    """What the feature cache keys it by: a checkpoint identity or ``name <settings>``."""
    subnet: str | None
    """Canonical subnet JSON for supernets (part of the cache key); None otherwise."""
    params: int
    """Parameters the encoder uses (for a supernet subnet: that subnet's)."""
    macs_per_second: int
    """Multiply-accumulates per second of audio (see the module docstring)."""

    def cache_key(self, manifest: str | Path, fp16: bool = True) -> CacheKey:
        """The feature-cache key of this upstream's hidden states of ``manifest``."""
        return CacheKey(upstream=self.identity, manifest=manifest_identity(manifest),
                        subnet=canonical_subnet(self.subnet), fp16=fp16)


def load_upstream(spec: UpstreamSpec) -> LoadedUpstream:
    """Load ``spec``'s upstream; :class:`CheckpointError` / :class:`ConfigError` say what is
    wrong with the path or the settings."""
    spec.validate()
    if spec.kind == "fbank":
        return _fbank(spec)
    if spec.kind in ("supernet", "dense"):
        return _lighthubert(spec)
    identity = _identity(spec)
    module = _load_module(spec)
    return LoadedUpstream(module=module.eval(), identity=identity, subnet=None,
                          params=sum(p.numel() for p in module.parameters()),
                          macs_per_second=measure_macs_per_second(module))


def upstream_identity(spec: UpstreamSpec) -> str:
    """What tells ``spec``'s encoder apart, read without loading it: the checkpoint's identity
    (path, size, mtime) or the FBANK settings, and the subnet (a subnet file by its identity).
    A SUPERB cell records it, so a retrained checkpoint is never scored with old results."""
    spec.validate()
    if spec.kind == "fbank":
        return _fbank_identity(_fbank_config(spec))
    identity = _identity(spec)
    if spec.subnet is None:
        return identity
    subnet = Path(spec.subnet)
    return f"{identity} subnet=" + (checkpoint_identity(subnet) if subnet.is_file()
                                    else spec.subnet)


def checkpoint_kind(path: str | Path) -> str:
    """The :attr:`UpstreamSpec.kind` of an encoder file or folder, read from what it holds: a
    transformers folder is ``hf``; a ``.pt`` file is ``dense`` when ``speechbert-export`` wrote
    it, else ``fairseq``; one of our ``.ckpt`` files is ``w2vbert`` when its ``model_config`` is
    a w2v-BERT one (it has ``num_bert_layers``), else ``hubert``. Raises
    :class:`CheckpointError` for a missing path or another format."""
    from speechbert.models.hubert.convert import load_checkpoint_file
    from speechbert.models.lighthubert.extract import CHECKPOINT_FORMAT

    src = Path(path)
    if src.is_dir():
        return "hf"
    if not src.is_file():
        raise CheckpointError(f"{src}: upstream checkpoint not found; check the path")
    if src.suffix == ".pt":
        return "dense" if load_checkpoint_file(src, mmap=True).get("format") == \
            CHECKPOINT_FORMAT else "fairseq"
    if src.suffix != ".ckpt":
        raise CheckpointError(f"{src}: unknown upstream format; expected a transformers folder, "
                              f"a .pt file (fairseq, or speechbert-export's encoder.pt) or a "
                              f"speechbert .ckpt file")
    hparams = load_checkpoint_file(src, mmap=True).get("hyper_parameters") or {}
    config = hparams.get("model_config") if isinstance(hparams, dict) else None
    return "w2vbert" if isinstance(config, dict) and "num_bert_layers" in config else "hubert"


def load_checkpoint_encoder(path: str | Path) -> nn.Module:
    """The encoder (an :class:`~speechbert.models.upstream.Upstream`, eval mode, CPU) of a HuBERT
    or w2v-BERT checkpoint of any supported format, or of an exported subnet, its kind inferred
    by :func:`checkpoint_kind`."""
    return _load_module(UpstreamSpec(name="encoder", kind=checkpoint_kind(path),
                                      path=str(path))).eval()


def _fbank_config(spec: UpstreamSpec) -> FbankConfig:
    return FbankConfig(num_mel_bins=spec.fbank_mel_bins, delta_order=spec.fbank_delta_order)


def _fbank_identity(config: FbankConfig) -> str:
    return (f"name fbank mel={config.num_mel_bins} delta={config.delta_order} "
            f"cmvn={config.normalize} cmvn_std=unbiased")


def _fbank(spec: UpstreamSpec) -> LoadedUpstream:
    config = _fbank_config(spec)
    module = FbankUpstream(config)
    return LoadedUpstream(module=module.eval(), identity=_fbank_identity(config), subnet=None,
                          params=0, macs_per_second=measure_macs_per_second(module))


def _load_module(spec: UpstreamSpec) -> nn.Module:
    """The encoder of the checkpoint kinds read by the families' own loaders (a dense export
    too, for callers that need only the module)."""
    assert spec.path is not None
    if spec.kind == "w2vbert":
        from speechbert.models.w2vbert.upstream import load_w2vbert_checkpoint

        return load_w2vbert_checkpoint(spec.path)
    if spec.kind == "dense":
        from speechbert.models.lighthubert.extract import load_dense

        return load_dense(spec.path)
    from speechbert.models.hubert import convert

    loaders = {"hubert": convert.load_hubert_checkpoint, "hf": convert.load_hf_folder,
               "fairseq": convert.load_fairseq_checkpoint}
    return loaders[spec.kind](spec.path)


def _identity(spec: UpstreamSpec) -> str:
    """Checkpoint identity (path, size, mtime); a transformers folder by its weight file."""
    assert spec.path is not None
    path = Path(spec.path)
    if not path.exists():
        raise CheckpointError(f"upstream.path={str(path)!r}: not found; check the path (run "
                              f"`make pretrain-demo` for the mini checkpoints)")
    if path.is_dir():
        for name in HF_WEIGHT_FILES:
            if (path / name).is_file():
                return checkpoint_identity(path / name)
        raise CheckpointError(f"{path}: no {' or '.join(HF_WEIGHT_FILES)} in the folder; "
                              f"save the model with save_pretrained")
    return checkpoint_identity(path)


def _lighthubert(spec: UpstreamSpec) -> LoadedUpstream:
    """A supernet at a subnet, or an extracted dense encoder, with analytic counts."""
    assert spec.path is not None
    identity = _identity(spec)  # a missing path fails here, before any loading
    if spec.kind == "dense":
        from speechbert.models.lighthubert.extract import load_dense

        dense = load_dense(spec.path)
        arch, subnet = dense_arch(dense.config), dense.config.subnet
        module: nn.Module = dense
        subnet_json = None
    else:
        module, arch, subnet = _supernet(spec)
        subnet_json = subnet.to_json()
    return LoadedUpstream(module=module.eval(), identity=identity, subnet=subnet_json,
                          params=count_params(arch, subnet),
                          macs_per_second=count_macs(arch, subnet, FRAMES_PER_SECOND))


def _supernet(spec: UpstreamSpec) -> tuple[nn.Module, SupernetArch, SubnetConfig]:
    from speechbert.models.lighthubert.checkpoint import load_supernet, resolve_subnet
    from speechbert.models.lighthubert.supernet import SupernetUpstream

    assert spec.path is not None
    loaded = load_supernet(spec.path)
    try:
        subnet = resolve_subnet(spec.subnet or "default", loaded.space)
    except ConfigError as exc:
        raise ConfigError(f"upstream.subnet: {exc}") from exc
    return SupernetUpstream(loaded.supernet, subnet), loaded.space.arch, subnet


def dense_arch(config: Any) -> SupernetArch:
    """The smallest :class:`SupernetArch` a :class:`DenseEncoderConfig` is the full subnet of,
    so the supernet counting functions apply to extracted encoders too."""
    encoder = ElasticEncoderConfig(
        embed_dim=config.embed_dim, num_layers=config.depth, num_heads=max(config.heads),
        head_dim=config.head_dim, ffn_dim=max(config.ffn_dims), in_features=config.in_features,
        pos_conv_kernel=config.pos_conv_kernel, pos_conv_groups=config.pos_conv_groups,
        layer_norm_first=config.layer_norm_first)
    return SupernetArch(encoder, conv_layers=config.conv_layers,
                        extractor_mode=config.extractor_mode, conv_bias=config.conv_bias,
                        mask_embedding=config.mask_embedding)


def measure_macs_per_second(module: nn.Module) -> int:
    """MACs of ``module`` on 1 s of audio: FlopCounterMode's FLOPs / 2 (matmuls and convs)."""
    wavs = torch.zeros(1, SAMPLE_RATE)  # (1, T)
    lengths = torch.tensor([SAMPLE_RATE])  # (1,)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(wavs, lengths)
    return counter.get_total_flops() // 2


def describe(loaded: LoadedUpstream) -> str:
    """One line for logs: kind of module, parameters, MACs per second, subnet."""
    subnet = f", subnet {json.loads(loaded.subnet)}" if loaded.subnet else ""
    return (f"{type(loaded.module).__name__}: {loaded.params:,} params, "
            f"{loaded.macs_per_second / 1e6:.1f} M MACs/s{subnet}")
