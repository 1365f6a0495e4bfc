"""A filterbank front end for HuBERT (MelHuBERT, arXiv 2211.09944): no conv stack to train.

HuBERT's seven-layer waveform CNN is most of a small model's compute (about 70 % of the tiny
preset's MACs) and the slowest part to learn: on the bundled corpus a 300-step tiny HuBERT still
predicts only ~5 % of its masked MFCC clusters. MelHuBERT replaces the CNN with log-mel
filterbanks and keeps everything else (projection, Transformer, masked prediction of k-means
units). Here each model frame is two stacked 10 ms frames of per-utterance normalised 80-bin
kaldi fbank (the w2v-BERT recipe, :mod:`speechbert.nn.fbank`): 160 values per
20 ms frame, which the encoder's feature projection (LayerNorm, Linear) takes to ``embed_dim``.

In configs it is ``extractor_mode="fbank"`` with one pseudo conv layer ``(2 x num_mel_bins, 400,
320)`` (:func:`fbank_conv_layers`): the frame width, a 400-sample field and a 320-sample hop. A
single (400, 320) layer gives exactly the frame count of HuBERT's seven-layer stack for every
input length, so k-means labels, ``conv_frame_count`` and every consumer of ``downsample_rate``
are unchanged: row ``b`` has ``conv_frame_count(lengths[b])`` frames, frame ``t`` starting at
sample ``320 t``; a last frame whose second fbank frame would run past the audio repeats its
first. The front end has no parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from speechbert.data.frames import conv_frame_count
from speechbert.errors import ConfigError
from speechbert.nn.fbank import batched_fbank

FBANK_MODE = "fbank"
"""``extractor_mode`` of the filterbank front end."""
FBANK_STACK = 2
"""10 ms fbank frames per 20 ms model frame."""
FBANK_FRAMING = (400, 320)
"""(field, hop) in samples of a model frame: the framing of HuBERT's conv stack."""


def fbank_conv_layers(num_mel_bins: int = 80) -> tuple[tuple[int, int, int], ...]:
    """The pseudo conv layer that describes the fbank front end in configs:
    ``((FBANK_STACK x num_mel_bins, 400, 320),)``."""
    return ((FBANK_STACK * num_mel_bins, *FBANK_FRAMING),)


def fbank_layers_problem(conv_layers: tuple[tuple[int, int, int], ...]) -> str | None:
    """Why ``conv_layers`` cannot describe the fbank front end, or None if it can."""
    if len(conv_layers) != 1 or tuple(conv_layers[0][1:]) != FBANK_FRAMING or \
            conv_layers[0][0] < FBANK_STACK or conv_layers[0][0] % FBANK_STACK:
        return (f"conv_layers must be one (width, 400, 320) layer with width = {FBANK_STACK} x "
                f"num_mel_bins when extractor_mode={FBANK_MODE!r}, e.g. {fbank_conv_layers()}; "
                f"got {conv_layers}")
    return None


def build_fbank_front_end(conv_layers: tuple[tuple[int, int, int], ...]) -> FbankFeatureExtractor:
    """The fbank front end that ``conv_layers`` (:func:`fbank_conv_layers`) describes."""
    problem = fbank_layers_problem(conv_layers)
    if problem:
        raise ConfigError(problem)
    return FbankFeatureExtractor(conv_layers[0][0] // FBANK_STACK)


class FbankFeatureExtractor(nn.Module):
    """Waveforms (B, T) -> stacked fbank (B, T', stack x num_mel_bins) and frames (B,).

    Same call and return as torchaudio's ``FeatureExtractor``; ``frame_layers`` gives the
    (kernel, stride) stack whose frame count it reproduces (HuBERT's).
    """

    frame_layers = (FBANK_FRAMING,)
    """(kernel, stride) of the one conv layer with this framing (and HuBERT's frame count)."""

    def __init__(self, num_mel_bins: int = 80) -> None:
        super().__init__()
        self.num_mel_bins = num_mel_bins

    @property
    def output_dim(self) -> int:
        """Width of a frame: ``FBANK_STACK x num_mel_bins``."""
        return FBANK_STACK * self.num_mel_bins

    def forward(self, x: torch.Tensor,
                length: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, T) float 16 kHz, valid ``length`` (B,) or None (all T)."""
        if length is None:
            length = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64, device=x.device)
        frames = torch.tensor([conv_frame_count(int(n)) for n in length.tolist()],
                              dtype=torch.int64, device=x.device)  # (B,)
        width = int(frames.max()) if len(frames) else 0
        if width == 0:
            return x.new_zeros(x.shape[0], 0, self.output_dim), frames
        fbank, fbank_frames = batched_fbank(x.detach(), length, self.num_mel_bins)  # (B, N, F)
        # fbank frame 2 t + k (k < stack) of row b, clamped to the row's last fbank frame
        index = FBANK_STACK * torch.arange(width, device=x.device)[:, None] \
            + torch.arange(FBANK_STACK, device=x.device)  # (T', stack)
        last = (fbank_frames - 1).clamp(min=0)[:, None, None]  # (B, 1, 1)
        index = torch.minimum(index[None], last)  # (B, T', stack)
        rows = torch.arange(x.shape[0], device=x.device)[:, None, None]
        stacked = fbank[rows, index]  # (B, T', stack, F)
        valid = torch.arange(width, device=x.device)[None] < frames[:, None]  # (B, T')
        stacked = stacked.flatten(2) * valid[..., None]  # (B, T', stack x F)
        return stacked, frames
