"""HuBERT iteration-2 k-means features: one hidden state of a trained model per 20 ms frame."""

from __future__ import annotations

from pathlib import Path

import torch

from speechbert.data.frames import HUBERT_CONV_LAYERS, conv_frame_count, receptive_field
from speechbert.errors import ConfigError
from speechbert.models.hubert.convert import load_teacher
from speechbert.models.hubert.upstream import HubertUpstream


class HubertLayerFrames:
    """A :class:`~speechbert.data.features.FrameFeatures` source reading hidden state ``layer``.

    Layer 0 is the Transformer's input, layer ``i`` the output of Transformer layer ``i``
    (as :class:`HubertUpstream`). Runs under ``torch.inference_mode`` on ``device`` (CPU by
    default), one utterance at a time, and stops after the requested layer.
    """

    def __init__(self, upstream: HubertUpstream, layer: int, name: str,
                 device: torch.device | str = "cpu") -> None:
        if not 0 <= layer < upstream.num_layers:
            raise ConfigError(f"layer (--layer) must be in [0, {upstream.num_layers - 1}] for "
                              f"{name} ({upstream.num_layers - 1} Transformer layers); got {layer}")
        if receptive_field(upstream.conv_layers) != receptive_field(HUBERT_CONV_LAYERS):
            raise ConfigError(f"{name}: front-end (kernel, stride) layers {upstream.conv_layers} "
                              f"do not frame audio as HuBERT's {HUBERT_CONV_LAYERS} (400-sample "
                              f"field, 320-sample hop), so its frames do not line up with the "
                              f"20 ms k-means labels")
        self.upstream = upstream.to(device).eval()
        self.layer = layer
        self.name = name
        self.device = torch.device(device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, layer: int,
                        device: torch.device | str = "cpu") -> HubertLayerFrames:
        """Load any teacher :func:`load_teacher` reads and use its hidden state ``layer``."""
        return cls(load_teacher(path), layer, str(Path(path).resolve()), device)

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return self.upstream.hidden_size

    @property
    def description(self) -> str:
        """Names the checkpoint and layer, e.g. ``"hubert layer 6 of /runs/it1/last.ckpt"``."""
        return f"hubert layer {self.layer} of {self.name}"

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """Hidden state ``layer`` of ``wav`` (T,): (conv_frame_count(T), D) float32 on the CPU."""
        assert wav.dim() == 1, f"expected a mono waveform (T,), got shape {tuple(wav.shape)}"
        num_frames = conv_frame_count(wav.numel())
        if num_frames == 0:
            return wav.new_zeros(0, self.dim)
        with torch.inference_mode():
            wavs = wav.to(self.device, torch.float32).unsqueeze(0)  # (1, T)
            lengths = torch.tensor([wav.numel()], device=self.device)  # (1,)
            out = self.upstream(wavs, lengths, max_layer=self.layer)
            feats = out.hidden_states[self.layer][0]  # (N, D)
        assert feats.shape[0] == num_frames, (feats.shape, num_frames)
        return feats.float().cpu().clone()  # a normal tensor, usable outside inference mode
