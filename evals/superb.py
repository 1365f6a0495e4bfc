"""SUPERB runner: score every upstream on every task and collect the records into results.json.

    python -m evals.superb --upstreams fbank hubert_mini_iter2 w2vbert_mini \\
        --tasks asr ks sv --out runs/demo/superb

Each upstream is a name in ``configs/upstream/`` or a YAML file of
:class:`~speechbert.models.load.UpstreamSpec` fields (name, kind, path, subnet). Each cell runs
``speechbert-superb`` in this process (same config, same run folder
``<out>/<upstream>/<task>/``); finished cells (``result.json`` present) are skipped, so a rerun
after an interruption continues where it stopped. ``<out>/results.json`` is a list of the cells'
records (see :mod:`speechbert.lightning.superb_run`), rewritten after every cell; a failed cell
is reported and the others still run (exit code 1 if any failed). Extra ``--override`` values
go to every cell (``task.optim.max_steps=50``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from speechbert.cli.superb import compose_config, run
from speechbert.errors import SpeechbertError

log = logging.getLogger("evals.superb")

RESULTS_FILE = "results.json"
"""The collected records in ``--out``."""
TASKS = ("asr", "ks", "sv")
"""Tasks of the ``task`` config group on the bundled corpus."""


def cell_overrides(upstream: str, task: str, out: str, extra: list[str]) -> tuple[list[str],
                                                                               str | None]:
    """Hydra overrides of one cell, and the upstream YAML file when ``upstream`` is a path."""
    is_file = upstream.endswith((".yaml", ".yml")) or "/" in upstream
    overrides = [f"task={task}", f"out={out}", "trainer.progress_bar=false", *extra]
    if not is_file:
        overrides.insert(0, f"upstream={upstream}")
    return overrides, upstream if is_file else None


def run_cells(upstreams: list[str], tasks: list[str], out: str, extra: list[str],
              results: Path | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Run (or skip) every cell; return the records and the failed cells' descriptions."""
    records: list[dict[str, Any]] = []
    failures: list[str] = []
    cells = [(u, t) for u in upstreams for t in tasks]
    for upstream, task in tqdm(cells, desc="SUPERB cells", unit="cell"):
        overrides, upstream_file = cell_overrides(upstream, task, out, extra)
        start = time.monotonic()
        try:
            record = run(compose_config(overrides, upstream_file))
        except SpeechbertError as exc:
            failures.append(f"{upstream} / {task}: {type(exc).__name__}: {exc}")
            log.error("%s", failures[-1])
            continue
        records.append(record)
        log.info("%s / %s: %s = %.4f (%.0f s)", record["upstream"], task, record["metric"],
                 record["value"], time.monotonic() - start)
        write_results(results or Path(out) / RESULTS_FILE, records)
    return records, failures


def write_results(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` to ``path`` (a JSON list) through a temporary file, so a reader never
    sees half a file; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstreams", nargs="+", required=True,
                        help="names in configs/upstream/ or UpstreamSpec YAML files")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS),
                        help="task configs (asr ks sv, or *_superb for the real corpora)")
    parser.add_argument("--out", default="runs/demo/superb",
                        help="root of the cells' run folders and results.json")
    parser.add_argument("--results", type=Path, default=None,
                        help="where to write the records (default <out>/results.json); grids "
                             "run side by side into one --out each write their own")
    parser.add_argument("--override", nargs="*", default=[],
                        help="Hydra overrides for every cell, e.g. task.optim.max_steps=50")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the grid; print where the results went; 1 if a cell failed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    results = args.results or Path(args.out) / RESULTS_FILE
    records, failures = run_cells(args.upstreams, args.tasks, args.out, args.override, results)
    path = write_results(results, records)
    print(f"{len(records)} cells -> {path}")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
