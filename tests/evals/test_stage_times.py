"""Stage timing of the demo: the wrapper passes the exit code through and the table is right."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from evals.stage_times import latest_times, main, markdown_table


def test_run_records_time_and_exit_code(tmp_path: Path) -> None:
    log = tmp_path / "times.tsv"
    assert main(["run", "--log", str(log), "--stage", "ok", "--",
                 sys.executable, "-c", "pass"]) == 0
    assert main(["run", "--log", str(log), "--stage", "bad", "--",
                 sys.executable, "-c", "raise SystemExit(3)"]) == 3
    times = latest_times(log)
    assert list(times) == ["ok", "bad"]
    assert times["bad"][1] == 3 and times["ok"][0] >= 0


def test_table_keeps_latest_line_per_stage_in_first_order(tmp_path: Path) -> None:
    log = tmp_path / "times.tsv"
    log.write_text("a\t61.0\t1\tT\nb\t2.5\t0\tT\na\t65.5\t0\tT\n")
    table = markdown_table(latest_times(log))
    assert table.splitlines()[2:] == ["| a | 1:05.5 | ok |", "| b | 0:02.5 | ok |",
                                      "| **total** | **1:08.0** | |"]


def test_bad_log_line_names_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "times.tsv"
    log.write_text("a\t1.0\t0\tT\nbroken\n")
    with pytest.raises(SystemExit, match=r"times.tsv:2: expected 4"):
        latest_times(log)
