"""``speechbert-subnet`` end to end on a tiny distillation checkpoint and a slice of the bundled
corpus: the chosen subnet is within the budget (parameters exactly; latency again within 10% when
re-measured), its reported loss is the scorer's, and the outputs say what was searched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from speechbert.cli.subnet import CONFIG_DIR, BudgetConfig, SearchConfig, run, subnet_latency
from speechbert.errors import ConfigError
from speechbert.losses.distill import DistillCriterion
from speechbert.losses.distill_score import (
    SubnetScorer,
    load_prediction_head,
    prepare_scoring_batches,
    validation_batches,
)
from speechbert.models.hubert.convert import load_teacher
from speechbert.models.lighthubert.checkpoint import load_supernet
from speechbert.models.lighthubert.space import count_params, tiny
from speechbert.nn.elastic import SubnetConfig
from tests.cli.run_cli import REPO
from tests.cli.supernet_checkpoint import LOSS, write_supernet_checkpoint, write_teacher

LATENCY_SECONDS = 4.0
"""Audio the latency budget is measured on (long enough for a steady few-ms figure)."""
REPEATS = 15
"""Timed runs per latency measurement."""


def run_subnet(*overrides: str) -> subprocess.CompletedProcess[str]:
    """``python -m speechbert.cli.subnet <overrides>`` from the repo root, output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "speechbert.cli.subnet", *overrides], cwd=REPO,
                          capture_output=True, text=True, timeout=240, env=env)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr




@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny stage-2 distillation checkpoint."""
    root = tmp_path_factory.mktemp("subnet")
    return write_supernet_checkpoint(root / "last.ckpt", write_teacher(root / "teacher.ckpt"))


def _common(checkpoint: Path, mini_slice: dict[str, str], out: Path) -> list[str]:
    return [f"checkpoint={checkpoint}", f"out={out}", f"data.manifests=[{mini_slice['valid']}]",
            "data.max_utterances=6", "data.max_batch_seconds=12", "progress_bar=false",
            f"budget.seconds={LATENCY_SECONDS}", f"budget.repeats={REPEATS}"]


def _rescored(checkpoint: Path, mini_slice: dict[str, str], subnet: SubnetConfig) -> float:
    """The subnet's loss from a scorer built here, on the CLI's validation settings."""
    ckpt = load_supernet(checkpoint)
    teacher = load_teacher(ckpt.hyper_parameters["teacher"])
    head = load_prediction_head(ckpt.head_state, 128, teacher.hidden_size, "test")
    criterion = DistillCriterion(LOSS, head)
    batches = validation_batches([mini_slice["valid"]], 6, 12.0, 32_000, 80_000, seed=0)
    return SubnetScorer(ckpt.supernet, criterion,
                        prepare_scoring_batches(criterion, teacher, batches, seed=0))(subnet)


@pytest.mark.slow
@pytest.mark.corpus
def test_params_budget_is_never_exceeded_and_the_loss_is_the_scorers(
        checkpoint: Path, mini_slice: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "half"
    _ok(run_subnet(*_common(checkpoint, mini_slice, out), "budget.params_fraction=0.5",
                   "search.method=evolutionary", "search.population=6", "search.generations=2"))
    subnet = SubnetConfig.from_json((out / "subnet.json").read_text())
    report = json.loads((out / "search.json").read_text())
    space = tiny()
    space.check_subnet(subnet)
    limit = int(0.5 * count_params(space, space.max_subnet()))
    assert report["budget"] == {"kind": "params", "max_params": limit}
    assert report["params"] == count_params(space, subnet) <= limit
    assert all(c["params"] <= limit for c in report["history"]) and len(report["history"]) >= 6
    assert report["loss"] == min(c["loss"] for c in report["history"])
    assert report["macs"] > 0 and report["latency_ms"] > 0 and report["threads"] == 1
    assert _rescored(checkpoint, mini_slice, subnet) == pytest.approx(report["loss"], rel=1e-5)


def _run_in_process(*overrides: str) -> dict[str, object]:
    """The CLI's ``run`` on the composed config, in this process (so the latency figures of the
    search and of the re-measure come from the same process, minutes apart at most)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return run(compose(config_name="subnet", overrides=list(overrides)))


@pytest.mark.slow
@pytest.mark.corpus
def test_latency_budget_holds_when_the_chosen_subnet_is_measured_again(
        checkpoint: Path, mini_slice: dict[str, str], tmp_path: Path,
        one_thread: None) -> None:
    supernet, space = load_supernet(checkpoint).supernet, tiny()
    measure = subnet_latency(supernet, BudgetConfig(seconds=LATENCY_SECONDS, repeats=REPEATS))
    # the slowest of three readings of the smallest subnet and the fastest of the largest: on
    # the tiny space they are only about 1.3x apart and one reading can be 25% off (CI saw the
    # smallest at 10.1 ms here and 12.6 ms in the search's own feasibility check)
    fastest = max(measure(space.min_subnet()) for _ in range(3))
    slowest = min(measure(space.max_subnet()) for _ in range(3))
    # halfway between the smallest and the largest subnet, and clear of the smallest's noise
    budget_s = max((fastest + slowest) / 2, 1.4 * fastest)
    report = _run_in_process(*_common(checkpoint, mini_slice, tmp_path / "latency"),
                             f"budget.latency_ms={1000 * budget_s}", "search.method=random",
                             "search.n=6")
    assert report["budget"]["kind"] == "latency"  # type: ignore[index]
    assert report["latency"] <= budget_s  # type: ignore[operator]
    history = report["history"]
    assert isinstance(history, list) and all(c["latency"] <= budget_s for c in history)
    chosen = SubnetConfig.from_dict(report["subnet"])  # type: ignore[arg-type]
    again = min(measure(chosen) for _ in range(3))  # best of three medians: other processes
    assert again <= 1.10 * budget_s, (again, budget_s, report["latency"])


def test_budget_and_search_settings_are_checked_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="exactly one of .*got none"):
        BudgetConfig().validate()
    with pytest.raises(ConfigError, match=r"exactly one of .*\['params', 'latency_ms'\]"):
        BudgetConfig(params=10, latency_ms=5.0).validate()
    with pytest.raises(ConfigError, match=r"budget.params_fraction must be in \(0, 1\]; got 1.5"):
        BudgetConfig(params_fraction=1.5).validate()
    with pytest.raises(ConfigError, match="search.method must be one of"):
        SearchConfig(method="grid").validate()
    assert SearchConfig(population=8, generations=2).expected_evaluations() == 8 + 2 * 6


@pytest.mark.slow
def test_an_unreachable_budget_fails_before_loading_data(checkpoint: Path, tmp_path: Path) -> None:
    result = run_subnet(f"checkpoint={checkpoint}", f"out={tmp_path / 'o'}", "budget.params=1000",
                        f"data.manifests=[{tmp_path / 'missing.tsv'}]", "progress_bar=false")
    assert result.returncode == 2
    assert "below the smallest subnet of space 'tiny'" in result.stdout + result.stderr
