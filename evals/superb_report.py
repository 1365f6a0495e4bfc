"""SUPERB report: a table of every upstream's scores and plots of score vs size and layer weights.

    python -m evals.superb_report runs/demo/superb

Reads ``<dir>/results.json`` (the list of records :mod:`evals.superb` collects: ``upstream``,
``params``, ``macs_per_second``, ``task`` (asr/ks/sv), ``metric`` (wer/acc/eer), ``value`` (a
fraction), ``split``, ``layer_weights`` (a list, or null); other keys are ignored) and writes:

- ``<dir>/report.md``: one row per upstream, sorted by parameters: parameters (M), GMACs per
  second of audio, KS accuracy, SV EER and ASR WER (in %, on ``--split``); the best value of
  each column in bold (fewest parameters and MACs, highest accuracy, lowest error); a missing
  cell is ``-``. Below it, each task's Pareto front (no other upstream is both smaller and
  better) and the plots.
- ``<dir>/pareto_<task>.png``: score vs parameters (log scale), the Pareto front drawn as a line.
- ``<dir>/layer_weights_<upstream>.png``: the learned featurizer weights per layer, one panel per
  task (upstreams with weights only).

When an (upstream, task) pair has several records of the split, the last one counts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from speechbert.errors import ConfigError, SpeechbertError  # noqa: E402

RESULTS_FILE = "results.json"
"""The records file in the report folder."""
REPORT_FILE = "report.md"
"""The Markdown report written next to it."""


@dataclass(frozen=True)
class TaskSpec:
    """How one task is shown and which direction is better."""

    name: str
    """Task name in the records (``ks``, ``sv``, ``asr``)."""
    metric: str
    """Metric the records carry for it."""
    title: str
    """Column and plot title."""
    higher_is_better: bool
    """True for accuracy, False for error rates."""


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("ks", "acc", "KS acc (%)", higher_is_better=True),
    TaskSpec("sv", "eer", "SV EER (%)", higher_is_better=False),
    TaskSpec("asr", "wer", "ASR WER (%)", higher_is_better=False),
)
"""The report's tasks, in column order."""
TASK_BY_NAME = {t.name: t for t in TASKS}
SECONDARY: tuple[tuple[str, str, str], ...] = (("asr", "cer", "ASR CER (%)"),)
"""(task, key in a record's ``metrics``, column title): extra error rates shown after the tasks'
main metrics (CER tells short ASR runs apart while their WER is still near 100%)."""


@dataclass(frozen=True)
class Record:
    """One SUPERB cell's result."""

    upstream: str
    """Upstream name."""
    params: int
    """Upstream parameters."""
    macs_per_second: float
    """Upstream multiply-accumulates per second of audio."""
    task: str
    """``asr``, ``ks`` or ``sv``."""
    metric: str
    """``wer``, ``acc`` or ``eer``."""
    value: float
    """The metric, as a fraction."""
    split: str
    """Split it was measured on."""
    layer_weights: tuple[float, ...] | None
    """Learned featurizer weights, one per hidden state, or None."""
    metrics: tuple[tuple[str, float], ...] = ()
    """Other test metrics of the cell (``cer``, ``min_dcf``, ...), as (name, value) pairs."""

    def metric_value(self, name: str) -> float | None:
        """The cell's ``name`` metric (a fraction), or None when it has none."""
        return dict(self.metrics).get(name)


REQUIRED: dict[str, type | tuple[type, ...]] = {
    "upstream": str, "params": (int, float), "macs_per_second": (int, float), "task": str,
    "metric": str, "value": (int, float), "split": str}
"""Keys every record must have, with their JSON types."""


def parse_record(values: Any, where: str) -> Record:
    """A :class:`Record` from one JSON object; :class:`ConfigError` names ``where`` and the key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: a record must be an object; got {type(values).__name__}")
    for key, kind in REQUIRED.items():
        if not isinstance(values.get(key), kind) or isinstance(values.get(key), bool):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(f"{where}.{key} must be {names}; got {values.get(key)!r}")
    task = TASK_BY_NAME.get(values["task"])
    if task is None or task.metric != values["metric"]:
        pairs = [(t.name, t.metric) for t in TASKS]
        raise ConfigError(f"{where}: (task, metric) must be one of {pairs}; got "
                          f"({values['task']!r}, {values['metric']!r})")
    weights = values.get("layer_weights")
    if weights is not None and not (isinstance(weights, list)
                                    and all(isinstance(w, int | float) for w in weights)):
        raise ConfigError(f"{where}.layer_weights must be a list of numbers or null; "
                          f"got {weights!r}")
    extra = values.get("metrics") or {}
    metrics = tuple((str(k), float(v)) for k, v in sorted(extra.items())
                    if isinstance(v, int | float) and not isinstance(v, bool))
    return Record(values["upstream"], int(values["params"]), float(values["macs_per_second"]),
                  values["task"], values["metric"], float(values["value"]), values["split"],
                  None if weights is None else tuple(float(w) for w in weights), metrics)


def read_results(path: Path) -> list[Record]:
    """Every record of ``results.json``; errors name the file, the record index and the key."""
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run python -m evals.superb --out {path.parent}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(values, list):
        raise ConfigError(f"{path}: must hold a list of records; got {type(values).__name__}")
    return [parse_record(v, f"{path}[{i}]") for i, v in enumerate(values)]


@dataclass
class UpstreamRow:
    """One upstream's size and its score per task (None where there is no record)."""

    upstream: str
    """Upstream name."""
    params: int
    """Parameters."""
    macs_per_second: float
    """Multiply-accumulates per second of audio."""
    scores: dict[str, Record]
    """Task name -> its record on the chosen split."""


def upstream_rows(records: Sequence[Record], split: str) -> list[UpstreamRow]:
    """One row per upstream with a record on ``split``, sorted by parameters (then name)."""
    rows: dict[str, UpstreamRow] = {}
    for record in records:
        if record.split != split:
            continue
        row = rows.setdefault(record.upstream, UpstreamRow(record.upstream, record.params,
                                                           record.macs_per_second, {}))
        row.scores[record.task] = record
    return sorted(rows.values(), key=lambda r: (r.params, r.upstream))


def pareto_front(points: Sequence[tuple[str, float, float]],
                 higher_is_better: bool) -> list[str]:
    """Names of the (name, params, score) points no other point dominates (at most as large and
    at least as good, and strictly one of them), in order of size."""
    sign = 1.0 if higher_is_better else -1.0

    def dominates(a: tuple[str, float, float], b: tuple[str, float, float]) -> bool:
        no_worse = a[1] <= b[1] and sign * a[2] >= sign * b[2]
        return no_worse and (a[1] < b[1] or sign * a[2] > sign * b[2])

    front = [p for p in points if not any(dominates(q, p) for q in points if q is not p)]
    return [name for name, _, _ in sorted(front, key=lambda p: (p[1], p[0]))]


def task_points(rows: Sequence[UpstreamRow], task: str) -> list[tuple[str, float, float]]:
    """(upstream, params, score in %) of the rows with a record for ``task``."""
    return [(r.upstream, float(r.params), 100.0 * r.scores[task].value)
            for r in rows if task in r.scores]


def _best(values: list[float | None], higher_is_better: bool) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if higher_is_better else min(present)


def _cell(value: float | None, best: float | None, digits: int) -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return f"**{text}**" if value == best else text


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def markdown_table(rows: Sequence[UpstreamRow]) -> str:
    """The report's table: size columns, then one column per task; best in bold, gaps ``-``."""
    columns: list[tuple[str, list[float | None], bool, int]] = [
        ("Params (M)", [r.params / 1e6 for r in rows], False, 2),
        ("M MACs / s audio", [r.macs_per_second / 1e6 for r in rows], False, 1)]
    for task in TASKS:
        scores = [100.0 * r.scores[task.name].value if task.name in r.scores else None
                  for r in rows]
        columns.append((task.title, scores, task.higher_is_better, 2))
    for task_name, key, title in SECONDARY:
        extra = [_percent(r.scores[task_name].metric_value(key)) if task_name in r.scores
                 else None for r in rows]
        if any(v is not None for v in extra):
            columns.append((title, extra, False, 2))
    header = "| Upstream | " + " | ".join(c[0] for c in columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    lines = [header, rule]
    for i, row in enumerate(rows):
        cells = [_cell(values[i], _best(values, higher), digits)
                 for _, values, higher, digits in columns]
        lines.append(f"| {row.upstream} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


LABEL_OFFSETS = ((5, 6), (5, -13), (5, 18), (5, -25))
"""Label offsets (points) of the Pareto plot's upstreams, in turn by size: above, below,
higher, lower, so neighbours of similar size and score do not overprint."""


def plot_pareto(rows: Sequence[UpstreamRow], task: TaskSpec, path: Path) -> Path:
    """Score vs parameters of every upstream on ``task``, the Pareto front as a line."""
    points = task_points(rows, task.name)
    front = pareto_front(points, task.higher_is_better)
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (name, params, score) in enumerate(sorted(points, key=lambda p: (p[1], p[0]))):
        on_front = name in front
        ax.scatter(params / 1e6, score, color="tab:red" if on_front else "tab:blue", zorder=3)
        offset = LABEL_OFFSETS[i % len(LABEL_OFFSETS)]  # neighbours' labels kept apart
        ax.annotate(name, (params / 1e6, score), textcoords="offset points", xytext=offset,
                    fontsize=8)
    by_name = {name: (params, score) for name, params, score in points}
    xs = [by_name[n][0] / 1e6 for n in front]
    ax.step(xs, [by_name[n][1] for n in front], where="post", color="tab:red",
            label="Pareto front")
    ax.set_xscale("symlog", linthresh=0.01)  # log scale that also holds FBANK's 0 parameters
    ax.set_xlabel("parameters (M, log scale)")
    ax.set_ylabel(task.title + (" (higher is better)" if task.higher_is_better
                                else " (lower is better)"))
    ax.set_title(f"{task.name.upper()}: score vs size")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_layer_weights(row: UpstreamRow, path: Path) -> Path:
    """One bar panel per task of ``row``'s learned layer weights (an empty panel without)."""
    tasks = [t for t in TASKS if t.name in row.scores]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 2.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        weights = row.scores[task.name].layer_weights
        if weights is None:
            ax.text(0.5, 0.5, "no layer weights", ha="center", va="center",
                    transform=ax.transAxes)
        else:
            ax.bar(range(len(weights)), weights, color="tab:green")
            ax.set_xlabel("hidden state (0 = first layer's input)")
        ax.set_title(task.name.upper())
    axes[0][0].set_ylabel("weight")
    fig.suptitle(f"{row.upstream}: learned layer weights")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def safe_name(name: str) -> str:
    """``name`` usable as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_plots(rows: Sequence[UpstreamRow], folder: Path) -> list[Path]:
    """The Pareto plots (tasks with records) and the layer-weight plots (upstreams with layer
    weights in any task; FBANK has none)."""
    written = [plot_pareto(rows, task, folder / f"pareto_{task.name}.png")
               for task in TASKS if task_points(rows, task.name)]
    written += [plot_layer_weights(row, folder / f"layer_weights_{safe_name(row.upstream)}.png")
                for row in rows
                if any(r.layer_weights is not None for r in row.scores.values())]
    return written


def report_markdown(rows: Sequence[UpstreamRow], split: str, plots: Sequence[Path]) -> str:
    """The whole report.md text: table, Pareto fronts, plots."""
    lines = [f"# SUPERB report ({split} split)", "",
             "Scores in %; best per column in bold (fewest parameters and MACs, highest "
             "accuracy, lowest error rate); `-`: no result. Sorted by parameters.", "",
             markdown_table(rows), "", "## Pareto fronts (no upstream both smaller and better)",
             ""]
    for task in TASKS:
        front = pareto_front(task_points(rows, task.name), task.higher_is_better)
        lines.append(f"- {task.title}: {', '.join(front) if front else '-'}")
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(folder: Path, split: str = "test") -> Path:
    """Read ``<folder>/results.json``, write report.md and the plots; return report.md's path."""
    rows = upstream_rows(read_results(folder / RESULTS_FILE), split)
    if not rows:
        raise ConfigError(f"{folder / RESULTS_FILE}: no record on split {split!r}; pass "
                          f"--split with one of the records' splits")
    plots = write_plots(rows, folder)
    path = folder / REPORT_FILE
    path.write_text(report_markdown(rows, split, plots), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: write the report of one results folder; exit code 2 on a bad results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder holding results.json")
    parser.add_argument("--split", default="test", help="split whose records are reported")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.folder, args.split)
    except SpeechbertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
