"""LightningModules of the two WavThruVec stages: text2vec (stage 1) and vec2wav (stage 2).

Thin holders, as :mod:`speechbert.lightning.pretrain`: models and losses are built elsewhere and
passed in; each module stores its model as ``self.model`` (state-dict keys ``model.``), the
model config as ``hyper_parameters["model_config"]``, and the data facts inference needs
(upstream checkpoint, layers, feature statistics, per-speaker mean vectors) as buffers and
``hyper_parameters``, so :mod:`speechbert.models.tts.pipeline` rebuilds everything from the
two checkpoints without Lightning.

* :class:`Text2VecModule`: AdamW with the pretraining schedule; durations by monotonic
  alignment search against the model's own token means (Glow-TTS), L1 frames + log-duration
  MSE + prior MSE.
* :class:`Vec2WavModule`: a GAN with manual optimisation. For the first
  ``adversarial_start`` batches only the generator trains, on mel L1 + multi-resolution STFT +
  multi-scale mel (a regression warm-up that gets audible speech within minutes on a CPU; its
  learning rate falls linearly from ``warmup_lr`` to ``lr``); after that each batch updates the
  discriminators (LSGAN) and then the generator (LSGAN + feature matching + mel L1 + the
  regression terms). Lightning counts one optimizer step per ``optimizer.step()`` call, so both
  optimizers are stepped every batch (the discriminator's step is a no-op during warm-up,
  with no gradients) and ``trainer.global_step == 2 x batches``; ``VocoderOptimConfig`` counts
  batches and the CLI hands Lightning twice its ``max_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import lightning as L
import torch
from torch.optim.lr_scheduler import LambdaLR

from speechbert.errors import ConfigError
from speechbert.lightning.pretrain import NonFiniteLossError, OptimConfig, lr_factor
from speechbert.lightning.tts_data import TtsBatch
from speechbert.losses.gan import (
    MelSpectrogramLoss,
    ReconstructionLoss,
    VocoderLossWeights,
    discriminator_loss,
    generator_loss,
)
from speechbert.losses.text2vec import FrameDistance, aligned_text2vec_loss, masked_frame_loss
from speechbert.models.tts.discriminators import VocoderDiscriminator
from speechbert.models.tts.embeddings import FeatureStats
from speechbert.models.tts.text2vec import Text2Vec
from speechbert.models.tts.vec2wav import Vec2WavGenerator


@dataclass
class Text2VecLossConfig:
    """Weights and distance of the text2vec loss."""

    frame_distance: str = "l1"
    """Predicted vs target embeddings: ``l1`` or ``mse``."""
    duration_weight: float = 1.0
    """Weight of the log-duration MSE."""
    prior_weight: float = 1.0
    """Weight of the aligned token means' MSE (trains the MAS aligner)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        if self.frame_distance not in ("l1", "mse"):
            raise ConfigError(f"text2vec_loss.frame_distance must be 'l1' or 'mse', got "
                              f"{self.frame_distance!r}")
        if min(self.duration_weight, self.prior_weight) < 0:
            raise ConfigError(f"text2vec_loss weights must be >= 0, got duration_weight="
                              f"{self.duration_weight}, prior_weight={self.prior_weight}")


@dataclass
class VocoderOptimConfig:
    """AdamW for generator and discriminators (HiFi-GAN's betas), warm-up, length."""

    lr: float = 2e-4
    """Learning rate of both (HiFi-GAN: 2e-4)."""
    warmup_lr: float = 2e-3
    """Generator learning rate during the regression warm-up."""
    betas: tuple[float, float] = (0.8, 0.99)
    """AdamW (beta1, beta2)."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay."""
    adversarial_start: int = 0
    """Batches of generator-only regression (mel L1 + STFT) before the GAN losses start."""
    max_steps: int = 500_000
    """Batches to train (Lightning's ``max_steps`` is twice this: two optimizers)."""
    reconstruction_weight: float = 45.0
    """Weight of the multi-resolution STFT + multi-scale mel loss (0 = HiFi-GAN's only)."""
    grad_clip: float = 100.0
    """Clip each network's gradient norm to this (0 disables)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        if min(self.lr, self.warmup_lr) <= 0:
            raise ConfigError(f"vocoder_optim.lr and warmup_lr must be > 0, got {self.lr} and "
                              f"{self.warmup_lr}")
        if self.adversarial_start < 0 or self.max_steps < 1:
            raise ConfigError(f"vocoder_optim.adversarial_start must be >= 0 (>= max_steps: "
                              f"regression only) and max_steps >= 1, got "
                              f"{self.adversarial_start} and {self.max_steps}")
        if min(self.reconstruction_weight, self.grad_clip, self.weight_decay) < 0:
            raise ConfigError(f"vocoder_optim.reconstruction_weight, grad_clip and weight_decay "
                              f"must be >= 0, got {self.reconstruction_weight}, "
                              f"{self.grad_clip}, {self.weight_decay}")

    def generator_lr(self, batch: int) -> float:
        """Generator learning rate at ``batch``: ``warmup_lr`` falling linearly to ``lr`` at the
        end of the warm-up (or of training, without a GAN phase), then ``lr``."""
        end = min(self.adversarial_start, self.max_steps)
        if batch >= end:
            return self.lr
        return self.warmup_lr + (self.lr - self.warmup_lr) * batch / end


class TtsStateMixin:
    """Buffers and hyper-parameters shared by both stages' checkpoints."""

    def register_data_facts(self, module: L.LightningModule, stats: FeatureStats,
                            speaker_stats: FeatureStats, speaker_table: torch.Tensor) -> None:
        """Feature and speaker statistics and the (S, D_s) per-speaker mean vectors."""
        module.register_buffer("feature_mean", stats.mean.clone())
        module.register_buffer("feature_std", stats.std.clone())
        module.register_buffer("speaker_mean", speaker_stats.mean.clone())
        module.register_buffer("speaker_std", speaker_stats.std.clone())
        module.register_buffer("speaker_table", speaker_table.clone())


def _check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"the TTS loss is {float(loss)} at step {step}; lower the "
                                 "learning rate or check the data")


class Text2VecModule(L.LightningModule, TtsStateMixin):
    """Stage 1: text to upstream embeddings, MAS durations, AdamW with warm-up and decay."""

    def __init__(self, model: Text2Vec, optim: OptimConfig, loss: Text2VecLossConfig,
                 stats: FeatureStats, speaker_stats: FeatureStats,
                 speaker_table: torch.Tensor, hparams: dict[str, Any]) -> None:
        super().__init__()
        optim.validate()
        loss.validate()
        self.model, self.optim, self.loss_cfg = model, optim, loss
        self.register_data_facts(self, stats, speaker_stats, speaker_table)
        self.save_hyperparameters(hparams)

    def _loss(self, batch: TtsBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert batch.tokens is not None and batch.token_lengths is not None
        aligned = self.model.forward_aligned(batch.tokens, batch.token_lengths, batch.features,
                                             batch.lengths, speaker_vectors=batch.speakers)
        distance: FrameDistance = "l1" if self.loss_cfg.frame_distance == "l1" else "mse"
        out = aligned_text2vec_loss(aligned, batch.features, batch.lengths,
                                    batch.token_lengths, frame_distance=distance,
                                    duration_weight=self.loss_cfg.duration_weight,
                                    prior_weight=self.loss_cfg.prior_weight)
        return out.loss, out.metrics

    def training_step(self, batch: TtsBatch, batch_idx: int) -> torch.Tensor:
        """Loss of one batch; logs its parts."""
        loss, metrics = self._loss(batch)
        _check_finite(loss, self.global_step)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch.ids))
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, batch_size=len(batch.ids))
        return loss

    def validation_step(self, batch: TtsBatch, batch_idx: int) -> None:
        """Teacher-forced loss, and the frame L1 with predicted durations (free running)."""
        loss, metrics = self._loss(batch)
        assert batch.tokens is not None and batch.token_lengths is not None
        free = self.model(batch.tokens, batch.token_lengths, speaker_vectors=batch.speakers,
                          max_frames=batch.features.shape[1])
        free_l1 = masked_frame_loss(free.features, batch.features,
                                    torch.minimum(free.lengths, batch.lengths))
        values = {"valid/loss": loss, "valid/free_running_l1": free_l1,
                  **{f"valid/{k}": v for k, v in metrics.items()}}
        self.log_dict(values, batch_size=len(batch.ids), sync_dist=True)

    def configure_optimizers(self) -> Any:
        """AdamW and the per-step warm-up + decay schedule of pretraining."""
        cfg = self.optim
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                      eps=cfg.eps, weight_decay=cfg.weight_decay)
        schedule = LambdaLR(optimizer, partial(lr_factor, cfg=cfg))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class Vec2WavModule(L.LightningModule, TtsStateMixin):
    """Stage 2: the HiFi-GAN vocoder on embeddings, manual optimisation of G and D."""

    def __init__(self, model: Vec2WavGenerator, discriminator: VocoderDiscriminator,
                 mel_loss: MelSpectrogramLoss, reconstruction: ReconstructionLoss,
                 optim: VocoderOptimConfig, weights: VocoderLossWeights,
                 stats: FeatureStats, speaker_stats: FeatureStats,
                 speaker_table: torch.Tensor, hparams: dict[str, Any]) -> None:
        super().__init__()
        optim.validate()
        self.automatic_optimization = False
        self.model, self.discriminator = model, discriminator
        self.mel_loss, self.reconstruction = mel_loss, reconstruction
        self.optim, self.weights = optim, weights
        self.register_data_facts(self, stats, speaker_stats, speaker_table)
        self.save_hyperparameters(hparams)

    @property
    def batches_done(self) -> int:
        """Batches trained so far (Lightning's global step counts both optimizers)."""
        return self.global_step // 2

    def _generate(self, batch: TtsBatch) -> torch.Tensor:
        return self.model(batch.features, speaker_vectors=batch.speakers)  # (B, 320 T)

    def _step(self, optimizer: Any, loss: torch.Tensor | None, params: Any) -> None:
        optimizer.zero_grad(set_to_none=True)
        if loss is not None:
            self.manual_backward(loss)
            if self.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, self.optim.grad_clip)
        optimizer.step()

    def training_step(self, batch: TtsBatch, batch_idx: int) -> None:
        """Warm-up: generator regression only; then a discriminator and a generator step."""
        assert batch.audio is not None
        opt_g, opt_d = self.optimizers()  # type: ignore[attr-defined]
        real, fake = batch.audio, self._generate(batch)
        adversarial = self.batches_done >= self.optim.adversarial_start
        for group in opt_g.param_groups:
            group["lr"] = self.optim.generator_lr(self.batches_done)
        d_loss = discriminator_loss(self.discriminator, real, fake).loss if adversarial else None
        self._step(opt_d, d_loss, self.discriminator.parameters())
        g_loss, metrics = self._generator_loss(real, fake, adversarial)
        _check_finite(g_loss, self.global_step)
        self.discriminator.requires_grad_(False)
        self._step(opt_g, g_loss, self.model.parameters())
        self.discriminator.requires_grad_(True)
        if d_loss is not None:
            metrics["disc_loss"] = d_loss.detach()
        self.log("train/gen_loss", g_loss.detach(), prog_bar=True, batch_size=real.shape[0])
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, batch_size=real.shape[0])

    def _generator_loss(self, real: torch.Tensor, fake: torch.Tensor,
                        adversarial: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        regression = self.reconstruction(real, fake)
        if adversarial:
            out = generator_loss(self.discriminator, self.mel_loss, real, fake, self.weights)
            loss, metrics = out.loss, dict(out.metrics)
        else:
            mel = self.mel_loss(real, fake)
            loss, metrics = self.weights.mel * mel, {"mel_loss": mel.detach()}
        metrics["reconstruction_loss"] = regression.detach()
        return loss + self.optim.reconstruction_weight * regression, metrics

    def validation_step(self, batch: TtsBatch, batch_idx: int) -> None:
        """Mel L1 and STFT loss of the generated windows."""
        assert batch.audio is not None
        fake = self._generate(batch)
        self.log_dict({"valid/mel_loss": self.mel_loss(batch.audio, fake),
                       "valid/reconstruction_loss": self.reconstruction(batch.audio, fake)},
                      batch_size=len(batch.ids), sync_dist=True)

    def configure_optimizers(self) -> Any:
        """AdamW for the generator, AdamW for the discriminators (constant learning rates)."""
        cfg = self.optim
        make = partial(torch.optim.AdamW, lr=cfg.lr, betas=cfg.betas,
                       weight_decay=cfg.weight_decay)
        return [make(self.model.parameters()), make(self.discriminator.parameters())]
