"""LightHuBERT search spaces: the choices, sampling and evolution operators, and exact counts.

A :class:`SearchSpace` lists the choices of a once-for-all supernet (embedding width, per-layer
heads and FFN ratio, depth) on top of a :class:`SupernetArch` (the shared conv front end plus the
full-size elastic encoder). Presets: :func:`base` and :func:`small` are LightHuBERT's two spaces
of one 768-wide supernet (:func:`lighthubert_arch`), so one stage 1 serves both; :func:`large` is
ours, for a HuBERT Large teacher; :func:`tiny` and :func:`tiny_fbank` are for tests and the demo.
The supernet's front end is always its teacher's (stage 1 applies :meth:`SearchSpace.with_front_end`
and stage 2 reads the stage-1 supernet with :meth:`SearchSpace.on_arch`).

Parameter counts (:func:`count_params`) are the parameters a subnet uses, as a dense model of its
sizes holds them: conv front end and its norms, the feature LayerNorm(C) and projection C -> D,
the mask embedding (D), the weight-normed positional conv (v: D x D/groups x K, g: K, bias D),
every kept layer, and the encoder LayerNorm. Not counted, as in LightHuBERT: the distillation
prediction heads, and there is no HuBERT ``final_proj`` / label embedding in the student.
LightHuBERT's own ``calc_sampled_param_num`` differs in two small ways: it counts the mask
embedding at full supernet width and leaves out the weight-norm gain g (K = 128); for Base's
default subnet these cancel exactly (768 - 640 = 128); for Small's default it counts 256 more
(768 - 384 - 128). The published counts use its
``extractor_mode="layer_norm"`` front end (a LayerNorm(512) after each of the 7 convs,
7,168 parameters); with HuBERT base's single GroupNorm they are 6,144 lower. The ``fbank`` front
end (:mod:`speechbert.models.hubert.fbank_frontend`) has no parameters.

MACs (:func:`count_macs`) are the multiply-accumulates of every matmul and convolution for one
utterance of ``num_frames`` frames (front end run on the shortest waveform giving that many):
norms, activations, softmax and bias adds are not counted, nor the ``fbank`` front end (its FFT
and mel filters run in fairseq2n, outside torch, as w2v-BERT's do). The positional conv computes
T + 1 outputs for an even kernel (one is trimmed), and those are counted.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

from speechbert.data.frames import HUBERT_CONV_LAYERS, receptive_field
from speechbert.errors import ConfigError
from speechbert.models.hubert.config import ConvLayerSpec, front_end_problem
from speechbert.models.hubert.fbank_frontend import FBANK_MODE, fbank_conv_layers
from speechbert.nn.elastic import DepthMap, ElasticEncoderConfig, SubnetConfig

LIGHTHUBERT_DEPTH_MAP: DepthMap = (
    (0, 1, 4, 5, 8, 9),
    (0, 1, 2, 4, 5, 8, 9),
    (0, 1, 2, 4, 5, 6, 8, 9),
    (0, 1, 2, 4, 5, 6, 8, 9, 10),
    (0, 1, 2, 3, 4, 5, 6, 8, 9, 10),
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
)
"""LightHuBERT's kept layers of a 12-layer supernet for depths 6-11 (its ``depth_maps``): layers
are dropped from the ends of the blocks 1-4, 5-8, 9-12, e.g. depth 10 skips layers 8 and 12."""


def hubert_conv_layers(channels: int) -> tuple[ConvLayerSpec, ...]:
    """HuBERT's 7 conv layers (20 ms frames) with ``channels`` channels each."""
    return tuple((channels, k, s) for k, s in HUBERT_CONV_LAYERS)


@dataclass(frozen=True)
class SupernetArch:
    """Everything a supernet holds besides its choices: the shared conv front end, the full-size
    elastic encoder, and whether it keeps a mask embedding."""

    encoder: ElasticEncoderConfig
    """Full-size elastic encoder (widths, heads, FFN, depth map, positional conv)."""
    conv_layers: tuple[ConvLayerSpec, ...] = hubert_conv_layers(512)
    """Conv front end, (channels, kernel, stride) per layer; shared by every subnet (``fbank``:
    the one pseudo layer of :func:`~speechbert.models.hubert.fbank_frontend.fbank_conv_layers`)."""
    extractor_mode: str = "group_norm"
    """The teacher's front end, shared by every subnet: ``group_norm`` (one GroupNorm after the
    first conv, HuBERT Base), ``layer_norm`` (a LayerNorm after every conv, HuBERT Large; the
    default of LightHuBERT's model code) or ``fbank`` (stacked filterbanks, a ``tiny_fbank``
    teacher)."""
    conv_bias: bool = False
    """Whether the conv layers have a bias term."""
    mask_embedding: bool = True
    """Whether the supernet keeps HuBERT's learned mask embedding (used sliced to D)."""

    def validate(self) -> SupernetArch:
        """Raise :class:`ConfigError` naming the field, rule and value of a bad setting."""
        self.encoder.validate()
        problem = front_end_problem(self.extractor_mode, self.conv_layers)
        if problem:
            raise ConfigError(f"SupernetArch.{problem}")
        if not self.conv_layers or self.conv_layers[-1][0] != self.encoder.in_features:
            raise ConfigError(f"SupernetArch.encoder.in_features must equal the last conv's "
                              f"channels ({self.encoder.in_features} != "
                              f"{self.conv_layers[-1][0] if self.conv_layers else None})")
        return self

    def check_subnet(self, subnet: SubnetConfig) -> None:
        """Raise :class:`ConfigError` if ``subnet`` is not a slice of the encoder."""
        self.encoder.check_subnet(subnet)

    def full_subnet(self) -> SubnetConfig:
        """The subnet that runs every weight (what stage 1 trains, whatever the space)."""
        return self.encoder.max_subnet()

    def front_end(self) -> tuple[str, tuple[ConvLayerSpec, ...], bool]:
        """(extractor_mode, conv_layers, conv_bias): everything that builds the front end."""
        return self.extractor_mode, self.conv_layers, self.conv_bias


@dataclass(frozen=True)
class SearchSpace:
    """The choices of a once-for-all supernet; a subnet picks one width and depth, and heads and
    an FFN ratio per layer (FFN units = int(ratio x width), as LightHuBERT rounds)."""

    name: str
    """Preset name, e.g. ``base``."""
    arch: SupernetArch
    """The supernet every subnet is a slice of."""
    embed_dims: tuple[int, ...]
    """Choices of the width D shared by all layers."""
    heads: tuple[int, ...]
    """Choices of attention heads, per layer."""
    ffn_ratios: tuple[float, ...]
    """Choices of FFN units / D, per layer."""
    depths: tuple[int, ...]
    """Choices of the number of layers run."""
    default: SubnetConfig
    """The subnet used when none is asked for (LightHuBERT's ``subnet``)."""

    def validate(self) -> SearchSpace:
        """Raise :class:`ConfigError` if a choice list is empty, leaves the arch or rounds units."""
        self.arch.validate()
        for name in ("embed_dims", "heads", "ffn_ratios", "depths"):
            values = getattr(self, name)
            _check(bool(values) and list(values) == sorted(set(values)),
                   f"{name} must be non-empty, increasing and unique; got {values}")
        for e in self.embed_dims:
            for r in self.ffn_ratios:
                _check(float(r * e).is_integer(),
                       f"ffn_ratios x embed_dims must be whole units; {r} x {e} = {r * e}")
        for e in self.embed_dims:  # the largest choices at each width fit the supernet
            self.arch.check_subnet(self.subnet(e, [(max(self.heads), max(self.ffn_ratios))]
                                              * max(self.depths)))
        self.check_subnet(self.default)
        return self

    def with_front_end(self, extractor_mode: str, conv_layers: tuple[ConvLayerSpec, ...],
                       conv_bias: bool) -> SearchSpace:
        """This space on a supernet whose front end is the one given (the teacher's)."""
        arch = replace(self.arch, extractor_mode=extractor_mode,
                       conv_layers=tuple(tuple(layer) for layer in conv_layers),  # type: ignore[misc]
                       conv_bias=conv_bias,
                       encoder=replace(self.arch.encoder, in_features=conv_layers[-1][0]))
        return replace(self, arch=arch).validate()

    def on_arch(self, arch: SupernetArch) -> SearchSpace:
        """These choices on ``arch`` (a stage-1 checkpoint's supernet); :class:`ConfigError`
        when the Transformer geometry differs, since the choices were made for this one."""
        if arch.encoder != self.arch.encoder:
            diffs = _field_diffs(self.arch.encoder, arch.encoder)
            raise ConfigError(f"space={self.name!r} is a space of a different supernet than the "
                              f"checkpoint's ({diffs}); use a space of that supernet")
        return replace(self, arch=arch).validate()

    @property
    def size(self) -> int:
        """Number of distinct subnets in the space."""
        per_layer = len(self.heads) * len(self.ffn_ratios)
        return len(self.embed_dims) * sum(per_layer**depth for depth in self.depths)

    def check_subnet(self, subnet: SubnetConfig) -> None:
        """Raise :class:`ConfigError` naming the choice of ``subnet`` that is not in the space."""
        self.arch.check_subnet(subnet)
        _subnet_check(subnet.embed_dim in self.embed_dims,
                      f"embed_dim must be one of {self.embed_dims}; got {subnet.embed_dim}")
        _subnet_check(subnet.depth in self.depths,
                      f"depth must be one of {self.depths}; got {subnet.depth}")
        _subnet_check(set(subnet.heads) <= set(self.heads),
                      f"heads must each be one of {self.heads}; got {subnet.heads}")
        self.ffn_ratios_of(subnet)

    def ffn_ratios_of(self, subnet: SubnetConfig) -> tuple[float, ...]:
        """The FFN ratio choice of each layer of ``subnet``."""
        by_units = {_ffn_units(r, subnet.embed_dim): r for r in self.ffn_ratios}
        units = [by_units[f] for f in subnet.ffn_dims if f in by_units]
        _subnet_check(len(units) == subnet.depth,
                      f"ffn_dims must each be int(ratio x embed_dim) for ratio in "
                      f"{self.ffn_ratios}, i.e. in {sorted(by_units)}; got {subnet.ffn_dims}")
        return tuple(units)

    def subnet(self, embed_dim: int, layers: Sequence[tuple[int, float]]) -> SubnetConfig:
        """The subnet of width ``embed_dim`` with (heads, FFN ratio) per layer."""
        return SubnetConfig(embed_dim, tuple(h for h, _ in layers),
                            tuple(_ffn_units(r, embed_dim) for _, r in layers))

    def sample(self, rng: random.Random) -> SubnetConfig:
        """A subnet with every choice drawn uniformly and independently (depth, width, and each
        layer's heads and ratio); the same ``rng`` state gives the same subnet."""
        depth = rng.choice(self.depths)
        embed_dim = rng.choice(self.embed_dims)
        return self.subnet(embed_dim, [self._sample_layer(rng) for _ in range(depth)])

    def _sample_layer(self, rng: random.Random) -> tuple[int, float]:
        return rng.choice(self.heads), rng.choice(self.ffn_ratios)

    def max_subnet(self) -> SubnetConfig:
        """The largest subnet: widest, deepest, most heads, largest ratio."""
        layer = (max(self.heads), max(self.ffn_ratios))
        return self.subnet(max(self.embed_dims), [layer] * max(self.depths))

    def min_subnet(self) -> SubnetConfig:
        """The smallest subnet: narrowest, shallowest, fewest heads, smallest ratio."""
        layer = (min(self.heads), min(self.ffn_ratios))
        return self.subnet(min(self.embed_dims), [layer] * min(self.depths))

    def default_subnet(self) -> SubnetConfig:
        """The preset's default subnet (Base: 640 / 10 heads / 2560 / 12 layers)."""
        return self.default

    def mutate(self, subnet: SubnetConfig, rng: random.Random, prob: float) -> SubnetConfig:
        """Redraw each choice of ``subnet`` with probability ``prob``: width, depth, and each
        layer's heads and ratio (ratios are kept when the width changes; new layers are drawn)."""
        _check(0.0 <= prob <= 1.0, f"mutate prob must be in [0, 1]; got {prob}")
        self.check_subnet(subnet)
        layers = list(zip(subnet.heads, self.ffn_ratios_of(subnet), strict=True))
        embed_dim = rng.choice(self.embed_dims) if rng.random() < prob else subnet.embed_dim
        depth = rng.choice(self.depths) if rng.random() < prob else subnet.depth
        mutated = [self._mutate_layer(layer, rng, prob) for layer in layers[:depth]]
        mutated += [self._sample_layer(rng) for _ in range(depth - len(mutated))]
        return self.subnet(embed_dim, mutated)

    def _mutate_layer(self, layer: tuple[int, float], rng: random.Random,
                      prob: float) -> tuple[int, float]:
        heads = rng.choice(self.heads) if rng.random() < prob else layer[0]
        ratio = rng.choice(self.ffn_ratios) if rng.random() < prob else layer[1]
        return heads, ratio

    def crossover(self, a: SubnetConfig, b: SubnetConfig, rng: random.Random) -> SubnetConfig:
        """A child taking each choice from either parent with equal chance (width, depth, and
        each layer's heads and ratio); layers only the deeper parent has come from it."""
        self.check_subnet(a)
        self.check_subnet(b)
        layers_a = list(zip(a.heads, self.ffn_ratios_of(a), strict=True))
        layers_b = list(zip(b.heads, self.ffn_ratios_of(b), strict=True))
        embed_dim = rng.choice((a.embed_dim, b.embed_dim))
        depth = rng.choice((a.depth, b.depth))
        child = []
        for i in range(depth):
            parents = [layers[i] for layers in (layers_a, layers_b) if i < len(layers)]
            child.append((rng.choice(parents)[0], rng.choice(parents)[1]))
        return self.subnet(embed_dim, child)


SpaceOrArch = SearchSpace | SupernetArch
"""What the counting functions accept: a space stands for its arch."""


def param_breakdown(space_or_arch: SpaceOrArch, subnet: SubnetConfig) -> dict[str, int]:
    """Parameters ``subnet`` uses, per part (see the module docstring for what is counted)."""
    arch = _arch(space_or_arch, subnet)
    enc, e = arch.encoder, subnet.embed_dim
    channels = enc.in_features
    return {
        "feature_extractor": _front_end_params(arch),
        "feature_projection": 2 * channels + channels * e + e,
        "mask_embedding": e if arch.mask_embedding else 0,
        "pos_conv": e * (e // enc.pos_conv_groups) * enc.pos_conv_kernel + e
        + enc.pos_conv_kernel,
        "encoder_layer_norm": 2 * e,
        "layers": sum(_layer_params(e, a, f) for a, f in
                      zip(subnet.attention_dims(enc.head_dim), subnet.ffn_dims, strict=True)),
    }


def count_params(space_or_arch: SpaceOrArch, subnet: SubnetConfig) -> int:
    """Exact number of parameters ``subnet`` uses, conv front end included."""
    return sum(param_breakdown(space_or_arch, subnet).values())


def mac_breakdown(space_or_arch: SpaceOrArch, subnet: SubnetConfig,
                  num_frames: int) -> dict[str, int]:
    """Multiply-accumulates of one ``num_frames``-frame utterance through ``subnet``, per part."""
    arch = _arch(space_or_arch, subnet)
    _check(num_frames >= 1, f"num_frames must be >= 1; got {num_frames}")
    enc, e, t = arch.encoder, subnet.embed_dim, num_frames
    kernel = enc.pos_conv_kernel
    pos_frames = t + 2 * (kernel // 2) - kernel + 1
    return {
        "feature_extractor": _front_end_macs(arch, num_frames),
        "feature_projection": t * enc.in_features * e,
        "pos_conv": pos_frames * e * (e // enc.pos_conv_groups) * kernel,
        "layers": sum(_layer_macs(t, e, a, f) for a, f in
                      zip(subnet.attention_dims(enc.head_dim), subnet.ffn_dims, strict=True)),
    }


def count_macs(space_or_arch: SpaceOrArch, subnet: SubnetConfig, num_frames: int) -> int:
    """Exact multiply-accumulates of every matmul and conv for ``num_frames`` frames."""
    return sum(mac_breakdown(space_or_arch, subnet, num_frames).values())


def _arch(space_or_arch: SpaceOrArch, subnet: SubnetConfig) -> SupernetArch:
    arch = space_or_arch.arch if isinstance(space_or_arch, SearchSpace) else space_or_arch
    arch.validate().check_subnet(subnet)
    return arch


def _layer_params(e: int, a: int, f: int) -> int:
    attention = 3 * (e * a + a) + (a * e + e)
    ffn = (e * f + f) + (f * e + e)
    return attention + ffn + 2 * (2 * e)


def _layer_macs(t: int, e: int, a: int, f: int) -> int:
    projections = 4 * t * e * a
    scores_and_context = 2 * t * t * a
    return projections + scores_and_context + 2 * t * e * f


def _front_end_params(arch: SupernetArch) -> int:
    if arch.extractor_mode == FBANK_MODE:
        return 0
    total, in_channels = 0, 1
    for i, (channels, kernel, _) in enumerate(arch.conv_layers):
        total += in_channels * channels * kernel + (channels if arch.conv_bias else 0)
        if arch.extractor_mode == "layer_norm" or i == 0:
            total += 2 * channels  # LayerNorm / GroupNorm(C, C) affine
        in_channels = channels
    return total


def _front_end_macs(arch: SupernetArch, num_frames: int) -> int:
    if arch.extractor_mode == FBANK_MODE:
        return 0
    field, hop = receptive_field(tuple((k, s) for _, k, s in arch.conv_layers))
    length, in_channels, total = field + (num_frames - 1) * hop, 1, 0
    for channels, kernel, stride in arch.conv_layers:
        length = (length - kernel) // stride + 1
        total += length * channels * in_channels * kernel
        in_channels = channels
    assert length == num_frames
    return total


def _ffn_units(ratio: float, embed_dim: int) -> int:
    return int(ratio * embed_dim)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"SearchSpace.{message}")


def _field_diffs(ours: object, theirs: object) -> str:
    """``name: ours != theirs`` for each dataclass field that differs."""
    names = [f.name for f in fields(ours)]  # type: ignore[arg-type]
    return ", ".join(f"{n}: {getattr(ours, n)} != {getattr(theirs, n)}" for n in names
                     if getattr(ours, n) != getattr(theirs, n))


def _subnet_check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"SubnetConfig.{message}")


def lighthubert_arch(extractor_mode: str = "group_norm") -> SupernetArch:
    """The one supernet of LightHuBERT Base and Small: HuBERT Base's geometry (D 768, 12 heads
    of 64, FFN 3072 in chunks of 768, 12 layers, LightHuBERT's depth map), as
    mechanicalsea/lighthubert ``config/supernet/Supernet-{Base,Small}.yaml`` (``supernet:``
    768 / 12 heads / ratio 4 / 12 layers in both files). The front end defaults to HuBERT
    Base's (``group_norm``); stage 1 takes the teacher's, whatever it is
    (:meth:`SearchSpace.with_front_end`).
    """
    encoder = ElasticEncoderConfig(embed_dim=768, num_layers=12, num_heads=12, head_dim=64,
                                   ffn_dim=3072, ffn_chunk=768, depth_map=LIGHTHUBERT_DEPTH_MAP,
                                   projection_dropout=0.0)  # LightHuBERTConfig.dropout_input
    return SupernetArch(encoder, extractor_mode=extractor_mode)


def base() -> SearchSpace:
    """LightHuBERT Base: D in 512/640/768, heads 8/10/12 and FFN ratio 3.5/4 per layer, 12
    layers, on the 768-wide supernet; default subnet 640 / 10 heads / 2560 (66.90 M params)."""
    return SearchSpace("base", lighthubert_arch(), embed_dims=(512, 640, 768),
                       heads=(8, 10, 12), ffn_ratios=(3.5, 4.0), depths=(12,),
                       default=SubnetConfig.uniform(640, 10, 2560, 12)).validate()


def small() -> SearchSpace:
    """LightHuBERT Small: D in 256/384/512, heads 4/6/8 and FFN ratio 3/3.5/4 per layer, depth
    10/11/12, inside the same 768-wide supernet as Base (mechanicalsea/lighthubert
    ``config/supernet/Supernet-Small.yaml``: ``supernet: embed_dim 768``), so one stage 1 serves
    both spaces (the maintainers' answer in mechanicalsea/lighthubert issue #4); default subnet
    384 / 6 heads / 1536 / 12 (26.88 M)."""
    return SearchSpace("small", lighthubert_arch(), embed_dims=(256, 384, 512),
                       heads=(4, 6, 8), ffn_ratios=(3.0, 3.5, 4.0), depths=(10, 11, 12),
                       default=SubnetConfig.uniform(384, 6, 1536, 12)).validate()


def large() -> SearchSpace:
    """Not in LightHuBERT (it has no Large space): Base's choices scaled to HuBERT Large's
    geometry (D 1024, 16 heads, FFN 4096, 24 pre-LN layers, a LayerNorm after every conv), so a
    HuBERT Large teacher can start a supernet as an exact copy: D in 768/896/1024, heads
    12/14/16, FFN ratio 3.5/4, 24 layers; default 896 / 14 heads / 3584."""
    encoder = ElasticEncoderConfig(embed_dim=1024, num_layers=24, num_heads=16, head_dim=64,
                                   ffn_dim=4096, ffn_chunk=1024, layer_norm_first=True,
                                   projection_dropout=0.0)
    return SearchSpace("large", SupernetArch(encoder, extractor_mode="layer_norm"),
                       embed_dims=(768, 896, 1024), heads=(12, 14, 16), ffn_ratios=(3.5, 4.0),
                       depths=(24,), default=SubnetConfig.uniform(896, 14, 3584, 24)).validate()


def tiny() -> SearchSpace:
    """A tests/demo space over the tiny HuBERT's sizes: D in 96/128, heads 2/4 of width 32, FFN
    ratio 2/3/4, depth 2-4; 64-channel front end, 16-frame positional conv in 4 groups."""
    encoder = ElasticEncoderConfig(embed_dim=128, num_layers=4, num_heads=4, head_dim=32,
                                   ffn_dim=512, ffn_chunk=128, in_features=64,
                                   pos_conv_kernel=16, pos_conv_groups=4)
    arch = SupernetArch(encoder, conv_layers=hubert_conv_layers(64), extractor_mode="group_norm")
    return SearchSpace("tiny", arch, embed_dims=(96, 128), heads=(2, 4),
                       ffn_ratios=(2.0, 3.0, 4.0), depths=(2, 3, 4),
                       default=SubnetConfig.uniform(96, 2, 288, 3)).validate()


def tiny_fbank() -> SearchSpace:
    """``tiny`` on the fbank front end of a ``tiny_fbank`` HuBERT teacher (the demo's)."""
    t = tiny()
    encoder = replace(t.arch.encoder, in_features=fbank_conv_layers()[0][0])
    arch = SupernetArch(encoder, conv_layers=fbank_conv_layers(), extractor_mode=FBANK_MODE)
    return replace(t, name="tiny_fbank", arch=arch).validate()


PRESETS: dict[str, Callable[[], SearchSpace]] = {"tiny": tiny, "tiny_fbank": tiny_fbank,
                                                 "base": base, "small": small, "large": large}
"""Search-space presets by name, for registering in Hydra's ConfigStore (done in ``cli/``)."""
