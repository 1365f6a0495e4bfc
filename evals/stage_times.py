"""Wall time of each stage of a pipeline run (``make demo``), recorded and tabulated.

    python -m evals.stage_times run --log runs/demo/stage_times.tsv --stage teacher -- \\
        speechbert-pretrain experiment=hubert_mini_iter1
    python -m evals.stage_times table runs/demo/stage_times.tsv

``run`` executes the command after ``--`` (output passes through), then appends one line
``stage<TAB>seconds<TAB>exit code<TAB>finished at (UTC)`` to the log, and exits with the
command's exit code. A stage run again (a rerun after an interruption) gets a new line; ``table``
prints the latest line of each stage, in first-run order, and the total as a Markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def run_stage(log: Path, stage: str, command: list[str]) -> int:
    """Run ``command``, append its wall time to ``log``, return its exit code."""
    if not command:
        raise SystemExit("stage_times run: give the command after --")
    start = time.perf_counter()
    code = subprocess.call(command)
    seconds = time.perf_counter() - start
    log.parent.mkdir(parents=True, exist_ok=True)
    finished = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with log.open("a", encoding="utf-8") as f:
        f.write(f"{stage}\t{seconds:.1f}\t{code}\t{finished}\n")
    return code


def latest_times(log: Path) -> dict[str, tuple[float, int]]:
    """Stage -> (seconds, exit code) of its latest line, in the order stages first appear."""
    times: dict[str, tuple[float, int]] = {}
    for number, line in enumerate(log.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 4:
            raise SystemExit(f"{log}:{number}: expected 4 tab-separated fields, got {line!r}")
        times[parts[0]] = (float(parts[1]), int(parts[2]))
    return times


def markdown_table(times: dict[str, tuple[float, int]]) -> str:
    """A Markdown table of stage wall times (minutes:seconds) with the total."""
    rows = ["| stage | wall time | status |", "|---|---:|---|"]
    for stage, (seconds, code) in times.items():
        rows.append(f"| {stage} | {_clock(seconds)} | {'ok' if code == 0 else f'exit {code}'} |")
    total = sum(seconds for seconds, _ in times.values())
    rows.append(f"| **total** | **{_clock(total)}** | |")
    return "\n".join(rows) + "\n"


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``run`` a timed stage or print the ``table`` of a log."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run a command and record its wall time")
    run.add_argument("--log", type=Path, required=True, help="TSV log to append to")
    run.add_argument("--stage", required=True, help="stage name")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- command and arguments")
    table = sub.add_parser("table", help="print the latest time of each stage")
    table.add_argument("log", type=Path, help="TSV log written by run")
    args = parser.parse_args(argv)
    if args.action == "run":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        return run_stage(args.log, args.stage, command)
    if not args.log.is_file():
        print(f"{args.log}: no stage times recorded yet", file=sys.stderr)
        return 1
    print(markdown_table(latest_times(args.log)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
