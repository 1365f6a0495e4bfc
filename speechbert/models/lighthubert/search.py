"""Find the subnet with the lowest loss within a parameter or latency budget.

``evaluate(subnet) -> float`` is the caller's loss (e.g. the validation distillation loss of the
supernet at that subnet); it is called at most once per subnet (results are cached by the
hashable :class:`SubnetConfig`). The budget is checked **before** a candidate is evaluated, so
no over-budget subnet is ever scored or returned:

* :class:`ParamsBudget`: exact, with :func:`~speechbert.models.lighthubert.space.count_params`.
* :class:`LatencyBudget`: ``measure(subnet) -> seconds`` (see :func:`latency_meter`), measured
  once per candidate; the winner is measured again at the end and, if that measurement is over
  the budget (timing noise), the next best candidate is tried, so the reported latency is a
  fresh measurement within the budget.

:func:`random_search` scores ``n`` distinct in-budget samples. :func:`evolutionary_search`
(as OFA / HAT / LightHuBERT) starts from ``population`` random in-budget subnets and, for
``generations`` rounds, keeps the ``parents`` best and refills the population with children made
by mutation (:meth:`SearchSpace.mutate`) and crossover (:meth:`SearchSpace.crossover`) of
parents, rejecting over-budget and already-scored children.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from speechbert.audio import SAMPLE_RATE
from speechbert.data.frames import conv_frame_count
from speechbert.errors import ConfigError
from speechbert.models.lighthubert.space import SearchSpace, count_macs, count_params
from speechbert.nn.elastic import SubnetConfig

Evaluate = Callable[[SubnetConfig], float]
"""The caller's loss of a subnet (lower is better)."""

MACS_SECONDS = 10.0
"""Audio length the reported MACs are counted for."""


@dataclass(frozen=True)
class ParamsBudget:
    """At most ``max_params`` parameters (conv front end included, as ``count_params``)."""

    max_params: int
    """Largest parameter count allowed."""

    def describe(self) -> dict[str, Any]:
        """JSON form."""
        return {"kind": "params", "max_params": self.max_params}


@dataclass(frozen=True)
class LatencyBudget:
    """At most ``max_seconds`` per forward pass, as ``measure`` times it on this machine."""

    max_seconds: float
    """Largest latency allowed, in seconds."""
    measure: Callable[[SubnetConfig], float]
    """Seconds one forward pass of a subnet takes (e.g. :func:`latency_meter`)."""
    seconds_of_audio: float = 10.0
    """Audio length ``measure`` times (for the record; the meter decides)."""

    def describe(self) -> dict[str, Any]:
        """JSON form."""
        return {"kind": "latency", "max_seconds": self.max_seconds,
                "seconds_of_audio": self.seconds_of_audio}


Budget = ParamsBudget | LatencyBudget
"""A parameter or a latency budget."""


def measure_latency(model: Callable[[torch.Tensor, torch.Tensor], Any], seconds_of_audio: float,
                    repeats: int, warmup: int = 1,
                    device: torch.device | str | None = None,
                    clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds of ``model(wavs, lengths)`` on one ``seconds_of_audio`` utterance.

    Runs ``warmup`` untimed passes, then ``repeats`` timed ones, under ``torch.inference_mode``
    on ``device`` (default: where the model's parameters are, else the CPU). ``clock`` is wall
    time by default; ``time.thread_time`` (CPU time of this thread) is steadier on a shared
    machine and equals the wall time of an unloaded one when torch runs on one thread.
    """
    if repeats < 1:
        raise ConfigError(f"measure_latency repeats must be >= 1; got {repeats}")
    if device is None:
        params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
        device = params[0].device if params else torch.device("cpu")
    samples = int(seconds_of_audio * SAMPLE_RATE)
    wavs = 0.1 * torch.randn(1, samples, generator=torch.Generator().manual_seed(0))
    wavs, lengths = wavs.to(device), torch.tensor([samples], device=device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = clock()
            model(wavs, lengths)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(clock() - start)
    return statistics.median(times)


def latency_meter(model_at: Callable[[SubnetConfig], Callable[[torch.Tensor, torch.Tensor], Any]],
                  seconds_of_audio: float = 10.0, repeats: int = 5, warmup: int = 1,
                  clock: Callable[[], float] = time.perf_counter
                  ) -> Callable[[SubnetConfig], float]:
    """A ``measure`` for :class:`LatencyBudget`: times ``model_at(subnet)`` (e.g.
    ``lambda s: extract_subnet(supernet, s).eval()``) with :func:`measure_latency`."""
    def measure(subnet: SubnetConfig) -> float:
        return measure_latency(model_at(subnet), seconds_of_audio, repeats, warmup, clock=clock)
    return measure


@dataclass
class Candidate:
    """One evaluated subnet."""

    subnet: SubnetConfig
    """The subnet."""
    loss: float
    """``evaluate(subnet)``."""
    params: int
    """Exact parameter count."""
    latency: float | None = None
    """Measured seconds (latency budgets only)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"subnet": self.subnet.to_dict(), "loss": self.loss, "params": self.params,
                "latency": self.latency}


@dataclass
class SearchResult:
    """The best subnet within the budget, its figures, and every candidate scored."""

    subnet: SubnetConfig
    """The winner."""
    loss: float
    """Its loss."""
    params: int
    """Its exact parameter count."""
    macs: int
    """Its multiply-accumulates for :data:`MACS_SECONDS` of audio."""
    latency: float | None
    """Its latency re-measured at the end (latency budgets), else None."""
    method: str
    """``random`` or ``evolutionary``."""
    budget: dict[str, Any]
    """The budget, as JSON."""
    history: list[Candidate] = field(default_factory=list)
    """Every evaluated candidate, in order."""

    @property
    def evaluations(self) -> int:
        """Number of distinct subnets evaluated."""
        return len(self.history)

    def to_json(self, path: str | Path | None = None) -> str:
        """All of it as JSON text; also written to ``path`` when given."""
        text = json.dumps({
            "method": self.method, "budget": self.budget, "subnet": self.subnet.to_dict(),
            "loss": self.loss, "params": self.params, "macs": self.macs,
            "macs_seconds_of_audio": MACS_SECONDS, "latency": self.latency,
            "evaluations": self.evaluations, "history": [c.to_dict() for c in self.history],
        }, indent=1)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text


class _Scorer:
    """Budget gate and evaluation cache shared by both searches."""

    def __init__(self, space: SearchSpace, evaluate: Evaluate, budget: Budget) -> None:
        self.space, self.evaluate, self.budget = space, evaluate, budget
        self.scored: dict[SubnetConfig, Candidate] = {}
        self.latencies: dict[SubnetConfig, float] = {}
        self.history: list[Candidate] = []
        self._check_feasible()

    def _check_feasible(self) -> None:
        smallest = self.space.min_subnet()
        if not self.fits(smallest):
            figure = (count_params(self.space, smallest) if isinstance(self.budget, ParamsBudget)
                      else self.latencies[smallest])
            raise ConfigError(f"budget {self.budget.describe()} is below the smallest subnet of "
                              f"space {self.space.name!r} ({figure}); raise the budget")

    def fits(self, subnet: SubnetConfig) -> bool:
        """Whether ``subnet`` is within the budget (latency measured once and cached)."""
        if isinstance(self.budget, ParamsBudget):
            return count_params(self.space, subnet) <= self.budget.max_params
        if subnet not in self.latencies:
            self.latencies[subnet] = self.budget.measure(subnet)
        return self.latencies[subnet] <= self.budget.max_seconds

    def score(self, subnet: SubnetConfig) -> Candidate:
        """Evaluate an in-budget subnet once; later calls return the cached candidate."""
        if subnet not in self.scored:
            assert self.fits(subnet), "over-budget subnets are never evaluated"
            candidate = Candidate(subnet, float(self.evaluate(subnet)),
                                  count_params(self.space, subnet), self.latencies.get(subnet))
            self.scored[subnet] = candidate
            self.history.append(candidate)
        return self.scored[subnet]

    def result(self, method: str) -> SearchResult:
        """The best candidate; for latency budgets, the best whose fresh re-measure fits."""
        ranked = sorted(self.history, key=lambda c: c.loss)
        for best in ranked:
            latency = None
            if isinstance(self.budget, LatencyBudget):
                latency = self.budget.measure(best.subnet)
                if latency > self.budget.max_seconds:
                    continue
            frames = conv_frame_count(int(MACS_SECONDS * SAMPLE_RATE))
            return SearchResult(best.subnet, best.loss, best.params,
                                count_macs(self.space, best.subnet, frames), latency, method,
                                self.budget.describe(), list(self.history))
        raise ConfigError(f"no evaluated subnet stayed within {self.budget.describe()} when "
                          f"re-measured; raise the budget or the number of repeats")


def _draw_in_budget(scorer: _Scorer, draw: Callable[[], SubnetConfig],
                    attempts: int) -> SubnetConfig | None:
    """A not-yet-scored, in-budget subnet from ``draw``, or None after ``attempts`` tries."""
    for _ in range(attempts):
        subnet = draw()
        if subnet not in scorer.scored and scorer.fits(subnet):
            return subnet
    return None


def random_search(space: SearchSpace, evaluate: Evaluate, budget: Budget, n: int,
                  rng: random.Random, max_attempts: int = 100) -> SearchResult:
    """Evaluate ``n`` distinct in-budget subnets sampled uniformly from ``space``; the best wins.

    Stops early if ``max_attempts`` draws in a row give nothing new within the budget.
    """
    if n < 1:
        raise ConfigError(f"random_search n must be >= 1; got {n}")
    scorer = _Scorer(space, evaluate, budget)
    while len(scorer.history) < n:
        subnet = _draw_in_budget(scorer, lambda: space.sample(rng), max_attempts)
        if subnet is None:
            break
        scorer.score(subnet)
    if not scorer.history:
        scorer.score(space.min_subnet())  # feasible, checked above
    return scorer.result("random")


def _child(space: SearchSpace, parents: list[SubnetConfig], rng: random.Random,
           mutate_prob: float, index: int) -> SubnetConfig:
    """Child ``index`` of a generation: even ones cross two parents over, odd ones mutate one."""
    if index % 2 == 0 and len(parents) > 1:
        a, b = rng.sample(parents, 2)
        return space.crossover(a, b, rng)
    return space.mutate(rng.choice(parents), rng, mutate_prob)


def evolutionary_search(space: SearchSpace, evaluate: Evaluate, budget: Budget, population: int,
                        generations: int, mutate_prob: float, rng: random.Random,
                        parents: int | None = None, max_attempts: int = 100) -> SearchResult:
    """Evolve ``population`` in-budget subnets for ``generations`` rounds (module docstring).

    ``parents`` (default ``population // 4``, at least 2 when possible) survive each round;
    the children are alternately crossovers and mutations (each choice redrawn with
    ``mutate_prob``).
    Evaluations: about ``population x (1 + generations x (1 - parents / population))``.
    """
    if population < 2 or generations < 0:
        raise ConfigError(f"evolutionary_search needs population >= 2 and generations >= 0; "
                          f"got {population} and {generations}")
    keep = min(population - 1, max(2, population // 4)) if parents is None else parents
    if not 1 <= keep < population:
        raise ConfigError(f"evolutionary_search parents must be in [1, {population - 1}]; "
                          f"got {keep}")
    scorer = _Scorer(space, evaluate, budget)
    current = _fill(scorer, [], population, lambda _: space.sample(rng), max_attempts)
    for _ in range(generations):
        best = sorted(current, key=lambda s: scorer.score(s).loss)[:keep]
        current = _fill(scorer, best, population,
                        partial(_child, space, best, rng, mutate_prob), max_attempts)
    if not scorer.history:
        scorer.score(space.min_subnet())
    return scorer.result("evolutionary")


def _fill(scorer: _Scorer, members: list[SubnetConfig], size: int,
          draw: Callable[[int], SubnetConfig], max_attempts: int) -> list[SubnetConfig]:
    """``members`` topped up to ``size`` with new in-budget subnets from ``draw(i)``, scored."""
    members = list(members)
    while len(members) < size:
        subnet = _draw_in_budget(scorer, partial(draw, len(members)), max_attempts)
        if subnet is None:
            break
        scorer.score(subnet)
        members.append(subnet)
    return members
