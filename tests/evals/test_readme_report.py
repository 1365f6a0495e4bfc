"""The README's demo block is regenerated from the demo's files, between its markers only."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.readme_report import END, START, main, replace_block


def _demo(root: Path) -> Path:
    demo = root / "runs" / "demo"
    (demo / "superb").mkdir(parents=True)
    (demo / "superb" / "report.md").write_text(
        "# SUPERB report\n\nintro\n\n| Upstream | KS |\n|---|---:|\n| fbank | 3.0 |\n\nafter\n")
    (demo / "superb" / "pareto_ks.png").write_bytes(b"png")
    (demo / "stage_times.tsv").write_text("teacher\t90.0\t0\tT\n")
    return demo


def test_block_holds_table_times_and_copied_plot(tmp_path: Path) -> None:
    demo = _demo(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n{START}\nold text\n{END}\n## next\n")
    assert main(["--demo", str(demo), "--readme", str(readme),
                 "--assets", str(tmp_path / "docs" / "demo")]) == 0
    text = readme.read_text()
    assert text.startswith("# top\n") and text.endswith(f"{END}\n## next\n")
    assert "old text" not in text and "intro" not in text and "after" not in text
    assert "| Upstream | KS |\n|---|---:|\n| fbank | 3.0 |\n" in text
    assert "| teacher | 1:30.0 | ok |" in text
    assert "![pareto_ks](docs/demo/pareto_ks.png)" in text
    assert (tmp_path / "docs" / "demo" / "pareto_ks.png").read_bytes() == b"png"


def test_missing_markers_name_the_file() -> None:
    with pytest.raises(SystemExit, match="README.md: needs exactly one"):
        replace_block("no markers", "x", "README.md")
