"""w2v-BERT as an :class:`~speechbert.models.upstream.Upstream`, and loading our checkpoints.

The upstream runs fairseq2's w2v-BERT encoder without masking: fbank front end, then every
conformer block. Hidden state 0 is the encoder input (stacked fbank after layer norm and the
projection to ``model_dim``); hidden state ``i`` is block ``i``'s output (read with the
encoder's layer hook), so the last one is the encoder output.
"""

from __future__ import annotations

from pathlib import Path

import torch
from fairseq2.models.w2vbert import W2VBertModel
from fairseq2.nn import BatchLayout
from torch import nn

from speechbert.errors import CheckpointError, ConfigError
from speechbert.models.upstream import UpstreamOutput
from speechbert.models.w2vbert.build import build_w2vbert, fbank_extractor
from speechbert.models.w2vbert.config import (
    KALDI_SHIFT_SAMPLES,
    config_from_dict,
    samples_for_frames,
)
from speechbert.nn.fbank import batched_fbank

CHECKPOINT_PREFIX = "model."
"""Prefix of the W2VBertModel's keys in our Lightning checkpoints' ``state_dict``."""


class W2VBertUpstream(nn.Module):
    """Hidden states of every conformer block of a fairseq2 ``W2VBertModel``.

    The model is put in eval mode here (dropout off, BatchNorm running statistics); calling
    ``.train()`` on a parent module turns them back on; masking never happens. Utterances
    need at least 560 samples (two kaldi frames = one 20 ms model frame).
    """

    def __init__(self, model: W2VBertModel) -> None:
        super().__init__()
        self.model = model.eval()
        extractor = fbank_extractor(model)
        self.num_mel_bins = extractor.num_fbank_channels
        self.downsample_rate = KALDI_SHIFT_SAMPLES * extractor.stride
        self.num_layers = len(model.w2v2_model.encoder.layers) + 1
        self.hidden_size = model.model_dim

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        """Encode ``wavs`` (B, T) float 16 kHz with valid ``lengths`` (B,) samples."""
        if wavs.shape[0] == 0:  # every item of the batch was skipped
            empty = wavs.new_zeros(0, 0, self.hidden_size)  # (0, 0, D)
            return UpstreamOutput([empty] * self.num_layers, lengths.new_zeros(0))
        fbank, frames = batched_fbank(wavs, lengths, self.num_mel_bins)  # (B, N, F), (B,)
        self._check_frames(frames, lengths)
        w2v2 = self.model.w2v2_model
        seqs, layout = w2v2.encoder_frontend(fbank, BatchLayout.of(fbank, frames.tolist()))
        hidden_states = [seqs]  # (B, S, D) each

        def keep(layer_idx: int, layer_output: torch.Tensor,
                 layer_output_layout: BatchLayout, num_layers: int) -> bool:
            hidden_states.append(layer_output)  # (B, S, D)
            return True

        with w2v2.encoder.register_layer_hook(keep):
            w2v2.encoder(seqs, layout)
        frame_lengths = layout.seq_lens_pt.to(device=seqs.device, dtype=torch.int64)  # (B,)
        return UpstreamOutput(hidden_states=hidden_states, lengths=frame_lengths)

    def _check_frames(self, frames: torch.Tensor, lengths: torch.Tensor) -> None:
        stride = self.downsample_rate // KALDI_SHIFT_SAMPLES
        if len(frames) and int(frames.min()) < stride:
            row = int(frames.argmin())
            raise ConfigError(
                f"w2v-BERT needs at least {samples_for_frames(1, stride)} samples per "
                f"utterance (one {self.downsample_rate}-sample frame), but row {row} has "
                f"{int(lengths[row])}: drop or pad such utterances")


def load_w2vbert_checkpoint(path: str | Path) -> W2VBertUpstream:
    """The :class:`W2VBertUpstream` of one of our Lightning ``.ckpt`` files, on the CPU.

    Contract with the Lightning module: ``ckpt["hyper_parameters"]["model_config"]`` is
    ``dataclasses.asdict`` of our :class:`~speechbert.models.w2vbert.config.W2VBertConfig`
    and ``ckpt["state_dict"]`` holds the ``W2VBertModel`` under the ``model.`` prefix (other
    keys are ignored). Loaded with ``weights_only=True``, so the checkpoint must hold only
    tensors and plain Python values. Raises :class:`CheckpointError` naming the missing piece.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such w2v-BERT checkpoint file; check the path")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    try:
        config = ckpt["hyper_parameters"]["model_config"]
        state_dict = ckpt["state_dict"]
    except (KeyError, TypeError) as err:
        raise CheckpointError(
            f"{path}: missing {err} -- expected a Lightning checkpoint with "
            f"hyper_parameters.model_config (asdict of W2VBertConfig) and state_dict") from None
    model = build_w2vbert(config_from_dict(dict(config)))
    try:
        model.load_state_dict(_strip_prefix(state_dict, path))
    except RuntimeError as err:
        raise CheckpointError(f"{path}: state_dict does not fit model_config: {err}") from None
    return W2VBertUpstream(model)


def _strip_prefix(state_dict: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    stripped = {key[len(CHECKPOINT_PREFIX):]: value for key, value in state_dict.items()
                if key.startswith(CHECKPOINT_PREFIX)}
    if not stripped:
        raise CheckpointError(f"{path}: state_dict has no key starting with "
                          f"{CHECKPOINT_PREFIX!r}; is this a w2v-BERT pretraining checkpoint?")
    return stripped
