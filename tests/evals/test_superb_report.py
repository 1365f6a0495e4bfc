"""The SUPERB report on a hand-made results.json: table cells, best marks, gaps, Pareto fronts,
plots, and errors naming the bad record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evals.superb_report import main, pareto_front, read_results, upstream_rows, write_report
from speechbert.errors import ConfigError


def _rec(upstream: str, params: int, task: str, value: float, split: str = "test",
         weights: list[float] | None = None) -> dict[str, Any]:
    metric = {"ks": "acc", "sv": "eer", "asr": "wer"}[task]
    return {"upstream": upstream, "params": params, "macs_per_second": params * 100.0,
            "task": task, "metric": metric, "value": value, "split": split,
            "layer_weights": weights, "kind": "ignored", "steps": 3}


RECORDS = [
    _rec("big", 90_000_000, "ks", 0.90, weights=[0.1, 0.2, 0.7]),
    _rec("big", 90_000_000, "sv", 0.18, weights=[0.5, 0.3, 0.2]),
    {**_rec("big", 90_000_000, "asr", 0.30, weights=[0.2, 0.2, 0.6]),
     "metrics": {"cer": 0.12, "note": "text is ignored"}},
    _rec("fbank", 0, "ks", 0.60),
    _rec("fbank", 0, "sv", 0.30),
    _rec("fbank", 0, "asr", 0.95),
    _rec("mid", 20_000_000, "ks", 0.75, weights=[0.3, 0.3, 0.4]),
    _rec("mid", 20_000_000, "sv", 0.15, weights=[0.6, 0.2, 0.2]),
    {**_rec("mid", 20_000_000, "asr", 0.40, weights=[0.1, 0.1, 0.8]), "metrics": {"cer": 0.2}},
    _rec("small", 5_000_000, "ks", 0.50),  # replaced by the later record of the same split
    _rec("small", 5_000_000, "ks", 0.80, weights=[0.4, 0.6]),
    _rec("small", 5_000_000, "sv", 0.20, weights=[0.5, 0.5]),
    _rec("small", 5_000_000, "asr", 0.10, split="dev"),  # another split: not in the table
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A results folder with :data:`RECORDS`."""
    (tmp_path / "results.json").write_text(json.dumps(RECORDS))
    return tmp_path


def test_table_rows_cells_best_marks_and_gaps(folder: Path) -> None:
    text = write_report(folder).read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == ("| Upstream | Params (M) | M MACs / s audio | KS acc (%) | SV EER (%) | "
                        "ASR WER (%) | ASR CER (%) |")
    assert [line.split(" | ")[0] for line in table[1:]] == ["| fbank", "| small", "| mid",
                                                            "| big"]  # sorted by params
    assert table[1] == "| fbank | **0.00** | **0.0** | 60.00 | 30.00 | 95.00 | - |"
    assert table[2] == "| small | 5.00 | 500.0 | 80.00 | 20.00 | - | - |"
    assert table[3] == "| mid | 20.00 | 2000.0 | 75.00 | **15.00** | 40.00 | 20.00 |"
    assert table[4] == "| big | 90.00 | 9000.0 | **90.00** | 18.00 | **30.00** | **12.00** |"


def test_pareto_fronts_keep_only_undominated_upstreams(folder: Path) -> None:
    rows = upstream_rows(read_results(folder / "results.json"), "test")
    assert [r.upstream for r in rows] == ["fbank", "small", "mid", "big"]
    text = write_report(folder).read_text()
    assert "- KS acc (%): fbank, small, big" in text  # mid: small is smaller and better
    assert "- SV EER (%): fbank, small, mid" in text  # big: mid is smaller and better
    assert "- ASR WER (%): fbank, mid, big" in text
    assert pareto_front([("a", 1, 0.5), ("b", 1, 0.5), ("c", 2, 0.5)], True) == ["a", "b"]
    assert pareto_front([("a", 1, 0.5), ("b", 2, 0.4)], False) == ["a", "b"]
    assert pareto_front([], True) == []


def test_plots_are_written_and_linked(folder: Path) -> None:
    text = write_report(folder).read_text()
    names = ["pareto_ks.png", "pareto_sv.png", "pareto_asr.png", "layer_weights_small.png",
             "layer_weights_mid.png", "layer_weights_big.png"]
    for name in names:
        path = folder / name
        assert path.is_file() and path.stat().st_size > 1000, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text
    assert not (folder / "layer_weights_fbank.png").exists()  # no weights in any task


def test_bad_records_name_the_file_index_and_key(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "results.json"
    path.write_text(json.dumps([RECORDS[0], {**RECORDS[1], "value": "high"}]))
    with pytest.raises(ConfigError, match=r"results.json\[1\].value must be"):
        read_results(path)
    path.write_text(json.dumps([{**RECORDS[0], "metric": "eer"}]))
    with pytest.raises(ConfigError, match=r"results.json\[0\]: \(task, metric\) must be one of"):
        read_results(path)
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "results.json: not found" in capsys.readouterr().err
    path.write_text(json.dumps(RECORDS))
    assert main([str(tmp_path), "--split", "valid"]) == 2
    assert "no record on split 'valid'" in capsys.readouterr().err
