"""load_upstream: every kind we can build here loads as an Upstream with params, MACs and a key."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from speechbert.data.feature_cache import CacheKey
from speechbert.errors import CheckpointError, ConfigError
from speechbert.models.hubert import config as hubert_config
from speechbert.models.hubert.build import build_hubert_pretrain
from speechbert.models.lighthubert import space
from speechbert.models.lighthubert.checkpoint import space_to_dict
from speechbert.models.lighthubert.extract import extract_subnet, save_dense
from speechbert.models.lighthubert.supernet import build_supernet
from speechbert.models.load import (
    UpstreamSpec,
    checkpoint_kind,
    dense_arch,
    load_checkpoint_encoder,
    load_upstream,
    upstream_identity,
)
from speechbert.models.upstream import Upstream
from speechbert.models.w2vbert import config as w2vbert_config
from speechbert.models.w2vbert.build import build_w2vbert
from speechbert.nn.elastic import SubnetConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _lightning_ckpt(path: Path, model: torch.nn.Module, model_config: dict) -> Path:
    """A file shaped like our pretraining checkpoints (model under ``model.``)."""
    torch.save({"hyper_parameters": {"model_config": model_config},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def _check(spec: UpstreamSpec, layers: int, tmp_path: Path) -> None:
    loaded = load_upstream(spec)
    assert isinstance(loaded.module, Upstream)
    assert not loaded.module.training
    out = loaded.module(torch.randn(2, 16_000), torch.tensor([16_000, 9_000]))
    assert len(out.hidden_states) == layers == loaded.module.num_layers
    assert out.hidden_states[0].shape[-1] == loaded.module.hidden_size
    assert loaded.macs_per_second > 0
    manifest = tmp_path / "m.tsv"
    manifest.write_text("id\tpath\tnum_samples\tspeaker\n")
    key = loaded.cache_key(manifest)
    assert isinstance(key, CacheKey) and key.upstream == loaded.identity and key.fp16


def test_fbank(tmp_path: Path) -> None:
    _check(UpstreamSpec(), 1, tmp_path)
    loaded = load_upstream(UpstreamSpec(fbank_delta_order=0))
    assert loaded.params == 0
    # 98 frames x 257 FFT bins x 80 mel filters: the mel matmul is what FlopCounterMode sees
    assert loaded.macs_per_second == 98 * 257 * 80
    deltas = load_upstream(UpstreamSpec())  # the default: s3prl's 240 dims
    assert deltas.identity != loaded.identity and deltas.module.hidden_size == 240
    # + two delta convolutions (window 5) over 98 frames x 80 channels
    assert deltas.macs_per_second == 98 * 257 * 80 + 2 * 98 * 80 * 5


def test_our_hubert_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = hubert_config.tiny()
    path = _lightning_ckpt(tmp_path / "h.ckpt", build_hubert_pretrain(cfg), asdict(cfg))
    spec = UpstreamSpec(name="h", kind="hubert", path=str(path))
    _check(spec, cfg.num_layers + 1, tmp_path)
    loaded = load_upstream(spec)
    assert loaded.params == sum(p.numel() for p in loaded.module.parameters())
    assert str(path.resolve()) in loaded.identity and loaded.subnet is None


def test_w2vbert_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = w2vbert_config.tiny()
    path = _lightning_ckpt(tmp_path / "w.ckpt", build_w2vbert(cfg), asdict(cfg))
    _check(UpstreamSpec(name="w", kind="w2vbert", path=str(path)), cfg.num_layers + 1, tmp_path)


def test_dense_encoder_counts_match_the_space(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tiny = space.tiny()
    dense = extract_subnet(build_supernet(tiny.arch).eval(), tiny.default)
    path = save_dense(dense, tmp_path / "dense.pt")
    spec = UpstreamSpec(name="d", kind="dense", path=str(path))
    _check(spec, tiny.default.depth + 1, tmp_path)
    loaded = load_upstream(spec)
    assert loaded.params == space.count_params(tiny, tiny.default)
    assert loaded.macs_per_second == space.count_macs(tiny, tiny.default, 50)
    assert space.count_params(dense_arch(dense.config), dense.config.subnet) == loaded.params


def test_supernet_at_a_subnet_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tiny = space.tiny()
    supernet = build_supernet(tiny.arch)
    path = tmp_path / "distill.ckpt"
    torch.save({"hyper_parameters": {"space": space_to_dict(tiny)},
                "state_dict": {f"student.{k}": v for k, v in supernet.state_dict().items()}},
               path)
    subnet = SubnetConfig.uniform(128, 4, 512, 2)
    subnet_file = tmp_path / "subnet.json"
    subnet_file.write_text(subnet.to_json())
    spec = UpstreamSpec(name="s", kind="supernet", path=str(path), subnet=str(subnet_file))
    _check(spec, 3, tmp_path)
    loaded = load_upstream(spec)
    assert json.loads(loaded.subnet or "{}")["heads"] == [4, 4]
    assert loaded.params == space.count_params(tiny, subnet)
    assert loaded.macs_per_second == space.count_macs(tiny, subnet, 50)
    default = load_upstream(UpstreamSpec(name="s", kind="supernet", path=str(path)))
    assert default.subnet != loaded.subnet  # the subnet is part of the cache key
    assert default.params == space.count_params(tiny, tiny.default)
    largest = load_upstream(UpstreamSpec(name="s", kind="supernet", path=str(path), subnet="max"))
    assert largest.params == space.count_params(tiny, tiny.max_subnet())
    with pytest.raises(ConfigError, match="upstream.subnet: subnet=largest: no such file"):
        load_upstream(UpstreamSpec(name="s", kind="supernet", path=str(path), subnet="largest"))
    identities = {upstream_identity(UpstreamSpec(name="s", kind="supernet", path=str(path),
                                                 subnet=choice))
                  for choice in (str(subnet_file), "max", None)}
    assert len(identities) == 3
    before = upstream_identity(spec)
    subnet_file.write_text(tiny.max_subnet().to_json() + "\n")
    assert upstream_identity(spec) != before  # an edited subnet file is another upstream


@pytest.mark.parametrize(("spec", "words"), [
    (UpstreamSpec(kind="bert"), "upstream.kind must be one of"),
    (UpstreamSpec(kind="hubert"), "upstream.path must be set"),
    (UpstreamSpec(name="a/b"), "upstream.name must be non-empty without '/'"),
    (UpstreamSpec(kind="fbank", subnet="s.json"), "upstream.subnet is only read"),
])
def test_bad_specs_name_the_field(spec: UpstreamSpec, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_upstream(spec)


def test_missing_checkpoint_and_subnet_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_upstream(UpstreamSpec(name="h", kind="hubert", path=str(tmp_path / "no.ckpt")))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_upstream(UpstreamSpec(name="x", kind="hf", path=str(tmp_path)))


def test_checkpoint_kind_is_read_from_the_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    h_cfg, w_cfg = hubert_config.tiny(), w2vbert_config.tiny()
    hubert = _lightning_ckpt(tmp_path / "h.ckpt", build_hubert_pretrain(h_cfg), asdict(h_cfg))
    w2vbert = _lightning_ckpt(tmp_path / "w.ckpt", build_w2vbert(w_cfg), asdict(w_cfg))
    torch.save({"cfg": {"model": {}}, "model": {}}, tmp_path / "fairseq.pt")  # shape only
    tiny = space.tiny()
    dense = save_dense(extract_subnet(build_supernet(tiny.arch).eval(), tiny.default),
                       tmp_path / "encoder.pt")
    (tmp_path / "x.bin").touch()
    paths = (hubert, w2vbert, tmp_path, tmp_path / "fairseq.pt", dense)
    assert [checkpoint_kind(p) for p in paths] == ["hubert", "w2vbert", "hf", "fairseq", "dense"]
    for path, layers in ((w2vbert, w_cfg.num_layers + 1), (dense, tiny.default.depth + 1)):
        encoder = load_checkpoint_encoder(path)
        assert isinstance(encoder, Upstream) and not encoder.training
        assert encoder.num_layers == layers
    with pytest.raises(CheckpointError, match="unknown upstream format"):
        checkpoint_kind(tmp_path / "x.bin")
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint_kind(tmp_path / "missing.ckpt")
