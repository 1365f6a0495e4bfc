"""HuBERT as an :class:`~speechbert.models.upstream.Upstream`: every layer's hidden states.

The hidden states follow s3prl's and transformers' ``output_hidden_states`` for HuBERT:
``[input to layer 1, output of layer 1, ..., output of layer N]``, N + 1 tensors. The input to
layer 1 is the projected conv features after the convolutional positional embedding (and, for
post-LN models such as Base, the encoder's layer norm); for pre-LN models such as Large the last
state includes the encoder's final layer norm, as the model's own output does.

Padding: the conv front end of ``group_norm`` models (Base) normalises each channel over the
whole padded row, so a padded row's features differ slightly from the same audio alone, exactly
as in fairseq and transformers. Frames past ``lengths`` are padding; read only the valid ones.
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.models import Wav2Vec2Model
from torchaudio.models.wav2vec2.components import ConvLayerBlock

from speechbert.data.frames import receptive_field
from speechbert.models.upstream import UpstreamOutput


def front_end_frames(extractor: nn.Module) -> tuple[tuple[int, int], ...]:
    """(kernel, stride) per layer of the conv stack whose framing ``extractor`` has: its own
    conv layers, or ``frame_layers`` for a front end without them (the fbank one)."""
    layers = getattr(extractor, "frame_layers", None)
    if layers is not None:
        return tuple(layers)
    blocks = [b for b in extractor.modules() if isinstance(b, ConvLayerBlock)]
    return tuple((b.kernel_size, b.stride) for b in blocks)


class HubertUpstream(nn.Module):
    """Hidden states of a torchaudio :class:`Wav2Vec2Model` (HuBERT encoder), no masking.

    The module is put in eval mode (no dropout, no LayerDrop); call ``.train()`` only to fine-tune.
    """

    def __init__(self, model: Wav2Vec2Model) -> None:
        super().__init__()
        self.model = model
        self.conv_layers = front_end_frames(model.feature_extractor)
        """(kernel, stride) of each conv layer, for ``conv_frame_count``."""
        self.downsample_rate = receptive_field(self.conv_layers)[1]
        """Input samples per output frame (320 for HuBERT)."""
        self.num_layers = len(model.encoder.transformer.layers) + 1
        """Hidden states returned: the Transformer's input and each of its layers' outputs."""
        self.hidden_size = model.encoder.transformer.layer_norm.normalized_shape[0]
        """Transformer width D."""
        self.eval()

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor,
                max_layer: int | None = None) -> UpstreamOutput:
        """Encode ``wavs`` (B, T) float32 16 kHz with valid sample counts ``lengths`` (B,).

        ``max_layer`` stops after that many Transformer layers (hidden states 0..max_layer),
        saving the rest of the compute; None runs them all.
        """
        encoder = self.model.encoder
        transformer = encoder.transformer
        last = self.num_layers - 1 if max_layer is None else max_layer
        assert 0 <= last < self.num_layers, f"max_layer {max_layer} not in [0, {self.num_layers})"
        feats, frames = self.model.feature_extractor(wavs, lengths)  # (B, T', C), (B,)
        assert frames is not None
        x, attention_mask = encoder._preprocess(feats, frames)  # (B, T', D), (B, 1, T', T')
        x = transformer._preprocess(x)  # (B, T', D): + positional conv (+ layer norm if post-LN)
        states = [x]
        for layer in transformer.layers[:last]:
            x, _ = layer(x, attention_mask)  # (B, T', D)
            states.append(x)
        if last == len(transformer.layers) and not transformer.layer_norm_first:
            states[-1] = transformer.layer_norm(states[-1])  # pre-LN models end with a norm
        return UpstreamOutput(hidden_states=states, lengths=frames)
