"""``speechbert-subnet``: the subnet of a trained supernet with the lowest validation
distillation loss within a parameter or latency budget.

    speechbert-subnet checkpoint=runs/distill/lighthubert_mini_stage2/checkpoints/last.ckpt \\
        budget.params_fraction=0.5 out=runs/subnet/mini_half
    speechbert-subnet checkpoint=... budget.latency_ms=40 budget.seconds=10 search.method=random

The config is :class:`SubnetSearchConfig` (typed; ``configs/subnet.yaml``). The loss is
:class:`~speechbert.losses.distill_score.SubnetScorer`'s: the checkpoint's distillation loss
settings and prediction head, its teacher (``hyper_parameters["teacher"]`` unless ``teacher=`` is
given), on fixed validation batches whose teacher targets and masks are computed once. Budgets:
``budget.params`` (exact count), ``budget.params_fraction`` (of the max subnet's count) or
``budget.latency_ms`` (median forward time of the extracted subnet on ``budget.seconds`` of audio,
on this machine with ``threads`` torch threads). No subnet over the budget is scored or chosen;
a latency winner is re-measured at the end and must still fit.

Writes ``<out>/subnet.json`` (the :class:`SubnetConfig`, readable by ``speechbert-export``) and
``<out>/search.json`` (loss, parameters, MACs, measured latency, the budget, the history).
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from tqdm import tqdm

from speechbert.cli import CONFIG_DIR
from speechbert.errors import ConfigError, SpeechbertError
from speechbert.losses.distill import DistillCriterion
from speechbert.losses.distill_score import (
    SubnetScorer,
    load_prediction_head,
    loss_config_from_hparams,
    prepare_scoring_batches,
    validation_batches,
)
from speechbert.models.hubert.convert import load_teacher
from speechbert.models.lighthubert.checkpoint import SupernetCheckpoint, load_supernet
from speechbert.models.lighthubert.extract import extract_subnet
from speechbert.models.lighthubert.search import (
    MACS_SECONDS,
    Budget,
    LatencyBudget,
    ParamsBudget,
    SearchResult,
    evolutionary_search,
    latency_meter,
    random_search,
)
from speechbert.models.lighthubert.space import SearchSpace, count_params
from speechbert.models.lighthubert.supernet import LightHubertSupernet
from speechbert.nn.elastic import SubnetConfig

log = logging.getLogger(__name__)

METHODS = ("random", "evolutionary")
"""Search methods."""
CLOCKS: dict[str, Callable[[], float]] = {"thread": time.thread_time, "wall": time.perf_counter}
"""Latency clocks by name."""


@dataclass
class BudgetConfig:
    """Exactly one of ``params``, ``params_fraction`` and ``latency_ms``."""

    params: int | None = None
    """Most parameters allowed (conv front end included, as ``count_params``)."""
    params_fraction: float | None = None
    """Most parameters allowed as a fraction of the space's max subnet, in (0, 1]."""
    latency_ms: float | None = None
    """Longest forward pass allowed, in ms, on ``seconds`` of audio, batch 1, on this machine."""
    seconds: float = 10.0
    """Audio length the latency is measured on."""
    repeats: int = 11
    """Timed runs per latency measurement (the median counts)."""
    warmup: int = 3
    """Untimed runs before each latency measurement."""
    clock: str = "thread"
    """``thread``: CPU seconds of the calling thread (needs ``threads=1``; steady when other
    processes share the cores, and the wall time of an unloaded machine); ``wall``: wall time."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        chosen = [k for k in ("params", "params_fraction", "latency_ms")
                  if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ConfigError(f"budget: set exactly one of budget.params, budget.params_fraction "
                              f"and budget.latency_ms; got {chosen or 'none'}")
        if self.params is not None and self.params < 1:
            raise ConfigError(f"budget.params must be >= 1; got {self.params}")
        if self.params_fraction is not None and not 0.0 < self.params_fraction <= 1.0:
            raise ConfigError(f"budget.params_fraction must be in (0, 1]; "
                              f"got {self.params_fraction}")
        for name in ("latency_ms", "seconds"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"budget.{name} must be > 0; got {value}")
        if self.clock not in CLOCKS:
            raise ConfigError(f"budget.clock must be one of {tuple(CLOCKS)}; got {self.clock!r}")
        if self.repeats < 1 or self.warmup < 0:
            raise ConfigError(f"budget.repeats must be >= 1 and budget.warmup >= 0; got "
                              f"{self.repeats} and {self.warmup}")


@dataclass
class SearchConfig:
    """Which search and how long it runs."""

    method: str = "evolutionary"
    """``random`` (``n`` samples) or ``evolutionary`` (population x generations)."""
    n: int = 64
    """Subnets a random search scores."""
    population: int = 16
    """Subnets per generation of the evolutionary search."""
    generations: int = 4
    """Rounds of the evolutionary search after the first population."""
    parents: int | None = None
    """Survivors per generation (default population // 4, at least 2)."""
    mutate_prob: float = 0.3
    """Chance of redrawing each choice of a mutated subnet."""
    seed: int = 0
    """Seed of the sampling, mutation and crossover."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        if self.method not in METHODS:
            raise ConfigError(f"search.method must be one of {METHODS}; got {self.method!r}")
        if self.n < 1:
            raise ConfigError(f"search.n must be >= 1; got {self.n}")

    def expected_evaluations(self) -> int:
        """About how many subnets the search scores (the progress bar's total)."""
        if self.method == "random":
            return self.n
        keep = self.parents or min(self.population - 1, max(2, self.population // 4))
        return self.population + self.generations * (self.population - keep)


@dataclass
class ValidationConfig:
    """The fixed validation batches every subnet is scored on."""

    manifests: list[str] = field(
        default_factory=lambda: ["data/mini/manifests/librispeech/dev-clean.tsv"])
    """Validation manifests (TSV), relative to the working directory."""
    max_utterances: int | None = 32
    """Utterances used (the first long-enough ones); None for all."""
    min_samples: int = 32_000
    """Shorter utterances are left out."""
    max_samples: int = 80_000
    """Crops are at most this long (a fixed crop per utterance)."""
    max_batch_seconds: float = 40.0
    """Padded audio per batch, in seconds."""
    seed: int = 0
    """Seed of the crops and of the per-batch masks (``seed + batch index``)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, the rule and the value."""
        if not self.manifests:
            raise ConfigError("data.manifests must name at least one manifest; got []")
        if self.max_utterances is not None and self.max_utterances < 1:
            raise ConfigError(f"data.max_utterances must be >= 1 or null; "
                              f"got {self.max_utterances}")
        if not 0 < self.min_samples <= self.max_samples:
            raise ConfigError(f"data.min_samples must be in (0, data.max_samples]; got "
                              f"{self.min_samples} and {self.max_samples}")


@dataclass
class SubnetSearchConfig:
    """One subnet search: the supernet checkpoint, the budget, the search, the data."""

    checkpoint: str = MISSING
    """Distillation checkpoint (``runs/distill/<name>/checkpoints/last.ckpt``)."""
    name: str = "search"
    """Run name; the default output folder is ``runs/subnet/<name>``."""
    out: str = "runs/subnet/${name}"
    """Output folder: subnet.json, search.json, the resolved config."""
    teacher: str | None = None
    """Teacher checkpoint; None uses the checkpoint's ``hyper_parameters["teacher"]``."""
    threads: int = 1
    """torch threads for scoring and latency (latency budgets hold at this thread count)."""
    progress_bar: bool = True
    """Show a progress bar over the scored subnets."""
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    """The budget no chosen subnet exceeds."""
    search: SearchConfig = field(default_factory=SearchConfig)
    """The search method and its size."""
    data: ValidationConfig = field(default_factory=ValidationConfig)
    """The validation batches."""


def register_configs() -> None:
    """Put the schema into Hydra's ConfigStore (``configs/subnet.yaml`` builds on it)."""
    ConfigStore.instance().store(name="subnet_schema", node=SubnetSearchConfig)


def to_search_config(cfg: DictConfig) -> SubnetSearchConfig:
    """The composed Hydra config as the dataclass, checked."""
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise ConfigError("checkpoint must be given: checkpoint=runs/distill/<name>/checkpoints/"
                          "last.ckpt (a speechbert-distill checkpoint)")
    run = OmegaConf.to_object(cfg)
    assert isinstance(run, SubnetSearchConfig)
    run.budget.validate()
    run.search.validate()
    run.data.validate()
    if run.threads < 1:
        raise ConfigError(f"threads must be >= 1; got {run.threads}")
    if run.budget.clock == "thread" and run.threads != 1:
        raise ConfigError(f"budget.clock=thread times one thread, so threads must be 1; got "
                          f"threads={run.threads} (use budget.clock=wall with more threads)")
    return run


def build_scorer(ckpt: SupernetCheckpoint, source: str, teacher_path: str | None,
                 data: ValidationConfig) -> SubnetScorer:
    """The scorer of ``ckpt``'s supernet: its loss settings and head, its teacher's targets."""
    hparams = ckpt.hyper_parameters
    teacher_path = teacher_path or hparams.get("teacher")
    if not teacher_path:
        raise ConfigError(f"{source}: no hyper_parameters['teacher']; pass teacher=<path>")
    loss_cfg = loss_config_from_hparams(hparams.get("loss") or {}, source)
    teacher = load_teacher(teacher_path)
    head = load_prediction_head(ckpt.head_state, ckpt.space.arch.encoder.embed_dim,
                                teacher.hidden_size, source)
    criterion = DistillCriterion(loss_cfg, head)
    batches = validation_batches(data.manifests, data.max_utterances, data.max_batch_seconds,
                                 data.min_samples, data.max_samples, data.seed)
    prepared = prepare_scoring_batches(criterion, teacher, batches, data.seed)
    log.info("validation: %d utterances in %d batches, teacher %s", sum(len(b) for b in batches),
             len(batches), teacher_path)
    return SubnetScorer(ckpt.supernet, criterion, prepared)


def subnet_latency(supernet: LightHubertSupernet,
                   budget: BudgetConfig) -> Callable[[SubnetConfig], float]:
    """Seconds of one forward pass of the extracted subnet (median of ``budget.repeats`` after
    ``budget.warmup``, on ``budget.clock``)."""
    return latency_meter(lambda s: extract_subnet(supernet, s).eval(), budget.seconds,
                         budget.repeats, budget.warmup, clock=CLOCKS[budget.clock])


def make_budget(space: SearchSpace, supernet: LightHubertSupernet,
                cfg: BudgetConfig) -> Budget:
    """The search's budget object for ``cfg``."""
    if cfg.latency_ms is not None:
        return LatencyBudget(cfg.latency_ms / 1000.0, subnet_latency(supernet, cfg), cfg.seconds)
    if cfg.params_fraction is not None:
        return ParamsBudget(int(cfg.params_fraction * count_params(space, space.max_subnet())))
    assert cfg.params is not None
    return ParamsBudget(cfg.params)


def check_feasible(space: SearchSpace, budget: Budget) -> None:
    """Raise :class:`ConfigError` before any work when not even the smallest subnet fits."""
    smallest = space.min_subnet()
    figure: float
    if isinstance(budget, ParamsBudget):
        figure = count_params(space, smallest)
        fits = figure <= budget.max_params
    else:
        figure = budget.measure(smallest)
        fits = figure <= budget.max_seconds
    if not fits:
        raise ConfigError(f"budget {budget.describe()} is below the smallest subnet of space "
                          f"{space.name!r} ({figure}); raise the budget")


def run_search(space: SearchSpace, evaluate: Callable[[SubnetConfig], float], budget: Budget,
               cfg: SearchConfig) -> SearchResult:
    """Random or evolutionary search, as ``cfg.method`` says."""
    rng = random.Random(cfg.seed)
    if cfg.method == "random":
        return random_search(space, evaluate, budget, cfg.n, rng)
    return evolutionary_search(space, evaluate, budget, cfg.population, cfg.generations,
                               cfg.mutate_prob, rng, cfg.parents)


def with_progress(evaluate: Callable[[SubnetConfig], float], bar: tqdm) -> Callable[
        [SubnetConfig], float]:
    """``evaluate`` advancing ``bar`` and showing the best loss so far."""
    best = [float("inf")]

    def scored(subnet: SubnetConfig) -> float:
        loss = evaluate(subnet)
        best[0] = min(best[0], loss)
        bar.update(1)
        bar.set_postfix(best=f"{best[0]:.4f}")
        return loss
    return scored


def search_report(result: SearchResult, space: SearchSpace, cfg: SubnetSearchConfig,
                  latency_s: float) -> dict[str, Any]:
    """search.json: the result with its latency in ms, MACs per second, and what it ran on."""
    report = json.loads(result.to_json())
    max_params = count_params(space, space.max_subnet())
    report.update({
        "checkpoint": cfg.checkpoint, "space": space.name,
        "budget_config": OmegaConf.to_container(OmegaConf.structured(cfg.budget)),
        "params_fraction_of_max": result.params / max_params, "max_subnet_params": max_params,
        "macs_per_second": result.macs / MACS_SECONDS,
        "latency_ms": 1000.0 * latency_s, "latency_seconds_of_audio": cfg.budget.seconds,
        "latency_clock": cfg.budget.clock,
        "threads": torch.get_num_threads()})
    return report


def run(cfg: DictConfig) -> dict[str, Any]:
    """Check the config, load everything, search, write subnet.json and search.json."""
    run_cfg = to_search_config(cfg)
    torch.set_num_threads(run_cfg.threads)
    ckpt = load_supernet(run_cfg.checkpoint)
    space, supernet = ckpt.space, ckpt.supernet
    budget = make_budget(space, supernet, run_cfg.budget)
    check_feasible(space, budget)
    scorer = build_scorer(ckpt, run_cfg.checkpoint, run_cfg.teacher, run_cfg.data)
    log.info("budget %s on space %r", budget.describe(), space.name)
    with tqdm(total=run_cfg.search.expected_evaluations(), desc="subnets scored",
              disable=not run_cfg.progress_bar) as bar:
        result = run_search(space, with_progress(scorer, bar), budget, run_cfg.search)
        bar.total = bar.n  # the search may stop early when no new in-budget subnet is found
        bar.refresh()
    latency = (result.latency if result.latency is not None
               else subnet_latency(supernet, run_cfg.budget)(result.subnet))
    out = Path(run_cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "subnet.json").write_text(json.dumps(result.subnet.to_dict(), indent=1) + "\n")
    report = search_report(result, space, run_cfg, latency)
    (out / "search.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return report


register_configs()


@hydra.main(config_path=CONFIG_DIR, config_name="subnet", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Entry point of ``speechbert-subnet`` (Hydra parses the command line)."""
    try:
        report = run(cfg)
    except SpeechbertError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        sys.exit(2)
    log.info("subnet %s: loss %.4f, %.3f M params (%.0f%% of max), %.1f ms on %.0f s of audio "
             "-> %s", json.dumps(report["subnet"]), report["loss"], report["params"] / 1e6,
             100 * report["params_fraction_of_max"], report["latency_ms"],
             report["latency_seconds_of_audio"], cfg.out)


if __name__ == "__main__":
    main()
