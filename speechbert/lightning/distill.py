"""LightHuBERT distillation in Lightning: stage 1 (full-size pre-distillation) and stage 2
(once-for-all supernet training), both from a frozen HuBERT teacher.

Stage 1: the student is the whole supernet (whatever the space: Base and Small share one), on the
teacher's front end and started as the teacher's exact copy (:func:`stage1_space`,
:func:`~speechbert.models.lighthubert.teacher.copy_teacher`, its summary is logged; a teacher of
another geometry is refused), and learns the teacher's averaged target layers at masked frames
(:mod:`speechbert.losses.distill`: LightHuBERT's target by default). Stage 2 starts from a stage-1
checkpoint (supernet and prediction head; any space of that supernet) and trains, at every step, one
subnet sampled uniformly from the space (LightHuBERT), or with ``sandwich`` also the max and min
subnets (BigNAS's sandwich rule). All subnets of a step are scored on the same mask against teacher
targets computed once per batch; their losses are summed before one backward, so their gradients add
up before one optimizer step (one backward also keeps DDP's gradient all-reduce, AMP's loss scaling,
gradient clipping and ``accumulate_grad_batches`` as they are; the price is that the three subnets'
activations are alive together). ``sandwich`` is off by default: on the bundled corpus a single
subnet per step validated better than the sandwich rule in the same wall time (an earlier
measurement, made when subnets and masks were drawn per batch).

Stage 2 across processes: an optimizer step trains one subnet (with ``sandwich``, one sampled plus
max and min), drawn from (``subnet_seed``, the step) alone (:meth:`DistillModule.train_subnets`),
so every rank and every accumulated micro-batch of the step trains the same one; and a training
batch's mask is drawn from (``mask_seed``, the step, the batch's utterance ids)
(:meth:`DistillModule.train_mask`), not from the process's global RNG (which ``seed_everything``
seeds alike on every rank). A step's gradient is then one subnet's gradient over the whole global
batch, and N ranks x k accumulated batches train what one process accumulating N x k batches
trains (``tests/lightning/test_distill_ddp.py``, with dropout off: dropout still draws from each
process's RNG). This is the rule of AutoFormer's once-for-all supernet training: it reseeds
Python's ``random`` with the epoch on every rank (microsoft/Cream ``AutoFormer/supernet_engine.py``
line 36) and draws one config per batch from it (line 55), while torch and numpy get per-rank seeds
(``AutoFormer/supernet_train.py`` lines 197-200, its ``random.seed`` commented out); it has no
gradient accumulation. LightHuBERT's training code is not public (mechanicalsea/lighthubert issues
#3, #8); its released model draws a subnet from Python's global ``random`` in a forward pre-hook
(``lighthubert/lighthubert.py`` lines 503-534), i.e. per forward pass, so per micro-batch, and per
rank unless its trainer seeded ``random`` alike on every rank (fairseq's does not:
``fairseq_cli/train.py`` lines 67-68 seed numpy and torch only); what its runs did across ranks is
not in the released code. A subnet shallower than the supernet leaves whole layers without
gradient, so DDP needs ``trainer.find_unused_parameters`` (on by default, as AutoFormer's
``find_unused_parameters=True``, ``supernet_train.py`` line 288); :meth:`DistillModule.on_fit_start`
refuses it off unless every step runs every layer (stage 1; a space whose only depth is the
supernet's, such as Base).

The module is a thin holder. The teacher is frozen (no gradient), always in eval mode, moved with
the module, and not registered as a submodule: it is neither optimised nor saved (a checkpoint
holds ``student.`` and ``criterion.head.`` weights only, and resumes with a strict load). The
hyper-parameters follow :mod:`speechbert.models.lighthubert.checkpoint`: ``space``, ``loss``,
``teacher`` and ``stage``, plus ``distill`` and ``optim``, so :func:`load_supernet` reads any
checkpoint of either stage.

Validation scores fixed subnets on masks seeded from each batch's utterance ids, so every
validation, and every subnet within one, sees the same masked frames: ``val/loss`` (stage 1, the
full-size student), ``val/loss_max``, ``val/loss_default`` and ``val/loss_min`` (stage 2).

``freeze_front_end`` (default off: LightHuBERT trains it, ``feature_grad_mult`` 1.0 in
``LightHuBERTConfig``) keeps the shared conv front end fixed: it runs without autograd and leaves
the optimizer, which makes a step cheaper (``python -m evals.bench_supernet`` measures it); turn it
on when steps are what is scarce.

``rewire_batches`` (default 0) rewires the stage-1 supernet before stage 2 (DynaBERT); on the
bundled corpus it made no difference after a few hundred stage-2 steps.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from speechbert.data.collate import AudioBatch
from speechbert.errors import ConfigError
from speechbert.lightning.pretrain import (
    NonFiniteLossError,
    OptimConfig,
    adamw_with_schedule,
    log_grad_norm,
)
from speechbert.losses.distill import (
    DistillCriterion,
    DistillLossConfig,
    TeacherTargets,
    build_distill_criterion,
    sandwich_subnets,
)
from speechbert.losses.distill_score import seeded_mask
from speechbert.models.hubert.convert import load_teacher
from speechbert.models.hubert.upstream import HubertUpstream
from speechbert.models.lighthubert.checkpoint import load_supernet, space_to_dict
from speechbert.models.lighthubert.dense import json_ready
from speechbert.models.lighthubert.rewire import (
    Importance,
    accumulate_importance,
    reorder_by_importance,
)
from speechbert.models.lighthubert.space import SearchSpace
from speechbert.models.lighthubert.supernet import LightHubertSupernet, build_supernet
from speechbert.models.lighthubert.teacher import (
    TeacherMismatchError,
    copy_teacher,
    geometry_mismatches,
    teacher_front_end,
)
from speechbert.nn.elastic import SubnetConfig

log = logging.getLogger(__name__)

STAGES = (1, 2)
"""Distillation stages: 1 pre-distils the full-size student, 2 trains the supernet."""


@dataclass
class DistillConfig:
    """Which stage runs, its teacher and starting point, and how subnets are trained."""

    stage: int = 1
    """1: the full-size student learns from the teacher; 2: sampled subnets (from stage 1)."""
    teacher: str = ""
    """Teacher: a speechbert HuBERT ``.ckpt``, a fairseq ``.pt`` or a transformers folder."""
    init_from: str | None = None
    """Stage 2: the stage-1 checkpoint to start from (``runs/distill/<name>/checkpoints/...``)."""
    sandwich: bool = False
    """Stage 2: also train the max and min subnets at every step (~2.5x the step time)."""
    freeze_front_end: bool = False
    """Keep the shared conv front end fixed (no gradient, not optimised); LightHuBERT trains it."""
    rewire_batches: int = 0
    """Stage 2: training batches whose importance reorders heads and FFN units first; 0 = off."""
    subnet_seed: int = 0
    """Seed of stage 2's sampled subnet, drawn once per optimizer step from (this, the step):
    the same on every rank and for every accumulated batch of the step."""
    mask_seed: int = 0
    """Seed of the training masks, each drawn from (this, the optimizer step, the batch's
    utterance ids), so a batch's mask does not depend on which rank or micro-batch scores it."""

    def validate(self) -> DistillConfig:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        rules = [
            (self.stage in STAGES, f"distill.stage must be one of {STAGES}, got {self.stage}"),
            (bool(self.teacher), "distill.teacher must name the teacher checkpoint, got ''"),
            (self.stage == 1 or bool(self.init_from), "distill.init_from must name the stage-1 "
             "checkpoint when distill.stage=2, got None"),
            (self.stage == 2 or self.init_from is None, f"distill.init_from must be None in "
             f"stage 1 (it starts from the teacher), got {self.init_from!r}"),
            (self.rewire_batches >= 0,
             f"distill.rewire_batches must be >= 0, got {self.rewire_batches}"),
            (self.stage == 2 or self.rewire_batches == 0, f"distill.rewire_batches must be 0 in "
             f"stage 1 (rewiring precedes supernet training), got {self.rewire_batches}"),
        ]
        for ok, message in rules:
            if not ok:
                raise ConfigError(message)
        return self


class DistillModule(L.LightningModule):
    """Distils ``teacher`` into the supernet ``student`` with ``criterion`` (see the module doc).

    ``student`` is stored as ``self.student`` and the criterion (holding the prediction head) as
    ``self.criterion``; ``teacher`` is held outside the module tree (frozen, eval mode).
    """

    def __init__(self, student: LightHubertSupernet, teacher: HubertUpstream,
                 criterion: DistillCriterion, space: SearchSpace, cfg: DistillConfig,
                 optim: OptimConfig) -> None:
        super().__init__()
        optim.validate()
        self.student = student
        self.criterion = criterion
        object.__setattr__(self, "teacher", teacher.eval().requires_grad_(False))
        self.teacher: HubertUpstream
        self.space = space
        self.cfg = cfg.validate()
        self.optim = optim
        if cfg.freeze_front_end:
            student.feature_extractor.requires_grad_(False)
        self.save_hyperparameters({
            "space": space_to_dict(space), "loss": json_ready(asdict(criterion.cfg)),
            "teacher": cfg.teacher, "stage": cfg.stage, "distill": asdict(cfg),
            "optim": json_ready(asdict(optim))})

    def _apply(self, fn: Any, recurse: bool = True) -> DistillModule:
        """Move/cast the unregistered teacher with the module (``.to(device)`` and friends)."""
        self.teacher._apply(fn)
        return super()._apply(fn, recurse)

    def train_subnets(self, step: int) -> list[tuple[str, SubnetConfig]]:
        """(name, subnet) trained at optimizer step ``step``: the max subnet in stage 1; in stage 2
        one sampled from (``subnet_seed``, ``step``) alone, so every rank and every accumulated
        batch of the step trains the same one (see the module doc), + max and min (sandwich)."""
        if self.cfg.stage == 1:
            return [("max", self.space.arch.full_subnet())]
        rng = random.Random(f"{self.cfg.subnet_seed}/{step}")
        subnets = sandwich_subnets(self.space, rng, self.cfg.sandwich)
        return list(zip(("sampled", "max", "min"), subnets, strict=False))

    def train_mask(self, batch: AudioBatch, targets: TeacherTargets) -> torch.Tensor:
        """The span mask (B, T') of a training batch, drawn from (``mask_seed``, the optimizer
        step, the batch's utterance ids): the same whichever rank or micro-batch scores it, and
        the global RNG is left as it was."""
        key = f"{self.cfg.mask_seed}/{self.global_step}/{' '.join(batch.ids)}"
        return seeded_mask(self.criterion, targets.lengths, targets.targets.shape[1],
                           zlib.crc32(key.encode()))

    def every_step_runs_every_layer(self) -> bool:
        """Whether every training step runs all supernet layers: stage 1 does (the full
        supernet), the sandwich rule when the space's largest depth is the supernet's, a single
        sampled subnet only when no depth is smaller; otherwise a step can leave whole layers
        without gradient."""
        depths, layers = self.space.depths, self.space.arch.encoder.num_layers
        if self.cfg.stage == 1:
            return True
        return (max(depths) if self.cfg.sandwich else min(depths)) == layers

    def on_fit_start(self) -> None:
        """Refuse DDP without ``find_unused_parameters`` when a step can skip layers: DDP would
        stop at the next step because their gradients never arrive."""
        model = self.trainer.model
        if (isinstance(model, DistributedDataParallel) and not model.find_unused_parameters
                and not self.every_step_runs_every_layer()):
            depth = max(self.space.depths) if self.cfg.sandwich else min(self.space.depths)
            raise ConfigError(
                f"trainer.find_unused_parameters=false, but distill.stage={self.cfg.stage} "
                f"(sandwich={self.cfg.sandwich}) has steps running {depth} of the supernet's "
                f"{self.space.arch.encoder.num_layers} layers; the skipped layers get no "
                f"gradient and stop DDP. Set trainer.find_unused_parameters=true")

    def val_subnets(self) -> list[tuple[str, SubnetConfig]]:
        """(name, subnet) scored at validation: stage 1 the full supernet; stage 2 max, default,
        min."""
        if self.cfg.stage == 1:
            return [("", self.space.arch.full_subnet())]
        return [("_max", self.space.max_subnet()), ("_default", self.space.default_subnet()),
                ("_min", self.space.min_subnet())]

    def training_step(self, batch: AudioBatch, batch_idx: int) -> torch.Tensor:
        """Summed loss of this batch's subnets; logs ``train/loss`` (their mean) and each one."""
        if not len(batch):  # every file skipped: a zero loss reaching every trainable parameter
            return sum((p.sum() for p in self.parameters() if p.requires_grad),
                       torch.zeros((), device=self.device)) * 0.0
        targets = self.criterion.teacher_targets(self.teacher, batch.wavs, batch.lengths)
        mask = self.train_mask(batch, targets)  # (B, T')
        subnets = self.train_subnets(self.global_step)
        total = torch.zeros((), device=self.device)
        for name, subnet in subnets:
            loss = self.criterion(self.student, batch, subnet, targets, mask).loss
            total = total + loss
            if len(subnets) > 1:
                self.log(f"train/loss_{name}", loss.detach(), batch_size=len(batch))
        self._stop_if_not_finite(total, batch_idx)
        self.log("train/loss", total.detach() / len(subnets), prog_bar=True,
                 batch_size=len(batch))
        return total

    def validation_step(self, batch: AudioBatch, batch_idx: int) -> None:
        """Logs ``val/loss`` (stage 1) or ``val/loss_{max,default,min}`` on a seeded mask."""
        if not len(batch):
            return
        targets = self.criterion.teacher_targets(self.teacher, batch.wavs, batch.lengths)
        seed = zlib.crc32(" ".join(batch.ids).encode())  # the batch's own mask, every time
        mask = seeded_mask(self.criterion, targets.lengths, targets.targets.shape[1], seed)
        for suffix, subnet in self.val_subnets():
            out = self.criterion(self.student, batch, subnet, targets, mask)
            weight = float(out.num_targets or len(batch))
            self.log(f"val/loss{suffix}", out.loss.detach(), batch_size=weight,  # type: ignore[arg-type]
                     sync_dist=True)

    def _stop_if_not_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Raise :class:`NonFiniteLossError` on every rank when the loss is NaN/inf on any."""
        finite = torch.isfinite(loss.detach()).reshape(1).to(torch.int32)  # (1,)
        flags = self.all_gather(finite)
        assert isinstance(flags, torch.Tensor)
        if bool(flags.reshape(-1).all()):
            return
        raise NonFiniteLossError(
            f"distillation loss is {loss.item()} at global step {self.global_step} (batch "
            f"{batch_idx}); stopping. Lower optim.lr, lengthen optim.warmup_steps or clip "
            f"gradients (trainer.gradient_clip_val), and resume from an earlier checkpoint")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Log the gradient norm before clipping (``train/grad_norm``)."""
        log_grad_norm(self)

    def configure_optimizers(self) -> Any:
        """AdamW over the student and head (not the teacher, nor a frozen front end)."""
        return adamw_with_schedule(self, self.optim)


def check_teacher(teacher: HubertUpstream, space: SearchSpace, loss: DistillLossConfig,
                  source: str) -> None:
    """Fail early when the teacher cannot teach this space: frame rates, target layers."""
    student_conv = tuple((kernel, stride) for _, kernel, stride in space.arch.conv_layers)
    if tuple(teacher.conv_layers) != student_conv:
        raise ConfigError(f"distill.teacher={source}: its front end frames audio with (kernel, "
                          f"stride) {list(teacher.conv_layers)}, the supernet of space="
                          f"{space.name!r} with {list(student_conv)}, so their frames do not "
                          f"line up; use the teacher the supernet was started from")
    count = teacher.num_layers
    bad = [i for i in loss.teacher_layers if not -count <= i < count]
    if bad:
        raise ConfigError(f"loss.teacher_layers must index the teacher's {count} hidden states "
                          f"(-{count}..{count - 1}; {source}); got {bad}, e.g. set "
                          f"loss.teacher_layers=[{-min(2, count)},-1]")


def stage1_space(space: SearchSpace, teacher: HubertUpstream, source: str) -> SearchSpace:
    """``space`` on a supernet with the teacher's front end, refused with a
    :class:`TeacherMismatchError` naming each setting when the teacher's Transformer is not the
    supernet's (stage 1 starts the supernet as the teacher's exact copy)."""
    adopted = space.with_front_end(*teacher_front_end(teacher.model))
    problems = geometry_mismatches(adopted.arch, teacher.model)
    if problems:
        raise TeacherMismatchError(
            f"distill.teacher={source} is not the supernet of space={space.name!r}, so stage 1 "
            f"cannot start as its copy ({'; '.join(problems)}); use the space of its size "
            f"(base or small: HuBERT Base; large: HuBERT Large; tiny / tiny_fbank: the tiny "
            f"teachers)")
    return adopted


def build_stage1_student(space: SearchSpace, teacher: HubertUpstream,
                         source: str = "teacher") -> LightHubertSupernet:
    """A supernet that is, at its full size, an exact copy of ``teacher``
    (:func:`~speechbert.models.lighthubert.teacher.copy_teacher`); ``space`` must already carry
    the teacher's front end (:func:`stage1_space`)."""
    student = build_supernet(space.arch)
    report = copy_teacher(student, teacher.model, source)
    log.info("stage 1 student initialised from the teacher: %s", report.summary())
    return student


def build_distill_module(cfg: DistillConfig, space: SearchSpace, loss: DistillLossConfig,
                         optim: OptimConfig) -> DistillModule:
    """Load the teacher (and, in stage 2, the stage-1 supernet and head) and build the module.

    Stage 1 puts ``space`` on a supernet with the teacher's front end; stage 2 puts it on the
    stage-1 checkpoint's supernet, so any space of that supernet (Base or Small) reads it.
    """
    cfg.validate()
    teacher = load_teacher(cfg.teacher)
    if cfg.stage == 1:
        space = stage1_space(space, teacher, cfg.teacher)
    else:
        assert cfg.init_from is not None
        stage1 = load_supernet(cfg.init_from)
        try:
            space = space.on_arch(stage1.space.arch)
        except ConfigError as exc:
            raise ConfigError(f"distill.init_from={cfg.init_from}: {exc}") from exc
    check_teacher(teacher, space, loss.validate(), cfg.teacher)
    criterion = build_distill_criterion(loss, space.arch.encoder.embed_dim, teacher.hidden_size)
    if cfg.stage == 1:
        student = build_stage1_student(space, teacher, cfg.teacher)
        return DistillModule(student, teacher, criterion, space, cfg, optim)
    try:
        criterion.head.load_state_dict(stage1.head_state)
    except RuntimeError as exc:
        raise ConfigError(f"distill.teacher={cfg.teacher} is {teacher.hidden_size} wide but the "
                          f"prediction head of distill.init_from={cfg.init_from} predicts another "
                          f"width; stage 2 distils from stage 1's teacher "
                          f"({stage1.hyper_parameters.get('teacher')})") from exc
    log.info("stage 2 starts from %s (step %d, space %r; now space %r)", cfg.init_from,
             stage1.global_step, stage1.space.name, space.name)
    return DistillModule(stage1.supernet.train(), teacher, criterion, space, cfg, optim)


def rewire_student(module: DistillModule, batches: Iterable[AudioBatch]) -> Importance:
    """Reorder the student's heads and FFN units by importance (DynaBERT) measured with the
    distillation loss of the max subnet on ``batches``; call before training starts. The global
    RNG (its masks draw from it) is left as it was, so training draws the same dropout with or
    without it (training masks are seeded, :meth:`DistillModule.train_mask`)."""
    max_subnet = module.space.max_subnet()

    def loss_fn(supernet: LightHubertSupernet, batch: AudioBatch) -> torch.Tensor:
        targets = module.criterion.teacher_targets(module.teacher, batch.wavs, batch.lengths)
        return module.criterion(supernet, batch, max_subnet, targets).loss

    with torch.random.fork_rng(devices=[]):  # training masks as without rewiring
        importance = accumulate_importance(module.student, batches, loss_fn)
    module.criterion.zero_grad(set_to_none=True)
    reorder_by_importance(module.student, importance)
    return importance


def frozen_parameters(module: nn.Module) -> list[str]:
    """Names of ``module``'s parameters that do not require gradients (for logs and tests)."""
    return [name for name, p in module.named_parameters() if not p.requires_grad]
