"""The SUPERB grid runner: cells by name or spec file, results.json, finished cells skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.superb import cell_overrides, main
from tests.lightning.superb_corpus import write_keyword_manifests

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cell_overrides_tell_names_from_files() -> None:
    overrides, spec = cell_overrides("fbank", "ks", "out", ["seed=1"])
    assert overrides[:2] == ["upstream=fbank", "task=ks"] and spec is None
    assert overrides[-1] == "seed=1"
    overrides, spec = cell_overrides("specs/mine.yaml", "sv", "out", [])
    assert spec == "specs/mine.yaml" and not any(o.startswith("upstream=") for o in overrides)


def test_grid_writes_results_and_skips_finished_cells(tmp_path: Path) -> None:
    manifests = write_keyword_manifests(tmp_path / "corpus")
    spec = tmp_path / "fbank240.yaml"
    spec.write_text("name: fbank240\nkind: fbank\nfbank_delta_order: 2\n")
    out = tmp_path / "superb"
    argv = ["--upstreams", "fbank", str(spec), "--tasks", "ks", "--out", str(out),
            "--override", f"task.train_manifest={manifests['train']}",
            f"task.valid_manifest={manifests['valid']}",
            f"task.test_manifest={manifests['test']}", "task.optim.max_steps=2",
            "task.optim.warmup_steps=1", "task.val_every_n_steps=2",
            f"cache_dir={tmp_path / 'cache'}"]
    assert main(argv) == 0
    records = json.loads((out / "results.json").read_text())
    assert [(r["upstream"], r["task"], r["metric"]) for r in records] == [
        ("fbank", "ks", "acc"), ("fbank240", "ks", "acc")]
    assert (out / "fbank240" / "ks" / "result.json").is_file()
    assert main(argv) == 0  # finished cells are read back, not retrained
    assert json.loads((out / "results.json").read_text()) == records
