"""One LightningModule for every pretraining objective: call the criterion, check, log.

The module is a thin holder: the model and the criterion are built elsewhere and passed in
(HuBERT and w2v-BERT share this loop). ``hyper_parameters["model_config"]`` in every checkpoint
is the family config as a plain dict, and the model is stored as ``self.model``, so the state
dict keys start with ``model.``; the families' checkpoint loaders rely on both.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from speechbert.data.collate import PretrainBatch, SkipLog
from speechbert.errors import ConfigError, SpeechbertError
from speechbert.losses.criterion import PretrainCriterion

log = logging.getLogger(__name__)

DECAYS = ("linear", "cosine")
"""Learning-rate decay shapes after warm-up."""
PROGRESS_BAR_METRICS = ("masked_acc", "mlm_acc")
"""Criterion metrics shown in the progress bar next to the loss (HuBERT, w2v-BERT)."""


class NonFiniteLossError(SpeechbertError):
    """The training loss became NaN or infinite; raised on every rank at the same step."""


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, then linear or cosine decay, stepped every optimizer step."""

    lr: float = 5e-4
    """Peak learning rate, reached at the end of warm-up."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW (beta1, beta2)."""
    eps: float = 1e-6
    """AdamW epsilon."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay, applied to every trainable parameter."""
    warmup_steps: int = 32_000
    """Optimizer steps of linear warm-up from ``lr / warmup_steps`` to ``lr``."""
    max_steps: int = 400_000
    """Total optimizer steps; training stops here and the decay reaches its end."""
    decay: str = "linear"
    """Shape of the decay after warm-up: ``linear`` or ``cosine``."""
    final_lr_ratio: float = 0.0
    """Learning rate at ``max_steps`` as a fraction of ``lr``."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        rules = [
            (self.lr > 0, f"optim.lr must be > 0, got {self.lr}"),
            (all(0 <= b < 1 for b in self.betas) and len(self.betas) == 2,
             f"optim.betas must be two values in [0, 1), got {list(self.betas)}"),
            (self.max_steps > 0, f"optim.max_steps must be > 0, got {self.max_steps}"),
            (0 <= self.warmup_steps <= self.max_steps, f"optim.warmup_steps must be in "
             f"[0, max_steps={self.max_steps}], got {self.warmup_steps}"),
            (self.decay in DECAYS, f"optim.decay must be one of {DECAYS}, got {self.decay!r}"),
            (0 <= self.final_lr_ratio <= 1,
             f"optim.final_lr_ratio must be in [0, 1], got {self.final_lr_ratio}"),
        ]
        for ok, message in rules:
            if not ok:
                raise ConfigError(message)


def lr_factor(step: int, cfg: OptimConfig) -> float:
    """Multiplier of ``cfg.lr`` for optimizer step ``step`` (0-based): warm-up, then decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    low = cfg.final_lr_ratio
    if cfg.decay == "cosine":
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1 - (1 - low) * progress


def adamw_with_schedule(module: nn.Module, cfg: OptimConfig) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` value: AdamW over ``module``'s trainable parameters
    and a LambdaLR (:func:`lr_factor`) stepped after every optimizer step."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas),  # type: ignore[arg-type]
                                  eps=cfg.eps, weight_decay=cfg.weight_decay)
    scheduler = LambdaLR(optimizer, partial(lr_factor, cfg=cfg))
    return {"optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}


def log_grad_norm(module: L.LightningModule) -> None:
    """Log the total gradient norm of ``module`` as ``train/grad_norm`` (call before clipping)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if grads:
        module.log("train/grad_norm", torch.nn.utils.get_total_norm(grads))


class PretrainModule(L.LightningModule):
    """Trains ``model`` with ``criterion``; AdamW with a per-step warm-up/decay schedule.

    The criterion is called on every batch, also one whose items were all skipped (B = 0):
    criteria all-reduce their target counts, so every rank must call them the same number of
    times, and for B = 0 they return a zero loss that still reaches every parameter, so DDP's
    gradient all-reduce runs on every rank (checked here). A non-finite loss raises
    :class:`NonFiniteLossError` on all ranks at the same step (the finite flag is gathered).

    ``val/loss`` is the criterion's loss averaged with the masked-frame counts as weights;
    under DDP the criteria scale it by world size / global frames, so per-frame terms such as
    ``val/masked_loss`` are the exact global values and ``val/loss`` is the same up to that.
    """

    def __init__(self, model: nn.Module, criterion: PretrainCriterion, optim: OptimConfig,
                 model_config: dict[str, Any]) -> None:
        super().__init__()
        optim.validate()
        self.model = model
        self.criterion = criterion
        self.optim = optim
        self.save_hyperparameters({"model_config": model_config, "optim": asdict(optim)})
        self.train_skips = SkipLog()
        self.val_skips = SkipLog()

    def training_step(self, batch: PretrainBatch, batch_idx: int) -> torch.Tensor:
        """Loss of one batch; logs ``train/loss`` and ``train/<metric>``."""
        self.train_skips.update(batch)
        out = self.criterion(self.model, batch)
        assert len(batch) or out.loss.requires_grad, (
            "the criterion must return a loss connected to the parameters for an empty batch, "
            "or DDP ranks would wait for each other's gradients forever")
        self._stop_if_not_finite(out.loss, batch_idx)
        self.log("train/loss", out.loss.detach(), prog_bar=True, batch_size=len(batch))
        for name, value in out.metrics.items():
            self.log(f"train/{name}", value, prog_bar=name in PROGRESS_BAR_METRICS,
                     batch_size=len(batch))
        return out.loss

    def validation_step(self, batch: PretrainBatch, batch_idx: int) -> None:
        """Logs ``val/loss`` and ``val/<metric>``, averaged over frames across ranks."""
        self.val_skips.update(batch)
        out = self.criterion(self.model, batch)  # also for B = 0: criteria all-reduce inside
        weight = out.num_targets or len(batch)  # 0 for B = 0; the key stays on every rank
        self._log_val("val/loss", out.loss.detach(), weight)
        for name, value in out.metrics.items():
            self._log_val(f"val/{name}", value, weight)

    def _log_val(self, name: str, value: torch.Tensor, weight: int) -> None:
        """Log a frame-weighted epoch mean, synced across ranks.

        The weight is passed as a float: Lightning 2.6 keeps an int weight sum and divides it
        by the world size in integer arithmetic when syncing (23.5 -> 23), which skews the mean
        whenever the ranks' weights add up to an odd number; a float sum is exact.
        """
        self.log(name, value, batch_size=float(weight), sync_dist=True)  # type: ignore[arg-type]

    def _stop_if_not_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Raise on every rank when the loss is NaN/inf on any rank."""
        finite = torch.isfinite(loss.detach()).reshape(1).to(torch.int32)  # (1,)
        flags = self.all_gather(finite)
        assert isinstance(flags, torch.Tensor)
        flags = flags.reshape(-1)  # (world,)
        if bool(flags.all()):
            return
        ranks = [r for r, ok in enumerate(flags.tolist()) if not ok]
        raise NonFiniteLossError(
            f"training loss is {loss.item()} on this rank, non-finite on rank(s) {ranks}, at "
            f"global step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx}); "
            f"stopping. Lower optim.lr, lengthen optim.warmup_steps, clip gradients "
            f"(trainer.gradient_clip_val) or train with trainer.precision=32, and resume from "
            f"an earlier checkpoint")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Log the gradient norm before clipping (``train/grad_norm``)."""
        log_grad_norm(self)

    def on_train_epoch_end(self) -> None:
        """Log which files were skipped this epoch (rank 0 always, others if any), reset."""
        self._log_skips("train", self.train_skips, always=self.trainer.is_global_zero)

    def on_validation_epoch_end(self) -> None:
        """Log which validation files were skipped, if any, then forget them."""
        self._log_skips("valid", self.val_skips, always=False)

    def _log_skips(self, split: str, skips: SkipLog, always: bool) -> None:
        if skips.skipped or (always and skips.total):
            log.info("%s (rank %d, epoch %d): %s", split, self.global_rank, self.current_epoch,
                     skips.summary())
        skips.reset()

    def configure_optimizers(self) -> Any:
        """AdamW over every trainable parameter; LambdaLR stepped after each optimizer step."""
        return adamw_with_schedule(self, self.optim)
