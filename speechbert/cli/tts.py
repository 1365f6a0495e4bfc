"""WavThruVec commands: ``speechbert-tts-train``, ``speechbert-tts`` and ``speechbert-vc``.

    speechbert-tts-train tts_experiment=mini stage=text2vec    # stage 1: text -> embeddings
    speechbert-tts-train tts_experiment=mini stage=vec2wav     # stage 2: embeddings -> audio
    speechbert-tts text="Hello there." speaker=1001 out=hello.wav
    speechbert-tts text="Hello there." speaker=ref.wav
    speechbert-vc source.wav target.wav --out converted.wav

Training is Hydra, like ``speechbert-pretrain``: the typed schema :class:`TtsTrainConfig`,
``configs/tts.yaml`` picking ``text2vec`` and ``vec2wav`` model presets (registered here from
the models' preset functions), ``trainer`` and ``tts_experiment``. A run writes into
``runs/<stage>/<name>/`` (config.yaml, checkpoints/, logs, metrics.json, timing.json) and
``resume=auto`` continues from ``checkpoints/last.ckpt``. The embedding widths of the models
(``output_dim``, ``input_dim``, ``speaker_dim``) are set from the upstream layer's features.
Synthesis and conversion take ``key=value`` / positional arguments and read the two stages'
``last.ckpt`` (the ``mini`` runs by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import soundfile as sf
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from speechbert.audio import SAMPLE_RATE, load_audio
from speechbert.cli import CONFIG_DIR
from speechbert.cli.common import run_main, write_run_config
from speechbert.cli.store import from_node, retuple, to_node
from speechbert.errors import ConfigError, SpeechbertError
from speechbert.lightning.pretrain import OptimConfig
from speechbert.lightning.trainer import (
    TrainerConfig,
    build_trainer,
    fit,
    is_rank_zero,
    resume_checkpoint,
    seed_everything,
)
from speechbert.lightning.tts import (
    Text2VecLossConfig,
    Text2VecModule,
    Vec2WavModule,
    VocoderOptimConfig,
)
from speechbert.lightning.tts_data import TtsDataConfig, TtsDataModule
from speechbert.losses.gan import (
    MelSpectrogramLoss,
    MultiResolutionStftLoss,
    MultiScaleMelLoss,
    ReconstructionLoss,
    VocoderLossWeights,
)
from speechbert.models.tts import text2vec as text2vec_presets
from speechbert.models.tts import vec2wav as vec2wav_presets
from speechbert.models.tts.discriminators import build_discriminator
from speechbert.models.tts.embeddings import speaker_table
from speechbert.models.tts.mel import LogMelSpectrogram

log = logging.getLogger(__name__)

STAGES = ("text2vec", "vec2wav")
"""What ``stage=`` trains."""


@dataclass
class TtsTrainConfig:
    """One TTS training run: which stage, both stages' models and losses, data, trainer."""

    name: str = MISSING
    """Run name (experiments set it); the run folder is ``runs/<stage>/<name>``."""
    stage: str = MISSING
    """``text2vec`` (stage 1, needs transcripts) or ``vec2wav`` (stage 2, audio only)."""
    run_dir: str = "runs/${stage}/${name}"
    """Run folder: config.yaml, checkpoints/, tensorboard/, csv/, metrics.json, timing.json."""
    resume: str = "auto"
    """``auto`` (continue from ``last.ckpt`` if any), ``never``, or a ``.ckpt`` path."""
    seed: int = 0
    """Seed of model initialisation (the data order uses data.seed)."""
    text2vec: Any = MISSING
    """text2vec preset of the ``text2vec`` group (tiny, base), with overrides."""
    vec2wav: Any = MISSING
    """vec2wav preset of the ``vec2wav`` group (tiny, base), with overrides."""
    data: TtsDataConfig = field(default_factory=TtsDataConfig)
    """Manifests, upstream checkpoint and layer, batching."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """text2vec: AdamW and schedule; ``optim.max_steps`` ends a text2vec run."""
    text2vec_loss: Text2VecLossConfig = field(default_factory=Text2VecLossConfig)
    """text2vec: frame distance and loss weights."""
    vocoder_optim: VocoderOptimConfig = field(default_factory=VocoderOptimConfig)
    """vec2wav: learning rates, regression warm-up, ``max_steps`` (batches)."""
    vocoder_loss: VocoderLossWeights = field(default_factory=VocoderLossWeights)
    """vec2wav: HiFi-GAN's generator loss weights."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Devices, precision, validation and checkpoint cadence (in Lightning steps)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {self.stage!r}")
        for part in (self.data, self.optim, self.text2vec_loss, self.vocoder_optim,
                     self.trainer):
            part.validate()


def register_configs() -> None:
    """Put the schema and both stages' model presets into Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="tts_schema", node=TtsTrainConfig)
    for preset, make_t2v in text2vec_presets.PRESETS.items():
        cs.store(group="text2vec", name=preset, node=to_node(make_t2v()))
    for preset, make_v2w in vec2wav_presets.PRESETS.items():
        cs.store(group="vec2wav", name=preset, node=to_node(make_v2w()))


def to_run_config(cfg: DictConfig) -> TtsTrainConfig:
    """The composed Hydra config as dataclasses (model configs as the models' own)."""
    run = OmegaConf.to_object(cfg)
    assert isinstance(run, TtsTrainConfig)
    return dataclasses.replace(run, text2vec=from_node(run.text2vec),
                               vec2wav=from_node(run.vec2wav), optim=retuple(run.optim),
                               vocoder_optim=retuple(run.vocoder_optim))


def data_facts(data: TtsDataModule, cfg: TtsTrainConfig) -> dict[str, Any]:
    """Speaker table, statistics and the hyper-parameters inference needs."""
    dataset = data.train_set
    assert dataset is not None and data.stats is not None and data.speaker_stats is not None
    vectors = dataset.speaker_vectors()
    ids, table = speaker_table(vectors, [dataset.cached.utterances[i].speaker
                                         for i in dataset.indices])
    hparams = {"stage": cfg.stage, "upstream_checkpoint": cfg.data.upstream_checkpoint,
               "conditioning": cfg.data.conditioning,
               "layer": cfg.data.layer, "speaker_layer": cfg.data.speaker_layer,
               "speaker_ids": ids}
    return {"stats": data.stats, "speaker_stats": data.speaker_stats, "speaker_table": table,
            "hparams": hparams}


def build_module(cfg: TtsTrainConfig, data: TtsDataModule) -> Text2VecModule | Vec2WavModule:
    """The stage's LightningModule, model widths set from the data."""
    facts = data_facts(data, cfg)
    dim, speaker_dim = int(facts["stats"].mean.numel()), int(facts["speaker_table"].shape[1])
    if cfg.stage == "text2vec":
        model_cfg = dataclasses.replace(cfg.text2vec, output_dim=dim, speaker_dim=speaker_dim)
        facts["hparams"]["model_config"] = dataclasses.asdict(model_cfg)
        return Text2VecModule(text2vec_presets.build_text2vec(model_cfg), cfg.optim,
                              cfg.text2vec_loss, **facts)
    model_cfg = dataclasses.replace(cfg.vec2wav, input_dim=dim, speaker_dim=speaker_dim)
    facts["hparams"]["model_config"] = dataclasses.asdict(model_cfg)
    return Vec2WavModule(vec2wav_presets.build_generator(model_cfg),
                         build_discriminator(model_cfg), MelSpectrogramLoss(LogMelSpectrogram()),
                         ReconstructionLoss(MultiResolutionStftLoss(), MultiScaleMelLoss()),
                         cfg.vocoder_optim, cfg.vocoder_loss, **facts)


def lightning_max_steps(cfg: TtsTrainConfig) -> int:
    """Lightning's ``max_steps``: text2vec's, or twice vec2wav's batches (two optimizers)."""
    return cfg.optim.max_steps if cfg.stage == "text2vec" else 2 * cfg.vocoder_optim.max_steps


def stage_trainer(cfg: TtsTrainConfig) -> TrainerConfig:
    """The trainer settings; vec2wav clips in its module (vocoder_optim.grad_clip), as
    Lightning refuses gradient_clip_val with manual optimisation."""
    if cfg.stage == "vec2wav":
        return dataclasses.replace(cfg.trainer, gradient_clip_val=0.0)
    return cfg.trainer


def run(cfg: DictConfig, extra_callbacks: Sequence[Any] = ()) -> dict[str, float]:
    """Check the config, cache the features, build the stage and train it (``extra_callbacks``
    go to the Trainer: tests pause a run with one)."""
    run_cfg = to_run_config(cfg)
    run_cfg.validate()
    ckpt_path = resume_checkpoint(run_cfg.run_dir, run_cfg.resume)
    run_dir = Path(run_cfg.run_dir)
    write_run_config(run_dir, cfg)
    start = time.perf_counter()
    data = TtsDataModule(run_cfg.data, run_cfg.stage)
    data.setup("fit")  # may build the upstream (random init) to fill the cache: seed after
    seed_everything(run_cfg.seed)
    module = build_module(run_cfg, data)
    trainer = build_trainer(stage_trainer(run_cfg), run_dir, lightning_max_steps(run_cfg),
                            extra_callbacks)
    metrics = fit(trainer, module, data, ckpt_path)
    if is_rank_zero():
        record_timing(run_dir, time.perf_counter() - start, trainer.global_step)
    return metrics


def record_timing(run_dir: Path, seconds: float, global_step: int) -> None:
    """Append this launch's wall time to ``timing.json`` (a resumed run adds a launch; a
    killed launch records nothing, so the total undercounts interrupted runs)."""
    path = run_dir / "timing.json"
    launches = json.loads(path.read_text())["launches"] if path.is_file() else []
    launches.append({"seconds": round(seconds, 1), "global_step": global_step})
    total = round(sum(x["seconds"] for x in launches), 1)
    path.write_text(json.dumps({"total_seconds": total, "launches": launches}, indent=2) + "\n")


register_configs()


@hydra.main(config_path=CONFIG_DIR, config_name="tts", version_base="1.3")
def train_main(cfg: DictConfig) -> None:
    """Entry point of ``speechbert-tts-train`` (Hydra parses the command line)."""
    run_main(run, cfg)


TTS_DEFAULTS = {"text": "", "speaker": "", "out": "tts.wav", "speed": "1.0",
                "text2vec": "runs/text2vec/mini/checkpoints/last.ckpt",
                "vocoder": "runs/vec2wav/mini/checkpoints/last.ckpt"}
"""``speechbert-tts`` arguments and their defaults."""


def parse_key_values(argv: list[str], defaults: dict[str, str]) -> dict[str, str]:
    """``key=value`` arguments over ``defaults``; unknown keys raise :class:`ConfigError`."""
    values = dict(defaults)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in defaults:
            raise ConfigError(f"argument {arg!r}: expected key=value with key one of "
                              f"{sorted(defaults)}")
        values[key] = value
    return values


def write_wav(path: str | Path, wav: torch.Tensor) -> Path:
    """Write a 16 kHz float waveform (S,) as 16-bit PCM WAV; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, wav.detach().cpu().clamp(-1, 1).numpy(), SAMPLE_RATE, subtype="PCM_16")
    return out


def tts_main(argv: list[str] | None = None) -> None:
    """Entry point of ``speechbert-tts text="..." speaker=<id|wav> [out=...]``."""
    from speechbert.models.tts.pipeline import TtsPipeline

    try:
        args = parse_key_values(sys.argv[1:] if argv is None else argv, TTS_DEFAULTS)
        if not args["text"] or not args["speaker"]:
            raise ConfigError("text=... and speaker=<training speaker id | wav path> are "
                              "required")
        pipeline = TtsPipeline(args["text2vec"], args["vocoder"])
        wav = pipeline.synthesize(args["text"], args["speaker"], float(args["speed"]))
    except SpeechbertError as exc:
        print(f"speechbert-tts: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {write_wav(args['out'], wav)} ({wav.numel() / SAMPLE_RATE:.2f} s)")


def vc_main(argv: list[str] | None = None) -> None:
    """Entry point of ``speechbert-vc source.wav target.wav [--out converted.wav]``."""
    from speechbert.models.tts.pipeline import Vocoder, read_stage_checkpoint

    parser = argparse.ArgumentParser(description="Voice conversion: the source's words in the "
                                     "target's voice (upstream embeddings -> vec2wav).")
    parser.add_argument("source", help="recording whose content is kept")
    parser.add_argument("target", help="recording of the voice to convert to")
    parser.add_argument("--out", default="vc.wav", help="output WAV (16 kHz)")
    parser.add_argument("--vocoder", default=TTS_DEFAULTS["vocoder"],
                        help="vec2wav checkpoint (speechbert-tts-train stage=vec2wav)")
    args = parser.parse_args(argv)
    try:
        vocoder = Vocoder(read_stage_checkpoint(args.vocoder))
        wav = vocoder.convert(load_audio(args.source), load_audio(args.target))
    except SpeechbertError as exc:
        print(f"speechbert-vc: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {write_wav(args.out, wav)} ({wav.numel() / SAMPLE_RATE:.2f} s)")


if __name__ == "__main__":
    train_main()
