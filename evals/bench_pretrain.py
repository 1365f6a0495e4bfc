"""Pretraining-step benchmark: our Lightning module vs the bare library step, side by side.

``python -m evals.bench_pretrain`` prints JSON. For a small HuBERT (torchaudio
``HuBERTPretrainModel``) and a small w2v-BERT (fairseq2), at the same config and batch
(4 x 4 s, fp32, AdamW, gradient clipping):

- ``lightning``: :class:`speechbert.lightning.pretrain.PretrainModule` under ``L.Trainer``
  (logging and progress bar off, checkpointing off) on a loader repeating one batch;
- ``bare``: the same model and criterion in a plain ``for`` loop (forward, backward, clip,
  AdamW step) — what a hand-written library training loop does;
- ``ratio`` = lightning / bare throughput (target >= 0.95), the two runs interleaved in rounds
  so machine load affects both alike; and the bf16-mixed vs fp32 throughput of the Lightning
  step with the loss after the same number of steps for each. Peak RSS at the end.

``tiny_front_ends`` compares the demo's two tiny HuBERTs step for step (bare loop, interleaved
rounds): the 64-channel conv stack (``tiny``) against the fbank front end (``tiny_fbank``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import lightning as L
import torch
from torch import nn

from evals.bench import peak_rss_mb, w2vbert_small
from speechbert.data.collate import PretrainBatch
from speechbert.data.frames import conv_frame_count
from speechbert.lightning.pretrain import OptimConfig, PretrainModule
from speechbert.losses.criterion import PretrainCriterion
from speechbert.losses.hubert import HubertCriterion
from speechbert.losses.w2vbert import W2VBertCriterion
from speechbert.models.hubert.build import build_hubert_pretrain
from speechbert.models.hubert.config import HubertConfig, tiny, tiny_fbank
from speechbert.models.w2vbert.build import build_w2vbert

BATCH, SECONDS = 4, 4
OPTIM = OptimConfig(lr=1e-4, warmup_steps=10, max_steps=10_000)


def hubert_small() -> HubertConfig:
    """The "small" HuBERT of the benchmarks: 256-channel convs, 4 layers of D = 256."""
    from speechbert.models.hubert.config import conv_layers_with_channels

    return replace(tiny(), conv_layers=conv_layers_with_channels((256,) * 7), embed_dim=256,
                   pos_conv_kernel=64, pos_conv_groups=16, num_layers=4, num_heads=4,
                   ffn_dim=1024, final_dim=128)


def make_batch(with_labels: bool, num_classes: int = 100) -> PretrainBatch:
    """A fixed 4 x 4 s batch of noise (with random frame labels for HuBERT)."""
    gen = torch.Generator().manual_seed(0)
    wavs = torch.randn(BATCH, SECONDS * 16_000, generator=gen) * 0.1  # (B, T)
    lengths = torch.full((BATCH,), wavs.shape[1], dtype=torch.int64)
    labels = None
    if with_labels:
        frames = conv_frame_count(wavs.shape[1])
        labels = torch.randint(0, num_classes, (BATCH, frames), generator=gen)  # (B, T')
    return PretrainBatch(wavs=wavs, lengths=lengths, ids=[""] * BATCH, labels=labels)


class _StepTimer(L.Callback):
    """Wall time of each training step, from batch start to batch end."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.losses: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *args: object) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule,
                           outputs: object, *args: object) -> None:
        self.times.append(time.perf_counter() - self._start)
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))  # type: ignore[arg-type]


def lightning_steps(model: nn.Module, criterion: PretrainCriterion, batch: PretrainBatch,
                    steps: int, precision: str) -> _StepTimer:
    """Run ``steps`` Lightning training steps; return their wall times and losses."""
    module = PretrainModule(model, criterion, OPTIM, model_config={})
    timer = _StepTimer()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, precision=precision,  # type: ignore[arg-type]
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        gradient_clip_val=10.0, callbacks=[timer])
    loader: torch.utils.data.DataLoader[PretrainBatch] = torch.utils.data.DataLoader(
        [batch] * steps, batch_size=None, collate_fn=lambda b: b)  # type: ignore[arg-type]
    trainer.fit(module, train_dataloaders=loader)
    return timer


def bare_steps(model: nn.Module, criterion: PretrainCriterion, batch: PretrainBatch,
               steps: int) -> list[float]:
    """Run ``steps`` plain training steps (forward, backward, clip, AdamW); return wall times."""
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=OPTIM.lr, betas=OPTIM.betas,
                              eps=OPTIM.eps, weight_decay=OPTIM.weight_decay)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        criterion(model, batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def _rate(times: list[float], warmup: int) -> float:
    """Audio-seconds per second from per-step times, dropping the first ``warmup`` steps."""
    kept = times[warmup:]
    return BATCH * SECONDS * len(kept) / sum(kept)


def compare(name: str, build: Callable[[], nn.Module], criterion: PretrainCriterion,
            batch: PretrainBatch, steps: int, rounds: int) -> dict[str, object]:
    """Lightning vs bare throughput (interleaved rounds) and bf16-mixed vs fp32."""
    light, bare = [], []
    for _ in range(rounds):
        torch.manual_seed(0)
        light += lightning_steps(build(), criterion, batch, steps, "32-true").times[2:]
        torch.manual_seed(0)
        bare += bare_steps(build(), criterion, batch, steps)[2:]
    torch.manual_seed(0)
    fp32 = lightning_steps(build(), criterion, batch, steps, "32-true")
    torch.manual_seed(0)
    bf16 = lightning_steps(build(), criterion, batch, steps, "bf16-mixed")
    return {
        "model": name, "steps_per_round": steps, "rounds": rounds,
        "lightning_audio_s_per_s": _rate(light, 0), "bare_audio_s_per_s": _rate(bare, 0),
        "ratio_lightning_over_bare": _rate(light, 0) / _rate(bare, 0),
        "fp32_audio_s_per_s": _rate(fp32.times, 2), "bf16_audio_s_per_s": _rate(bf16.times, 2),
        "ratio_bf16_over_fp32": _rate(bf16.times, 2) / _rate(fp32.times, 2),
        f"fp32_loss_after_{steps}_steps": fp32.losses[-1],
        f"bf16_loss_after_{steps}_steps": bf16.losses[-1],
    }


def front_end_speed(steps: int, rounds: int) -> dict[str, object]:
    """Training throughput of ``tiny`` (conv front end) and ``tiny_fbank``, bare loops
    interleaved in rounds, and their ratio."""
    batch = make_batch(True, tiny().num_classes)
    times: dict[str, list[float]] = {"tiny": [], "tiny_fbank": []}
    for _ in range(rounds):
        for name, make in (("tiny", tiny), ("tiny_fbank", tiny_fbank)):
            torch.manual_seed(0)
            times[name] += bare_steps(build_hubert_pretrain(make()), HubertCriterion(), batch,
                                      steps)[2:]
    rates = {name: _rate(t, 0) for name, t in times.items()}
    return {**{f"{name}_audio_s_per_s": rate for name, rate in rates.items()},
            "ratio_fbank_over_conv": rates["tiny_fbank"] / rates["tiny"]}


def main(argv: list[str] | None = None) -> int:
    """CLI: print the pretraining-step comparison as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="steps per measured run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per side")
    args = parser.parse_args(argv)
    hub = hubert_small()
    report = {
        "batch": f"{BATCH} x {SECONDS} s", "torch_threads": torch.get_num_threads(),
        "hubert_small": compare("hubert_small", lambda: build_hubert_pretrain(hub),
                                HubertCriterion(), make_batch(True, hub.num_classes),
                                args.steps, args.rounds),
        "w2vbert_small": compare("w2vbert_small", lambda: build_w2vbert(w2vbert_small()),
                                 W2VBertCriterion(), make_batch(False), args.steps, args.rounds),
        "tiny_front_ends": front_end_speed(args.steps, args.rounds),
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
