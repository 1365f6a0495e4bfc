"""vec2wav, WavThruVec's second stage: a HiFi-GAN generator from 50 Hz embeddings to 16 kHz.

HiFi-GAN V1's generator (arXiv 2010.05646) with the mel input replaced by the embeddings of
one upstream layer (B, T, D): an input convolution, the speaker vector added (if any), then
per upsampling rate ``r`` a LeakyReLU, a transposed convolution (kernel ``2 r``, stride ``r``)
and a multi-receptive-field fusion (the mean of residual blocks with different kernels and
dilations), then LeakyReLU, an output convolution and tanh. The rates multiply to the
upstream's 320-sample hop, and each transposed convolution's padding and output padding are
chosen so that it multiplies the length exactly: the waveform has **exactly 320 x T samples**
and sample ``320 t`` starts frame ``t``.

**iSTFT head** (``istft_n_fft > 0``; iSTFTNet, arXiv 2203.02395, and Vocos, arXiv 2306.00891):
the output convolution predicts, per frame of the last stage, a log-magnitude and a phase for
each of ``istft_n_fft / 2 + 1`` bins, and ``torch.istft`` (Hann window, hop
``frame_samples / prod(upsample_rates)``, ``length`` fixed) makes the waveform, again exactly
``320 x T`` samples. With no upsampling stages (``upsample_rates=()``) one MRF runs at the
frame rate. The spectral envelope is then a direct regression target instead of something the
transposed convolutions must discover, and the network runs at 50 Hz instead of 16 kHz: on
this CPU it reaches a given mel loss several times sooner than the transposed-convolution
generator (the ``tiny`` preset uses it). Trainable on untranscribed audio (the embeddings come
from the audio itself); the discriminators live in
:mod:`speechbert.models.tts.discriminators`, the losses in :mod:`speechbert.losses.gan`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from speechbert.errors import ConfigError
from speechbert.models.tts.speaker import SpeakerConditioning

LRELU_SLOPE = 0.1
"""Negative slope of the LeakyReLUs inside the generator and discriminators (HiFi-GAN)."""


@dataclass
class Vec2WavConfig:
    """Generator and discriminator sizes (defaults: HiFi-GAN V1 with a 320-sample hop)."""

    input_dim: int = 768
    """Width of the upstream-layer embeddings the generator reads."""
    frame_samples: int = 320
    """Output samples per input frame (the upstream's downsample rate)."""
    upsample_rates: tuple[int, ...] = (5, 4, 4, 2, 2)
    """Upsampling factor of each stage (each >= 2); they multiply to ``frame_samples``."""
    initial_channels: int = 512
    """Channels after the input convolution; each stage halves them."""
    resblock_kernels: tuple[int, ...] = (3, 7, 11)
    """Kernel of each residual block of a multi-receptive-field fusion (odd)."""
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    """Dilations of the layers of each residual block, one tuple per kernel."""
    input_kernel: int = 7
    """Kernel of the input and output convolutions (odd)."""
    num_speakers: int = 0
    """Rows of the learned speaker table (0: no speaker ids)."""
    speaker_dim: int = 0
    """Width of external speaker vectors, e.g. x-vectors (0: none)."""
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    """Periods of the multi-period discriminator's sub-discriminators."""
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    """Channels of each period discriminator's 5 convolutions."""
    num_scales: int = 3
    """Sub-discriminators of the multi-scale discriminator (x1, x1/2, x1/4 ...)."""
    msd_channels: tuple[int, ...] = (128, 128, 256, 512, 1024, 1024, 1024)
    """Channels of each scale discriminator's 7 convolutions."""
    msd_groups: tuple[int, ...] = (1, 4, 16, 16, 16, 16, 1)
    """Groups of each scale discriminator's 7 convolutions (divide in and out channels)."""
    istft_n_fft: int = 0
    """0: waveform output (HiFi-GAN); > 0: iSTFT head with this FFT size (even)."""
    max_log_magnitude: float = 6.0
    """iSTFT head: predicted log-magnitudes are clamped to at most this (exp overflow)."""

    @property
    def istft_hop(self) -> int:
        """Samples per frame of the iSTFT head: frame_samples / prod(upsample_rates)."""
        return self.frame_samples // math.prod(self.upsample_rates)

    def validate(self) -> Vec2WavConfig:
        """Raise :class:`ConfigError` naming the field, rule and value of a bad setting."""
        problems = [*_generator_problems(self), *_discriminator_problems(self)]
        if problems:
            raise ConfigError("Vec2WavConfig: " + "; ".join(problems))
        return self


def _generator_problems(c: Vec2WavConfig) -> list[str]:
    problems = []
    if c.istft_n_fft:
        if c.frame_samples % math.prod(c.upsample_rates) or c.istft_n_fft % 2 or \
                c.istft_n_fft < c.istft_hop or min(c.upsample_rates, default=2) < 2:
            problems.append(f"with istft_n_fft, upsample_rates must be >= 2 each and divide "
                            f"frame_samples ({c.frame_samples}) and istft_n_fft must be even and "
                            f">= the hop; got {c.upsample_rates} and {c.istft_n_fft}")
    elif math.prod(c.upsample_rates) != c.frame_samples or min(c.upsample_rates, default=0) < 2:
        problems.append(f"upsample_rates must be >= 2 each and multiply to frame_samples "
                        f"({c.frame_samples}); got {c.upsample_rates} (product "
                        f"{math.prod(c.upsample_rates)})")
    if c.initial_channels % 2 ** len(c.upsample_rates):
        problems.append(f"initial_channels must be divisible by 2^{len(c.upsample_rates)} (one "
                        f"halving per stage); got {c.initial_channels}")
    if len(c.resblock_kernels) != len(c.resblock_dilations) or not c.resblock_kernels:
        problems.append(f"resblock_kernels and resblock_dilations need one entry each per "
                        f"block; got {c.resblock_kernels} and {c.resblock_dilations}")
    if any(k % 2 == 0 for k in (*c.resblock_kernels, c.input_kernel)):
        problems.append(f"resblock_kernels and input_kernel must be odd; got "
                        f"{c.resblock_kernels} and {c.input_kernel}")
    if min(c.input_dim, c.frame_samples) < 1 or min(c.num_speakers, c.speaker_dim) < 0:
        problems.append(f"input_dim and frame_samples must be >= 1, num_speakers and "
                        f"speaker_dim >= 0; got {c.input_dim}, {c.frame_samples}, "
                        f"{c.num_speakers}, {c.speaker_dim}")
    return problems


def _discriminator_problems(c: Vec2WavConfig) -> list[str]:
    problems = []
    if len(c.mpd_channels) != 5 or not c.periods or min(c.periods) < 2:
        problems.append(f"mpd_channels needs 5 entries and periods must be >= 2; got "
                        f"{c.mpd_channels} and {c.periods}")
    if len(c.msd_channels) != 7 or len(c.msd_groups) != 7 or c.num_scales < 1:
        problems.append(f"msd_channels and msd_groups need 7 entries and num_scales >= 1; got "
                        f"{c.msd_channels}, {c.msd_groups}, {c.num_scales}")
        return problems
    ins = (1, *c.msd_channels[:-1])
    for i, (cin, cout, g) in enumerate(zip(ins, c.msd_channels, c.msd_groups, strict=True)):
        if cin % g or cout % g:
            problems.append(f"msd_groups[{i}] = {g} must divide the layer's in and out channels "
                            f"({cin} and {cout})")
    return problems


def tiny() -> Vec2WavConfig:
    """A small vocoder for tests and the demo: iSTFT head (1280-point FFT, hop 320) after one
    128-channel MRF at the frame rate (two residual blocks, dilations 1-3-5), discriminators 32
    channels wide at most. Learns audible speech on the bundled corpus within minutes on a CPU."""
    return Vec2WavConfig(
        input_dim=128, upsample_rates=(), initial_channels=128, resblock_kernels=(3, 7),
        resblock_dilations=((1, 3, 5), (1, 3, 5)), istft_n_fft=1280,
        mpd_channels=(8, 16, 32, 32, 32), msd_channels=(8, 8, 16, 32, 32, 32, 32),
        msd_groups=(1, 2, 2, 4, 4, 4, 1))


def tiny_upsampling() -> Vec2WavConfig:
    """HiFi-GAN's transposed-convolution generator at tiny size: 64 -> 8 channels over rates
    8-5-8, two residual blocks per stage (G 152 k parameters); slower to learn than ``tiny``."""
    return replace(tiny(), upsample_rates=(8, 5, 8), initial_channels=64,
                   resblock_dilations=((1, 3), (1, 3)), istft_n_fft=0)


def base() -> Vec2WavConfig:
    """HiFi-GAN V1 sizes with a 5-4-4-2-2 upsampling for a 768-wide (HuBERT base) layer."""
    return Vec2WavConfig()


PRESETS: dict[str, Callable[[], Vec2WavConfig]] = {"tiny": tiny,
                                                   "tiny_upsampling": tiny_upsampling,
                                                   "base": base}
"""Preset functions by name, for Hydra's ConfigStore (registered in ``cli/``)."""


def _init_conv(module: nn.Module) -> None:
    """HiFi-GAN's initialisation: conv weights ~ N(0, 0.01)."""
    if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
        nn.init.normal_(module.weight, 0.0, 0.01)


def _same_conv(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Conv1d:
    """A weight-normed Conv1d that keeps the length (odd ``kernel``)."""
    conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
    _init_conv(conv)
    return weight_norm(conv)


class ResBlock(nn.Module):
    """HiFi-GAN's ResBlock1: per dilation, x += conv(lrelu(conv_dilated(lrelu(x))))."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(_same_conv(channels, channels, kernel, d) for d in dilations)
        self.plain = nn.ModuleList(_same_conv(channels, channels, kernel) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S) -> (B, C, S)."""
        for dilated, plain in zip(self.dilated, self.plain, strict=True):
            h = dilated(F.leaky_relu(x, LRELU_SLOPE))
            x = x + plain(F.leaky_relu(h, LRELU_SLOPE))
        return x


class MultiReceptiveField(nn.Module):
    """HiFi-GAN's MRF: the mean of residual blocks with different kernels and dilations."""

    def __init__(self, blocks: list[ResBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S) -> (B, C, S)."""
        return torch.stack([block(x) for block in self.blocks]).mean(dim=0)


def exact_upsampler(cin: int, cout: int, rate: int) -> nn.ConvTranspose1d:
    """Transposed conv (kernel ``2 rate``, stride ``rate``) whose output is exactly ``rate``
    times its input: padding ``ceil(rate / 2)``, output padding ``2 * padding - rate``.

    Length: ``(L - 1) r - 2 p + (2 r - 1) + op + 1 = L r + r - 2 p + op = L r``.
    """
    padding = (rate + 1) // 2
    conv = nn.ConvTranspose1d(cin, cout, 2 * rate, stride=rate, padding=padding,
                              output_padding=2 * padding - rate)
    _init_conv(conv)
    return weight_norm(conv)


class Vec2WavGenerator(nn.Module):
    """Embeddings (B, T, D) to waveforms (B, frame_samples x T) in [-1, 1]."""

    def __init__(self, input_conv: nn.Module, speaker: SpeakerConditioning,
                 upsamplers: list[nn.Module], fusions: list[MultiReceptiveField],
                 output_conv: nn.Module, head: nn.Module) -> None:
        super().__init__()
        assert len(upsamplers) == len(fusions), "one MRF per upsampling stage"
        self.input_conv = input_conv
        self.speaker = speaker
        self.upsamplers = nn.ModuleList(upsamplers)
        self.fusions = nn.ModuleList(fusions)
        self.output_conv = output_conv
        self.head = head

    def forward(self, features: torch.Tensor, *, speaker_ids: torch.Tensor | None = None,
                speaker_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Waveforms (B, S) with ``S = frame_samples * T`` from ``features`` (B, T, D)."""
        x = self.input_conv(features.transpose(1, 2))  # (B, C0, T)
        speaker = self.speaker(speaker_ids, speaker_vectors)  # (B, C0) or None
        if speaker is not None:
            x = x + speaker.unsqueeze(-1)
        for upsample, fusion in zip(self.upsamplers, self.fusions, strict=True):
            x = fusion(upsample(F.leaky_relu(x, LRELU_SLOPE)))  # (B, C_i, T r_1 ... r_i)
        x = self.output_conv(F.leaky_relu(x))  # (B, C_out, T'), default slope as HiFi-GAN
        return self.head(x, features.shape[1])  # (B, S)

    def remove_weight_norm(self) -> Vec2WavGenerator:
        """Fold the weight-norm parametrisations into plain weights (for inference/export)."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight")
        return self


class WaveformHead(nn.Module):
    """HiFi-GAN's output: tanh of the single output channel."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, 1, S) -> (B, S) in [-1, 1]."""
        return torch.tanh(x).squeeze(1)


class IstftHead(nn.Module):
    """Log-magnitudes and phases (B, 2 (n_fft / 2 + 1), T') to a waveform by ``torch.istft``."""

    def __init__(self, n_fft: int, hop: int, frame_samples: int, max_log: float) -> None:
        super().__init__()
        self.n_fft, self.hop, self.frame_samples, self.max_log = n_fft, hop, frame_samples, max_log
        self.window: torch.Tensor
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, 2 F, T') -> (B, frame_samples x num_frames)."""
        log_magnitude, phase = x.float().chunk(2, dim=1)  # (B, F, T') each
        spectrum = torch.polar(torch.exp(log_magnitude.clamp(max=self.max_log)), phase)
        return torch.istft(spectrum, self.n_fft, self.hop, self.n_fft, window=self.window,
                           center=True, length=self.frame_samples * num_frames)  # (B, S)


def build_head(config: Vec2WavConfig) -> tuple[nn.Module, int]:
    """The output head and the channels the output convolution must give it."""
    if not config.istft_n_fft:
        return WaveformHead(), 1
    head = IstftHead(config.istft_n_fft, config.istft_hop, config.frame_samples,
                     config.max_log_magnitude)
    return head, 2 * (config.istft_n_fft // 2 + 1)


def build_input_conv(config: Vec2WavConfig) -> nn.Module:
    """Input convolution from the embedding width to ``initial_channels``."""
    return _same_conv(config.input_dim, config.initial_channels, config.input_kernel)


def build_upsamplers(config: Vec2WavConfig) -> list[nn.Module]:
    """One exact transposed convolution per rate, halving the channels each time."""
    c0 = config.initial_channels
    return [exact_upsampler(c0 // 2**i, c0 // 2 ** (i + 1), r)
            for i, r in enumerate(config.upsample_rates)]


def build_fusion(config: Vec2WavConfig, channels: int) -> MultiReceptiveField:
    """One multi-receptive-field fusion at ``channels``."""
    return MultiReceptiveField([ResBlock(channels, k, d) for k, d in
                                zip(config.resblock_kernels, config.resblock_dilations,
                                    strict=True)])


def build_generator(config: Vec2WavConfig) -> Vec2WavGenerator:
    """The vec2wav generator from its config (validated)."""
    config.validate()
    c0 = config.initial_channels
    stages = len(config.upsample_rates)
    # (construction order fixes the random init: fusions, output, speaker, input, upsamplers)
    fusions = [build_fusion(config, c0 // 2 ** (i + 1)) for i in range(stages)]
    if not stages:  # iSTFT head at the frame rate: one MRF, no upsampling
        fusions = [build_fusion(config, c0)]
    head, out_channels = build_head(config)
    output_conv = _same_conv(c0 // 2**stages, out_channels, config.input_kernel)
    speaker = SpeakerConditioning(c0, config.num_speakers, config.speaker_dim)
    input_conv = build_input_conv(config)
    upsamplers: list[nn.Module] = build_upsamplers(config) if stages else [nn.Identity()]
    return Vec2WavGenerator(input_conv, speaker, upsamplers, fusions, output_conv, head)


def aligned_segment(features: torch.Tensor, wav: torch.Tensor, start: int, num_frames: int,
                    frame_samples: int = 320) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``[start, start + num_frames)`` of ``features`` (T, D) and their samples
    ``[frame_samples * start, frame_samples * (start + num_frames))`` of ``wav`` (S,),
    zero-padded at the end if the audio is shorter: (num_frames, D), (num_frames * hop,)."""
    assert start >= 0 and start + num_frames <= features.shape[0], "segment outside features"
    first, count = frame_samples * start, frame_samples * num_frames
    samples = wav[first:first + count]  # (<= count,)
    return features[start:start + num_frames], F.pad(samples, (0, count - samples.numel()))
