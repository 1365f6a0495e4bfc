"""A tiny teacher and distillation module for the distillation tests; also a runnable toy run.

    python -m tests.lightning.toy_distill --corpus DIR --run-dir DIR [--pause-at-step N]

Runs stage 2 (sandwich) of the tiny space on the toy corpus with the real Lightning pieces;
``--pause-at-step N`` blocks at the start of step N (after writing ``<run-dir>/paused``) so a
test can SIGKILL it there; a resumed run (the marker exists) does not pause.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from speechbert.data.collate import AudioBatch
from speechbert.lightning.datamodule import DataConfig, PretrainDataModule
from speechbert.lightning.distill import DistillConfig, DistillModule
from speechbert.lightning.pretrain import OptimConfig
from speechbert.lightning.trainer import TrainerConfig, build_trainer, fit, resume_checkpoint
from speechbert.losses.distill import DistillLossConfig, build_distill_criterion
from speechbert.models.hubert.build import build_hubert_pretrain
from speechbert.models.hubert.config import HubertConfig
from speechbert.models.hubert.config import tiny as hubert_tiny
from speechbert.models.hubert.upstream import HubertUpstream
from speechbert.models.lighthubert.space import tiny
from speechbert.models.lighthubert.supernet import build_supernet
from tests.lightning.child_process import run_with_threads
from tests.lightning.toy_pretrain import PauseAtStep

LOSS = DistillLossConfig(teacher_layers=(-2, -1), mask_prob=0.5, mask_length=4)
"""Loss settings of the toy runs: the tiny teacher has 3 hidden states; short masks."""


def tiny_teacher(seed: int = 1) -> HubertUpstream:
    """A seeded random tiny HuBERT (2 layers, D 128) as an upstream, in eval mode."""
    torch.manual_seed(seed)
    return HubertUpstream(build_hubert_pretrain(hubert_tiny()).wav2vec2)


def save_teacher_checkpoint(path: Path, seed: int = 1,
                            config: HubertConfig | None = None) -> Path:
    """A random HuBERT (default tiny) in our pretraining checkpoint format (what
    ``load_teacher`` reads)."""
    config = config or hubert_tiny()
    torch.manual_seed(seed)
    model = build_hubert_pretrain(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": {"model_config": asdict(config)},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def toy_module(stage: int = 2, seed: int = 0, max_steps: int = 20,
               **options: object) -> DistillModule:
    """A distillation module of the tiny space with a random teacher and student."""
    teacher = tiny_teacher()
    torch.manual_seed(seed)
    space = tiny()
    student = build_supernet(space.arch)
    criterion = build_distill_criterion(LOSS, space.arch.encoder.embed_dim, teacher.hidden_size)
    cfg = DistillConfig(stage=stage, teacher="toy-teacher",
                        init_from="toy-stage1.ckpt" if stage == 2 else None, **options)  # type: ignore[arg-type]
    optim = OptimConfig(lr=2e-3, warmup_steps=min(2, max_steps), max_steps=max_steps,
                        decay="cosine")
    return DistillModule(student, teacher, criterion, space, cfg, optim)


def fixed_batch(seed: int = 0) -> AudioBatch:
    """Two noise waveforms of 1 s and 0.7 s (the second zero-padded)."""
    wavs = 0.1 * torch.randn(2, 16_000, generator=torch.Generator().manual_seed(seed))
    wavs[1, 11_200:] = 0.0
    return AudioBatch(wavs=wavs, lengths=torch.tensor([16_000, 11_200]), ids=["a", "b"])


def toy_data(corpus: Path) -> DataConfig:
    """The toy corpus without labels, two utterances per batch, read in the training process."""
    return DataConfig(train_manifests=[str(corpus / "train.tsv")],
                      valid_manifests=[str(corpus / "valid.tsv")], min_samples=8_000,
                      max_samples=16_000, max_batch_seconds=2.0, max_batch_size=2,
                      num_workers=0, strict=False)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the toy run."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--checkpoint-every", type=int, default=3)
    p.add_argument("--pause-at-step", type=int)
    return p


def main(argv: list[str] | None = None) -> None:
    """Run (or resume) the toy stage-2 distillation on one thread; restore the thread count."""
    run_with_threads(run, build_parser().parse_args(argv), 1)


def run(args: argparse.Namespace) -> None:
    """Build the toy module, data and trainer from ``args`` and fit (resume=auto)."""
    torch.manual_seed(0)
    module = toy_module(stage=2, max_steps=args.max_steps, sandwich=True)
    trainer_cfg = TrainerConfig(accelerator="cpu", devices="1", gradient_clip_val=1.0,
                                val_every_n_steps=4, num_sanity_val_steps=1,
                                checkpoint_every_n_steps=args.checkpoint_every,
                                log_every_n_steps=1, progress_bar=False)
    callbacks = []
    if args.pause_at_step is not None:
        callbacks.append(PauseAtStep(args.pause_at_step, args.run_dir / "paused"))
    trainer = build_trainer(trainer_cfg, args.run_dir, args.max_steps, callbacks)
    fit(trainer, module, PretrainDataModule(toy_data(args.corpus)),
        resume_checkpoint(args.run_dir, "auto"))


if __name__ == "__main__":
    main()
