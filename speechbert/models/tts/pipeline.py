"""Inference: text -> embeddings -> waveform, copy-synthesis and voice conversion.

:class:`Vocoder` and :class:`TextToEmbeddings` are rebuilt from the two stages' Lightning
checkpoints with plain ``torch.load`` (no Lightning): the model config is
``hyper_parameters["model_config"]``, the weights are the ``model.`` state-dict entries, and
the data facts (upstream checkpoint, layer, speaker layer, feature statistics, per-speaker mean
vectors and their ids) are buffers and hyper-parameters the training modules stored.

* TTS: ``text2vec(text, speaker vector) -> normalised embeddings -> vec2wav``.
* Copy-synthesis: the upstream's own embeddings of a recording -> vec2wav (the vocoder's
  ceiling for TTS).
* Voice conversion: the source recording's embeddings with the target recording's speaker
  vector -> vec2wav.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speechbert.audio import load_audio
from speechbert.errors import CheckpointError, ConfigError
from speechbert.models.load import load_checkpoint_encoder
from speechbert.models.tts.embeddings import FeatureStats, speaker_vector
from speechbert.models.tts.mel import MelUpstream
from speechbert.models.tts.text import character_encoder
from speechbert.models.tts.text2vec import Text2Vec, Text2VecConfig, build_text2vec
from speechbert.models.tts.vec2wav import Vec2WavConfig, Vec2WavGenerator, build_generator
from speechbert.models.upstream import Upstream


@dataclass
class StageCheckpoint:
    """What a TTS stage's checkpoint holds, read without Lightning."""

    path: Path
    """The ``.ckpt`` file."""
    hparams: dict[str, Any]
    """``hyper_parameters``: model_config, upstream_checkpoint, layer, speaker_layer, ..."""
    model_state: dict[str, torch.Tensor]
    """The ``model.`` entries with the prefix removed."""
    buffers: dict[str, torch.Tensor]
    """Top-level buffers: feature_mean/std, speaker_mean/std, speaker_table."""

    @property
    def stats(self) -> FeatureStats:
        """Normalisation of the embeddings."""
        return FeatureStats(self.buffers["feature_mean"], self.buffers["feature_std"])

    @property
    def speaker_stats(self) -> FeatureStats:
        """Normalisation of the speaker layer."""
        return FeatureStats(self.buffers["speaker_mean"], self.buffers["speaker_std"])


def read_stage_checkpoint(path: str | Path) -> StageCheckpoint:
    """Read a ``speechbert-tts-train`` checkpoint; :class:`CheckpointError` if it is not one."""
    src = Path(path)
    if not src.is_file():
        raise CheckpointError(f"{src}: TTS checkpoint not found; train it with "
                              f"speechbert-tts-train (runs/<stage>/<name>/checkpoints/last.ckpt)")
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    hparams, state = ckpt.get("hyper_parameters") or {}, ckpt.get("state_dict") or {}
    if "model_config" not in hparams or "feature_mean" not in state:
        raise CheckpointError(f"{src}: no model_config / feature statistics; not a "
                              f"speechbert-tts-train checkpoint")
    model = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    buffers = {k: v for k, v in state.items() if "." not in k}
    return StageCheckpoint(src, dict(hparams), model, buffers)


class SpeakerEncoder:
    """Speaker vectors from recordings (the upstream) or ids (the checkpoint's table)."""

    def __init__(self, upstream: Upstream, ckpt: StageCheckpoint) -> None:
        self.upstream = upstream
        self.layer = int(ckpt.hparams["layer"])
        self.speaker_layer = int(ckpt.hparams["speaker_layer"])
        self.stats, self.speaker_stats = ckpt.stats, ckpt.speaker_stats
        self.ids: list[str] = list(ckpt.hparams.get("speaker_ids") or [])
        self.table = ckpt.buffers["speaker_table"]  # (S, D_s)

    @torch.no_grad()
    def embed(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised embeddings (T, D) and the speaker vector (D_s,) of ``wav`` (S,)."""
        out = self.upstream(wav.unsqueeze(0), torch.tensor([wav.numel()]))
        states = [h[0, :int(out.lengths[0])] for h in out.hidden_states]  # L x (T, D)
        return (self.stats.normalise(states[self.layer]),
                speaker_vector(self.speaker_stats.normalise(states[self.speaker_layer])))

    def of(self, speaker: str) -> torch.Tensor:
        """The speaker vector (D_s,) of a training speaker id or of a wav file path."""
        if speaker in self.ids:
            return self.table[self.ids.index(speaker)]
        if Path(speaker).suffix.lower() in (".wav", ".flac") or Path(speaker).is_file():
            return self.embed(load_audio(speaker))[1]
        raise ConfigError(f"speaker={speaker!r} is neither a training speaker id (one of "
                          f"{self.ids[:10]}{' ...' if len(self.ids) > 10 else ''}) nor an "
                          f"audio file; pass an id or a .wav/.flac path")


class Vocoder:
    """vec2wav with its upstream: embeddings or recordings to waveforms."""

    def __init__(self, ckpt: StageCheckpoint, upstream: Upstream | None = None) -> None:
        config = Vec2WavConfig(**_tuples(ckpt.hparams["model_config"]))
        self.generator: Vec2WavGenerator = build_generator(config)
        self.generator.load_state_dict(ckpt.model_state)
        self.generator.eval().remove_weight_norm()
        self.speakers = SpeakerEncoder(upstream or load_upstream(ckpt), ckpt)

    @torch.no_grad()
    def __call__(self, features: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Waveform (320 T,) from normalised embeddings (T, D) and a speaker vector (D_s,)."""
        return self.generator(features.unsqueeze(0), speaker_vectors=speaker.unsqueeze(0))[0]

    def copy_synthesis(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav`` (S,) re-synthesised from its own embeddings and speaker vector."""
        features, speaker = self.speakers.embed(wav)
        return self(features, speaker)

    def convert(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Voice conversion: ``source`` (S,) content in the voice of ``target`` (S',)."""
        features, _ = self.speakers.embed(source)
        return self(features, self.speakers.embed(target)[1])


class TextToEmbeddings:
    """text2vec with its text front end: raw text and a speaker vector to embeddings."""

    def __init__(self, ckpt: StageCheckpoint) -> None:
        config = Text2VecConfig(**ckpt.hparams["model_config"])
        self.model: Text2Vec = build_text2vec(config)
        self.model.load_state_dict(ckpt.model_state)
        self.model.eval()
        self.encode = character_encoder()

    @torch.no_grad()
    def __call__(self, text: str, speaker: torch.Tensor, speed: float = 1.0) -> torch.Tensor:
        """Normalised embeddings (T, D) of raw ``text`` for a speaker vector (D_s,)."""
        tokens = torch.tensor([self.encode(text)], dtype=torch.int64)  # (1, N)
        if tokens.numel() == 0:
            raise ConfigError(f"text={text!r} has nothing to say after normalisation")
        out = self.model(tokens, torch.tensor([tokens.shape[1]]),
                         speaker_vectors=speaker.unsqueeze(0), speed=speed)
        return out.features[0, :int(out.lengths[0])]


def load_upstream(ckpt: StageCheckpoint) -> Upstream:
    """The upstream a stage was trained on (eval mode): the HuBERT or w2v-BERT checkpoint, or
    the 50 Hz log-mel for a mel-conditioned vocoder."""
    if ckpt.hparams.get("conditioning") == "mel":
        return MelUpstream()
    return load_checkpoint_encoder(ckpt.hparams["upstream_checkpoint"])  # type: ignore[return-value]


class TtsPipeline:
    """Both stages: ``synthesize(text, speaker)`` where speaker is an id or a wav path."""

    def __init__(self, text2vec_ckpt: str | Path, vocoder_ckpt: str | Path) -> None:
        t2v, voc = read_stage_checkpoint(text2vec_ckpt), read_stage_checkpoint(vocoder_ckpt)
        for key in ("upstream_checkpoint", "conditioning", "layer", "speaker_layer"):
            ours, theirs = t2v.hparams.get(key, "upstream"), voc.hparams.get(key, "upstream")
            if ours != theirs:
                raise CheckpointError(f"{text2vec_ckpt} and {vocoder_ckpt} disagree on {key} "
                                      f"({ours} vs {theirs}); train both stages on the same "
                                      f"upstream layer")
        self.text2vec = TextToEmbeddings(t2v)
        self.vocoder = Vocoder(voc)
        self.t2v_stats = t2v.stats

    def synthesize(self, text: str, speaker: str, speed: float = 1.0) -> torch.Tensor:
        """Waveform (S,) of ``text`` in the voice of ``speaker`` (id or wav path)."""
        vector = self.vocoder.speakers.of(speaker)
        features = self.text2vec(text, vector, speed)  # (T, D), text2vec's normalisation
        raw = features * self.t2v_stats.std + self.t2v_stats.mean
        return self.vocoder(self.vocoder.speakers.stats.normalise(raw), vector)


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    """Lists (from a checkpoint's plain data) back to tuples, nested."""
    def convert(v: Any) -> Any:
        return tuple(convert(x) for x in v) if isinstance(v, list | tuple) else v
    return {k: convert(v) for k, v in values.items()}
