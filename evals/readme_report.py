"""Put the demo's SUPERB table, stage times and plots into the README, regenerated, never typed.

    python -m evals.readme_report --demo runs/demo --readme README.md --assets docs/demo

Copies the report's plots (``pareto_*.png``) into ``--assets`` (committed, unlike ``runs/``) and
replaces the README text between the ``<!-- demo-report:start -->`` and
``<!-- demo-report:end -->`` markers with: the SUPERB table of ``<demo>/superb/report.md``, the
stage wall times of ``<demo>/stage_times.tsv`` and links to the copied plots. ``make demo`` runs
it last, so the README always shows what the latest demo measured.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from evals.stage_times import latest_times, markdown_table

START = "<!-- demo-report:start -->"
"""Marker line opening the generated block."""
END = "<!-- demo-report:end -->"
"""Marker line closing the generated block."""


def report_table(report: Path) -> str:
    """The Markdown table lines of a ``report.md`` (the first block of ``|`` lines)."""
    lines = report.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        raise SystemExit(f"{report}: no table found; regenerate it with evals.superb_report")
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return "\n".join(table) + "\n"


def copy_plots(superb: Path, assets: Path) -> list[Path]:
    """Copy ``<superb>/pareto_*.png`` into ``assets``; return the copies, sorted."""
    assets.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(png, assets / png.name))
            for png in sorted(superb.glob("pareto_*.png"))]


def generated_block(demo: Path, readme: Path, assets: Path) -> str:
    """The text between the markers: table, stage times, plot links relative to ``readme``."""
    superb = demo / "superb"
    plots = copy_plots(superb, assets)
    base = readme.resolve().parent
    links = " ".join(f"![{p.stem}]({p.resolve().relative_to(base).as_posix()})" for p in plots)
    return (f"SUPERB on the bundled corpus (test split; `{superb}/report.md`):\n\n"
            f"{report_table(superb / 'report.md')}\n"
            f"Wall time per stage (`{demo}/stage_times.tsv`; stages run two at a time, so the "
            f"total is more than the elapsed time):\n\n"
            f"{markdown_table(latest_times(demo / 'stage_times.tsv'))}\n{links}\n")


def replace_block(text: str, block: str, source: str) -> str:
    """``text`` with the lines between :data:`START` and :data:`END` replaced by ``block``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"{source}: needs exactly one {START} line followed by one {END} line")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: regenerate the README's demo block."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="demo run folder")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="README to edit")
    parser.add_argument("--assets", type=Path, default=Path("docs/demo"),
                        help="folder (committed) the plots are copied into")
    args = parser.parse_args(argv)
    block = generated_block(args.demo, args.readme, args.assets)
    text = args.readme.read_text(encoding="utf-8")
    args.readme.write_text(replace_block(text, block, str(args.readme)), encoding="utf-8")
    print(f"{args.readme}: demo block regenerated from {args.demo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
