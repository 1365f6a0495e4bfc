"""text2vec, WavThruVec's first stage: text tokens to the 50 Hz embeddings of one upstream layer.

A non-autoregressive FastSpeech-style model: token embedding -> FFT encoder (+ speaker vector)
-> duration predictor (log(1 + frames) per token) -> :func:`length_regulator` (each token's
hidden state repeated for its duration) -> FFT decoder -> linear projection to the chosen
upstream layer's width. Training uses durations from
:mod:`speechbert.models.tts.alignment` and :func:`speechbert.losses.text2vec.text2vec_loss`;
inference rounds the predicted durations (at least one frame per token, divided by a speed
factor). One output frame is one 20 ms upstream frame (downsample 320 at 16 kHz).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from speechbert.errors import ConfigError, ManifestError
from speechbert.models.heads.pooling import frame_mask
from speechbert.models.tts.alignment import gaussian_log_likelihood, monotonic_alignment_search
from speechbert.models.tts.fft import FFTBlock, FFTStack
from speechbert.models.tts.speaker import SpeakerConditioning
from speechbert.models.tts.text import TtsVocab

MAX_TOKEN_FRAMES = 500
"""Longest predicted duration of one token at inference, in frames (10 s at 50 Hz)."""


@dataclass
class Text2VecConfig:
    """Sizes of a text2vec model (defaults: FastSpeech 2's 256-wide 4 + 4 FFT blocks)."""

    vocab_size: int = len(TtsVocab.characters())
    """Token ids in the vocabulary, padding (id 0) included."""
    output_dim: int = 768
    """Width of the upstream layer the model predicts (768 for HuBERT base)."""
    model_dim: int = 256
    """Width of the encoder and decoder."""
    num_heads: int = 2
    """Attention heads per FFT block (``model_dim`` must be divisible by it)."""
    ffn_dim: int = 1024
    """Inner width of each FFT block's conv feed-forward network."""
    ffn_kernel: int = 9
    """Kernel of the first FFN convolution (odd)."""
    encoder_layers: int = 4
    """FFT blocks on the token side."""
    decoder_layers: int = 4
    """FFT blocks on the frame side."""
    dropout: float = 0.1
    """Dropout on positions, attention weights and sublayer outputs."""
    duration_dim: int = 256
    """Channels of the duration predictor's two convolutions."""
    duration_kernel: int = 3
    """Kernel of the duration predictor's convolutions (odd)."""
    duration_dropout: float = 0.5
    """Dropout inside the duration predictor."""
    num_speakers: int = 0
    """Rows of the learned speaker table (0: no speaker ids)."""
    speaker_dim: int = 0
    """Width of external speaker vectors, e.g. x-vectors (0: none)."""

    def validate(self) -> Text2VecConfig:
        """Raise :class:`ConfigError` naming the field, rule and value of a bad setting."""
        for f in fields(self):
            value = getattr(self, f.name)
            least = 0 if f.name in ("num_speakers", "speaker_dim") else 1
            if isinstance(value, int) and value < least:
                raise ConfigError(f"Text2VecConfig.{f.name} must be >= {least}; got {value}")
            if isinstance(value, float) and not 0.0 <= value < 1.0:
                raise ConfigError(f"Text2VecConfig.{f.name} must be in [0, 1); got {value}")
        if self.model_dim % self.num_heads or self.model_dim % 2:
            raise ConfigError(f"Text2VecConfig.model_dim must be even and divisible by "
                              f"num_heads ({self.model_dim} % {self.num_heads} = "
                              f"{self.model_dim % self.num_heads})")
        for name in ("ffn_kernel", "duration_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ConfigError(f"Text2VecConfig.{name} must be odd; got {getattr(self, name)}")
        return self


def tiny() -> Text2VecConfig:
    """A small text2vec for tests and the demo (64 wide, 2 + 2 blocks, tiny HuBERT's 128)."""
    return Text2VecConfig(output_dim=128, model_dim=64, num_heads=2, ffn_dim=128, ffn_kernel=3,
                          encoder_layers=2, decoder_layers=2, duration_dim=64, dropout=0.0,
                          duration_dropout=0.1)


def base() -> Text2VecConfig:
    """FastSpeech 2 sizes predicting a 768-wide (HuBERT base) layer."""
    return Text2VecConfig()


PRESETS: dict[str, Callable[[], Text2VecConfig]] = {"tiny": tiny, "base": base}
"""Preset functions by name, for Hydra's ConfigStore (registered in ``cli/``)."""


class DurationPredictor(nn.Module):
    """FastSpeech's duration predictor: 2 x (Conv1d, ReLU, LayerNorm, dropout), then Linear."""

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.convs = nn.ModuleList([nn.Conv1d(dim, hidden_dim, kernel_size, padding=pad),
                                    nn.Conv1d(hidden_dim, hidden_dim, kernel_size, padding=pad)])
        self.norms = nn.ModuleList([nn.LayerNorm(hidden_dim), nn.LayerNorm(hidden_dim)])
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted log(1 + frames) (B, N), zero on padding, from ``x`` (B, N, D)."""
        keep = mask.unsqueeze(-1).to(x.dtype)  # (B, N, 1)
        h = x * keep
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = conv(h.transpose(1, 2)).transpose(1, 2)  # (B, N, H)
            h = self.dropout(norm(F.relu(h))) * keep
        return self.out(h).squeeze(-1) * mask.to(x.dtype)  # (B, N)


def length_regulator(hidden: torch.Tensor, durations: torch.Tensor,
                     max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat token ``n`` of row ``b`` ``durations[b, n]`` times (FastSpeech's length regulator).

    ``hidden`` (B, N, D), ``durations`` (B, N) non-negative ints (0 on padding). Returns
    ``expanded`` (B, T, D), zero past each row's length, with ``T = max_len`` or the longest
    row, and ``lengths`` (B,) = row sums clipped to ``T``. Differentiable in ``hidden``.
    """
    durations = durations.long().clamp(min=0)
    ends = durations.cumsum(dim=1)  # (B, N): first frame after each token
    lengths = ends[:, -1]  # (B,)
    total = int(lengths.max()) if max_len is None else max_len
    frames = torch.arange(total, device=hidden.device).expand(hidden.shape[0], total)  # (B, T)
    token = torch.searchsorted(ends, frames.contiguous(), right=True)  # (B, T)
    token = token.clamp(max=hidden.shape[1] - 1)
    index = token.unsqueeze(-1).expand(-1, -1, hidden.shape[2])  # (B, T, D)
    expanded = hidden.gather(1, index)  # (B, T, D)
    lengths = lengths.clamp(max=total)
    keep = frame_mask(lengths, total).unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return expanded * keep, lengths


def durations_from_log(log_durations: torch.Tensor, mask: torch.Tensor,
                       speed: float = 1.0) -> torch.Tensor:
    """Frames per token (B, N) from predicted log(1 + frames): rounded, >= 1, 0 on padding.

    ``speed`` > 1 speaks faster (durations divided by it). At most :data:`MAX_TOKEN_FRAMES`.
    """
    if speed <= 0:
        raise ConfigError(f"speed must be > 0 (1 = as trained, 2 = twice as fast); got {speed}")
    frames = torch.round(torch.expm1(log_durations) / speed)  # (B, N)
    frames = frames.clamp(min=1, max=MAX_TOKEN_FRAMES)
    return frames.long() * mask.long()


@dataclass
class Text2VecOutput:
    """Predicted embeddings and durations of a batch."""

    features: torch.Tensor
    """Predicted upstream-layer embeddings (B, T, output_dim), zero past ``lengths``."""
    lengths: torch.Tensor
    """Valid frames per row (B,) int64."""
    log_durations: torch.Tensor
    """Predicted log(1 + frames) per token (B, N), zero on padding."""
    durations: torch.Tensor
    """Durations the frames were expanded with (B, N): the given ones or the predicted ones."""


class Text2Vec(nn.Module):
    """Tokens (B, N) to upstream-layer embeddings (B, T, output_dim) through durations."""

    def __init__(self, embedding: nn.Embedding, encoder: FFTStack, speaker: SpeakerConditioning,
                 duration_predictor: DurationPredictor, decoder: FFTStack,
                 output: nn.Linear, aligner: nn.Linear | None = None) -> None:
        super().__init__()
        self.embedding = embedding
        self.encoder = encoder
        self.speaker = speaker
        self.duration_predictor = duration_predictor
        self.decoder = decoder
        self.output = output
        self.aligner = aligner
        """Encoder states -> per-token means of the target embeddings (Glow-TTS's prior),
        scored by monotonic alignment search for training durations; None without MAS."""

    def encode(self, tokens: torch.Tensor, token_lengths: torch.Tensor,
               speaker_ids: torch.Tensor | None = None,
               speaker_vectors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, N, D) with the speaker vector added, and the token mask (B, N)."""
        if int(token_lengths.min()) < 1:
            raise ManifestError(f"every utterance needs at least one token; token_lengths are "
                              f"{token_lengths.tolist()}")
        mask = frame_mask(token_lengths, tokens.shape[1])  # (B, N)
        hidden = self.encoder(self.embedding(tokens), mask)  # (B, N, D)
        speaker = self.speaker(speaker_ids, speaker_vectors)  # (B, D) or None
        if speaker is not None:
            hidden = (hidden + speaker.unsqueeze(1)) * mask.unsqueeze(-1).to(hidden.dtype)
        return hidden, mask

    def decode(self, hidden: torch.Tensor, durations: torch.Tensor,
               max_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Expand ``hidden`` (B, N, D) by ``durations`` (B, N) and decode: (B, T, out), (B,)."""
        expanded, lengths = length_regulator(hidden, durations, max_frames)  # (B, T, D)
        if int(lengths.min()) < 1:
            raise ManifestError(f"every utterance needs at least one frame; durations sum to "
                              f"{lengths.tolist()}")
        mask = frame_mask(lengths, expanded.shape[1])  # (B, T)
        decoded = self.decoder(expanded, mask)  # (B, T, D)
        return self.output(decoded) * mask.unsqueeze(-1).to(decoded.dtype), lengths

    def forward(self, tokens: torch.Tensor, token_lengths: torch.Tensor,
                durations: torch.Tensor | None = None, *,
                speaker_ids: torch.Tensor | None = None,
                speaker_vectors: torch.Tensor | None = None,
                max_frames: int | None = None, speed: float = 1.0) -> Text2VecOutput:
        """Predict embeddings of ``tokens`` (B, N) with valid ``token_lengths`` (B,).

        With ``durations`` (B, N) (training: from alignment) the frames follow them; without,
        the predicted durations are used (rounded, >= 1, divided by ``speed``).
        """
        hidden, mask = self.encode(tokens, token_lengths, speaker_ids, speaker_vectors)
        log_durations = self.duration_predictor(hidden, mask)  # (B, N)
        if durations is None:
            durations = durations_from_log(log_durations.detach(), mask, speed)  # (B, N)
        durations = durations * mask.long()  # (B, N), 0 on padding
        features, lengths = self.decode(hidden, durations, max_frames)
        return Text2VecOutput(features, lengths, log_durations, durations)

    def forward_aligned(self, tokens: torch.Tensor, token_lengths: torch.Tensor,
                        targets: torch.Tensor, target_lengths: torch.Tensor, *,
                        speaker_ids: torch.Tensor | None = None,
                        speaker_vectors: torch.Tensor | None = None) -> AlignedOutput:
        """Training pass with durations from monotonic alignment search (Glow-TTS).

        The aligner's per-token means (B, N, out) score the ``targets`` (B, T, out) frames
        under unit Gaussians; MAS (no gradient) picks each row's best monotonic durations,
        summing to ``target_lengths`` (B,); the decoder then runs teacher-forced on them.
        """
        if self.aligner is None:
            raise ConfigError("this text2vec was built without an aligner; build it with "
                              "build_text2vec (aligner=True) to train with MAS durations")
        hidden, mask = self.encode(tokens, token_lengths, speaker_ids, speaker_vectors)
        means = self.aligner(hidden)  # (B, N, out)
        durations = batch_mas_durations(means.detach(), token_lengths, targets, target_lengths)
        log_durations = self.duration_predictor(hidden, mask)  # (B, N)
        features, lengths = self.decode(hidden, durations, targets.shape[1])
        expanded_means, _ = length_regulator(means, durations, targets.shape[1])  # (B, T, out)
        return AlignedOutput(Text2VecOutput(features, lengths, log_durations, durations),
                             expanded_means)


@dataclass
class AlignedOutput:
    """A MAS-aligned training pass: the teacher-forced output and the aligned token means."""

    output: Text2VecOutput
    """Predictions with the MAS durations."""
    aligned_means: torch.Tensor
    """Aligner means repeated by the durations (B, T, out): the prior the loss pulls to the
    targets so that the alignment improves."""


def batch_mas_durations(means: torch.Tensor, token_lengths: torch.Tensor,
                        targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """MAS durations (B, N) int64 of each row's valid tokens over its valid frames."""
    durations = torch.zeros(means.shape[:2], dtype=torch.long)
    for row, (n, t) in enumerate(zip(token_lengths.tolist(), target_lengths.tolist(),
                                     strict=True)):
        score = gaussian_log_likelihood(means[row, :n], targets[row, :t])  # (n, t)
        durations[row, :n] = monotonic_alignment_search(score)
    return durations.to(means.device)


def build_embedding(config: Text2VecConfig) -> nn.Embedding:
    """Token embedding with padding id 0."""
    return nn.Embedding(config.vocab_size, config.model_dim, padding_idx=TtsVocab.pad_id)


def build_fft_stack(config: Text2VecConfig, num_layers: int) -> FFTStack:
    """``num_layers`` FFT blocks of the configured width (the encoder or the decoder)."""
    blocks = [FFTBlock(config.model_dim, config.num_heads, config.ffn_dim, config.ffn_kernel,
                       config.dropout) for _ in range(num_layers)]
    return FFTStack(blocks, config.dropout)


def build_duration_predictor(config: Text2VecConfig) -> DurationPredictor:
    """The duration predictor on encoder states."""
    return DurationPredictor(config.model_dim, config.duration_dim, config.duration_kernel,
                             config.duration_dropout)


def build_speaker(config: Text2VecConfig) -> SpeakerConditioning:
    """Speaker table and/or projection at the model width (inactive for one speaker)."""
    return SpeakerConditioning(config.model_dim, config.num_speakers, config.speaker_dim)


def build_text2vec(config: Text2VecConfig) -> Text2Vec:
    """A text2vec model from its config (validated), with its MAS aligner; on the CPU in
    float32 until moved."""
    config.validate()
    return Text2Vec(build_embedding(config), build_fft_stack(config, config.encoder_layers),
                    build_speaker(config), build_duration_predictor(config),
                    build_fft_stack(config, config.decoder_layers),
                    nn.Linear(config.model_dim, config.output_dim),
                    nn.Linear(config.model_dim, config.output_dim))
