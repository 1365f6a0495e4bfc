"""Search spaces: presets, sampling, evolution operators, and exact parameter and MAC counts."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode
from torchaudio.models import wav2vec2_model
from torchaudio.models.wav2vec2.components import _get_feature_extractor

from speechbert.data.frames import receptive_field
from speechbert.errors import ConfigError
from speechbert.models.lighthubert.space import (
    SearchSpace,
    base,
    count_macs,
    count_params,
    mac_breakdown,
    param_breakdown,
    small,
    tiny,
)
from speechbert.nn.elastic import SubnetConfig, build_encoder, build_feature_projection

# LightHuBERT's published counts (paper and README), CNN front end included, in millions.
PUBLISHED = [
    ("base max", base, SearchSpace.max_subnet, 94.38),
    ("base default", base, SearchSpace.default_subnet, 66.90),
    ("small default", small, SearchSpace.default_subnet, 26.88),
]


@pytest.mark.parametrize(("space_fn", "pick", "millions"), [p[1:] for p in PUBLISHED],
                         ids=[p[0] for p in PUBLISHED])
def test_published_parameter_counts(space_fn: Callable[[], SearchSpace],
                                    pick: Callable[[SearchSpace], SubnetConfig],
                                    millions: float) -> None:
    space = space_fn()  # HuBERT Base's front end (group_norm), what stage 1 copies
    params = count_params(space, pick(space))
    assert abs(params - millions * 1e6) / (millions * 1e6) < 0.005
    published = replace(space.arch, extractor_mode="layer_norm")  # LightHuBERT's code default
    assert round(count_params(published, pick(space)) / 1e6, 2) == millions  # exact digits


def test_group_norm_front_end_is_6144_params_smaller_and_still_within_half_a_percent() -> None:
    space = base()
    arch = replace(space.arch, extractor_mode="layer_norm")
    cfg = space.max_subnet()
    assert count_params(arch, cfg) - count_params(space, cfg) == 6 * 1024
    assert abs(count_params(space, cfg) - 94.38e6) / 94.38e6 < 0.005


def test_base_and_small_are_two_spaces_of_one_768_wide_supernet() -> None:
    assert small().arch == base().arch
    encoder = small().arch.encoder
    assert (encoder.embed_dim, encoder.num_heads, encoder.ffn_dim, encoder.ffn_chunk) == (
        768, 12, 3072, 768)
    assert small().arch.full_subnet() == SubnetConfig.uniform(768, 12, 3072, 12)
    assert small().on_arch(base().arch) == small()


def test_a_space_refuses_a_supernet_of_another_geometry() -> None:
    with pytest.raises(ConfigError, match=r"space='small' is a space of a different supernet "
                       r"than the checkpoint's \(embed_dim: 768 != 128"):
        small().on_arch(tiny().arch)


def _dense_torchaudio_params(space: SearchSpace, cfg: SubnetConfig) -> int:
    """Parameters of torchaudio's Wav2Vec2Model at the subnet's (uniform) sizes, on meta."""
    arch, enc = space.arch, space.arch.encoder
    assert len(set(cfg.heads)) == len(set(cfg.ffn_dims)) == 1
    assert cfg.embed_dim == cfg.heads[0] * enc.head_dim  # torchaudio ties head_dim to D / H
    with torch.device("meta"):
        model = wav2vec2_model(
            arch.extractor_mode, list(arch.conv_layers), arch.conv_bias, cfg.embed_dim, 0.0,
            enc.pos_conv_kernel, enc.pos_conv_groups, cfg.depth, cfg.heads[0], 0.0,
            cfg.ffn_dims[0], 0.0, 0.0, enc.layer_norm_first, 0.0, None)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("space_fn", "pick"), [
    (base, SearchSpace.default_subnet), (small, SearchSpace.default_subnet),
    (tiny, SearchSpace.max_subnet), (small, SearchSpace.min_subnet),
], ids=["base default", "small default", "tiny max", "small min"])
def test_count_equals_a_dense_torchaudio_model_of_the_subnets_sizes(
        space_fn: Callable[[], SearchSpace], pick: Callable[[SearchSpace], SubnetConfig]) -> None:
    space = space_fn()
    cfg = pick(space)
    mask_embedding = cfg.embed_dim  # HuBERT's pretraining wrapper holds it, Wav2Vec2Model not
    assert count_params(space, cfg) == _dense_torchaudio_params(space, cfg) + mask_embedding


class _RecordWeights(TorchFunctionMode):
    """Counts the weight and bias elements fed to linear, layer-norm and conv calls."""

    POSITIONS = {F.linear: (1, 2), F.layer_norm: (2, 3), F.conv1d: (1, 2)}

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in self.POSITIONS:
            weight_index, bias_index = self.POSITIONS[func]
            for index, name in ((weight_index, "weight"), (bias_index, "bias")):
                value = args[index] if index < len(args) else kwargs.get(name)
                self.numel += value.numel() if isinstance(value, torch.Tensor) else 0
        return func(*args, **kwargs)


@pytest.mark.parametrize("pick", [SearchSpace.max_subnet, SearchSpace.min_subnet,
                                  SearchSpace.default_subnet], ids=["max", "min", "default"])
def test_count_equals_the_weights_the_sliced_elastic_encoder_uses(
        pick: Callable[[SearchSpace], SubnetConfig]) -> None:
    space = tiny()
    cfg, enc = pick(space), space.arch.encoder
    projection, encoder = build_feature_projection(enc).eval(), build_encoder(enc).eval()
    features = torch.randn(1, 20, enc.in_features)  # (B, T, C) conv features
    with torch.no_grad(), _RecordWeights() as used:
        encoder(projection(features, cfg.embed_dim), cfg)
    front_end = _get_feature_extractor(space.arch.extractor_mode, list(space.arch.conv_layers),
                                       space.arch.conv_bias)
    parts = param_breakdown(space, cfg)
    assert sum(p.numel() for p in front_end.parameters()) == parts["feature_extractor"]
    # The positional conv's weight-norm gain g (K values) reaches the conv through the
    # parametrisation, not as a conv argument; the mask embedding is not used by the encoder.
    unseen = parts["feature_extractor"] + parts["mask_embedding"] + enc.pos_conv_kernel
    assert used.numel == count_params(space, cfg) - unseen


@contextmanager
def _count_flops() -> Iterator[FlopCounterMode]:
    # The math SDPA backend runs attention as bmm's, which the flop counter sees on CPU.
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as f:
        yield f


def test_compute_scales_with_the_subnet_as_count_macs_says() -> None:
    space, frames = tiny(), 40
    enc = space.arch.encoder
    projection, encoder = build_feature_projection(enc).eval(), build_encoder(enc).eval()
    measured = {}
    for name, cfg in (("max", space.max_subnet()), ("min", space.min_subnet())):
        with _count_flops() as flops:
            encoder(projection(torch.randn(1, frames, enc.in_features), cfg.embed_dim), cfg)
        measured[name] = flops.get_total_flops() // 2
        parts = mac_breakdown(space, cfg, frames)
        assert measured[name] == parts["feature_projection"] + parts["pos_conv"] + parts["layers"]
    assert measured["min"] < measured["max"] / 4  # min subnet: narrower, shallower matmuls


def test_front_end_macs_match_the_torchaudio_feature_extractor() -> None:
    space, frames = tiny(), 40
    field, hop = receptive_field()
    front_end = _get_feature_extractor(space.arch.extractor_mode, list(space.arch.conv_layers),
                                       space.arch.conv_bias)
    samples = field + (frames - 1) * hop
    with _count_flops() as flops:
        out, _ = front_end(torch.randn(1, samples), None)
    assert out.shape[1] == frames
    macs = mac_breakdown(space, space.min_subnet(), frames)["feature_extractor"]
    assert flops.get_total_flops() // 2 == macs


def test_base_macs_grow_quadratically_only_in_attention() -> None:
    space = base()
    cfg = space.max_subnet()
    attention_width, layers = 768, 12
    pos_conv_per_frame = 768 * (768 // 16) * 128
    growth = count_macs(space, cfg, 200) - 2 * count_macs(space, cfg, 100)
    front_end = (mac_breakdown(space, cfg, 200)["feature_extractor"]
                 - 2 * mac_breakdown(space, cfg, 100)["feature_extractor"])
    # Linear parts cancel; the even-kernel positional conv computes T + 1 frames per call.
    linear_leftover = front_end - pos_conv_per_frame
    quadratic = layers * 2 * attention_width * (200**2 - 2 * 100**2)
    assert growth - linear_leftover == quadratic
    assert count_macs(space, space.min_subnet(), 100) < count_macs(space, cfg, 100)


def test_presets_sizes_and_defaults() -> None:
    assert base().default_subnet() == SubnetConfig.uniform(640, 10, 2560, 12)
    assert small().default_subnet() == SubnetConfig.uniform(384, 6, 1536, 12)
    assert base().max_subnet() == SubnetConfig.uniform(768, 12, 3072, 12)
    assert base().min_subnet() == SubnetConfig.uniform(512, 8, 1792, 12)
    assert small().min_subnet() == SubnetConfig.uniform(256, 4, 768, 10)
    assert tiny().max_subnet() == tiny().arch.encoder.max_subnet()
    assert base().size == 3 * 6**12
    assert small().size == 3 * (9**10 + 9**11 + 9**12)
    assert small().arch.encoder.kept_layers(10) == (0, 1, 2, 3, 4, 5, 6, 8, 9, 10)


@pytest.mark.parametrize("space_fn", [tiny, small], ids=["tiny", "small"])
def test_sampling_covers_every_choice_and_stays_in_the_space(
        space_fn: Callable[[], SearchSpace]) -> None:
    space = space_fn()
    rng = random.Random(0)
    seen: dict[str, set] = {"embed": set(), "depth": set(), "heads": set(), "ratio": set()}
    for _ in range(300):
        cfg = space.sample(rng)
        space.check_subnet(cfg)
        seen["embed"].add(cfg.embed_dim)
        seen["depth"].add(cfg.depth)
        seen["heads"].update(cfg.heads)
        seen["ratio"].update(space.ffn_ratios_of(cfg))
    assert seen == {"embed": set(space.embed_dims), "depth": set(space.depths),
                    "heads": set(space.heads), "ratio": set(space.ffn_ratios)}


def test_sampling_is_deterministic_for_a_seed() -> None:
    space = small()
    draws = [[space.sample(random.Random(seed)) for _ in range(3)] for seed in (7, 7, 8)]
    assert draws[0] == draws[1]
    assert draws[0] != draws[2]
    rng = random.Random(3)
    assert len({space.sample(rng) for _ in range(20)}) > 15  # hashable, and varied


@pytest.mark.parametrize("space_fn", [tiny, small], ids=["tiny", "small"])
def test_mutate_and_crossover_stay_inside_the_space(space_fn: Callable[[], SearchSpace]) -> None:
    space, rng = space_fn(), random.Random(1)
    population = [space.sample(rng) for _ in range(20)]
    for _ in range(200):
        a, b = rng.sample(population, 2)
        child = space.crossover(a, b, rng)
        space.check_subnet(child)
        space.check_subnet(space.mutate(child, rng, prob=0.3))
        assert child.embed_dim in (a.embed_dim, b.embed_dim)
        assert child.depth in (a.depth, b.depth)
        assert all(h in (a.heads + b.heads) for h in child.heads)


def test_mutate_probability_zero_keeps_and_one_redraws() -> None:
    space, rng = small(), random.Random(2)
    cfg = space.default_subnet()
    assert space.mutate(cfg, rng, prob=0.0) == cfg
    assert len({space.mutate(cfg, rng, prob=1.0) for _ in range(10)}) > 5
    with pytest.raises(ConfigError, match=r"mutate prob must be in \[0, 1\]; got 1.5"):
        space.mutate(cfg, rng, prob=1.5)


class _OnlyFirstDrawMutates(random.Random):
    """An rng whose first ``random()`` (the width's coin) is 0 and every later one 0.99."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.coins = 0

    def random(self) -> float:
        self.coins += 1
        return 0.0 if self.coins == 1 else 0.99

    def getrandbits(self, k: int, /) -> int:
        # Defined so that choice() keeps drawing from the seeded bits, not from random().
        return super().getrandbits(k)


def test_mutating_only_the_width_keeps_each_layers_heads_and_ratio() -> None:
    space = small()
    cfg = space.subnet(384, [(6, 3.0), (8, 4.0)] + [(4, 3.5)] * 8)
    widths = set()
    for seed in range(10):
        child = space.mutate(cfg, _OnlyFirstDrawMutates(seed), prob=0.5)
        widths.add(child.embed_dim)
        assert child.heads == cfg.heads
        assert space.ffn_ratios_of(child) == space.ffn_ratios_of(cfg)
    assert widths == set(space.embed_dims)


def test_crossover_of_a_subnet_with_itself_is_the_subnet() -> None:
    space = tiny()
    cfg = space.sample(random.Random(4))
    assert space.crossover(cfg, cfg, random.Random(5)) == cfg


@pytest.mark.parametrize(("cfg", "message"), [
    (SubnetConfig.uniform(576, 9, 2304, 12), r"embed_dim must be one of \(512, 640, 768\)"),
    (SubnetConfig.uniform(640, 10, 2560, 11), r"depth must be one of \(12,\); got 11"),
    (SubnetConfig.uniform(640, 11, 2560, 12), r"heads must each be one of \(8, 10, 12\)"),
    (SubnetConfig.uniform(640, 10, 1920, 12), r"ffn_dims must each be int\(ratio x embed_dim\)"),
    (SubnetConfig.uniform(896, 14, 3584, 12), r"embed_dim must be <= 768"),
])
def test_check_subnet_names_the_choice_outside_the_space(cfg: SubnetConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=f"SubnetConfig.{message}"):
        cfg.validate_against(base())


def test_space_validation_errors() -> None:
    space = tiny()
    with pytest.raises(ConfigError, match=r"SearchSpace.heads must be non-empty, increasing"):
        replace(space, heads=(4, 2)).validate()
    with pytest.raises(ConfigError, match=r"whole units; 2.5 x 98 = 245.0|divisible"):
        replace(space, embed_dims=(98,), ffn_ratios=(2.5,)).validate()
    with pytest.raises(ConfigError, match="SubnetConfig.depth must be <= 4; got 5"):
        replace(space, depths=(2, 5)).validate()
    with pytest.raises(ConfigError, match=r"in_features must equal the last conv's channels"):
        replace(space, arch=replace(space.arch, conv_layers=((32, 10, 5),))).validate()
    with pytest.raises(ConfigError, match="num_frames must be >= 1; got 0"):
        count_macs(space, space.min_subnet(), 0)
