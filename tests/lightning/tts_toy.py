"""A tiny synthetic TTS setup: six tone-and-noise utterances with text, random tiny HuBERT and
w2v-BERT checkpoints as upstreams (HuBERT's by default), and a composed
``speechbert-tts-train`` config sized to run in seconds.
``python -m tests.lightning.tts_toy --root R --run-dir D --stage S [--pause-at-step N]`` trains
like the CLI (child processes of the resume test use it); with ``--pause-at-step`` it
writes ``<run-dir>/paused`` at the start of that global step and blocks until killed.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from speechbert.cli.tts import CONFIG_DIR, run
from speechbert.data.manifest import Utterance, write_manifest
from speechbert.models.hubert import config as hubert_config
from speechbert.models.hubert.build import build_hubert_pretrain
from speechbert.models.w2vbert import config as w2vbert_config
from speechbert.models.w2vbert.build import build_w2vbert

TEXTS = ("a cat sat", "the dog ran far", "one two three", "hello there", "big red box",
         "we go now")
"""Transcripts of the toy utterances (one per file)."""


def write_toy_tts(root: Path) -> Path:
    """Audio, a manifest and tiny HuBERT and w2v-BERT checkpoints (``hubert.ckpt``,
    ``w2vbert.ckpt``) under ``root``; returns ``root``."""
    rng = np.random.default_rng(0)
    utts = []
    for i, text in enumerate(TEXTS):
        n = 16_000 + 1_600 * i
        t = np.arange(n) / 16_000
        wav = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.02 * rng.standard_normal(n)
        path = root / "audio" / f"u{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav.astype(np.float32), 16_000)
        utts.append(Utterance(id=f"u{i}", path=path, num_samples=n, speaker=f"s{i % 2}",
                              text=text.upper()))
    write_manifest(root / "train.tsv", utts)
    torch.manual_seed(0)
    h_cfg, w_cfg = hubert_config.tiny(), w2vbert_config.tiny()
    for name, model, cfg in (("hubert", build_hubert_pretrain(h_cfg), asdict(h_cfg)),
                             ("w2vbert", build_w2vbert(w_cfg), asdict(w_cfg))):
        torch.save({"hyper_parameters": {"model_config": cfg},
                    "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
                   root / f"{name}.ckpt")
    return root


def toy_overrides(root: Path, run_dir: Path, stage: str, max_steps: int = 6,
                  every: int = 4) -> list[str]:
    """Command-line overrides of a toy run (``max_steps`` batches, a checkpoint every
    ``every`` Lightning steps)."""
    return [f"stage={stage}", "name=toy", f"run_dir={run_dir}",
            f"data.train_manifests=[{root / 'train.tsv'}]", "data.valid_manifests=[]",
            f"data.upstream_checkpoint={root / 'hubert.ckpt'}",
            f"data.cache_dir={root / 'cache'}", "data.batch_size=2", "data.segment_frames=8",
            f"optim.max_steps={max_steps}", "optim.warmup_steps=2",
            f"vocoder_optim.max_steps={max_steps}", f"vocoder_optim.adversarial_start="
            f"{max_steps // 2}", "trainer.num_sanity_val_steps=0", "trainer.progress_bar=false",
            f"trainer.checkpoint_every_n_steps={every}", "trainer.log_every_n_steps=1",
            "trainer.val_every_n_steps=1000"]


def compose_config(overrides: list[str]) -> DictConfig:
    """The ``tts.yaml`` config with ``overrides``, as the CLI composes it."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="tts", overrides=overrides)


class PauseAtStep(L.Callback):
    """Writes ``<run_dir>/paused`` at the start of global step ``step`` and blocks forever."""

    def __init__(self, run_dir: Path, step: int) -> None:
        self.run_dir, self.step = run_dir, step

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        """Block at the chosen step."""
        if trainer.global_step == self.step:
            (self.run_dir / "paused").write_text("paused\n")
            while True:
                time.sleep(1)


def main(argv: list[str] | None = None) -> None:
    """Train a toy stage (optionally pausing) like ``speechbert-tts-train``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--stage", default="vec2wav")
    parser.add_argument("--pause-at-step", type=int, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    callbacks = [] if args.pause_at_step is None else [PauseAtStep(args.run_dir,
                                                                   args.pause_at_step)]
    run(compose_config(toy_overrides(args.root, args.run_dir, args.stage)), callbacks)


if __name__ == "__main__":
    main()
