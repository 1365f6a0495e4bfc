"""Real-size smoke runs of the SUPERB recipes: asr_superb, ks_superb, sv_superb, FBANK baseline.

Each recipe runs from the grid's command line (``python -m evals.superb --upstreams <spec>
--tasks <task> --override ...``, called in this process: the same ``main`` users run, without
paying the interpreter start eight times) at its real head dimensions, over a randomly
initialised HuBERT Base (768 wide, 12 layers, 13 hidden states, saved as our ``.ckpt``) or the
240-dimension FBANK baseline, on a few bundled utterances, for 2 optimizer steps on the CPU.
The cell writes ``last.ckpt``; its ``result.json`` is then removed (as if the run had been
killed after its last checkpoint) and a second launch resumes from the checkpoint to step 3.

Overrides are steps, batch sizes, devices, precision and paths only, and: ``asr_superb`` runs
with ``task.features=online`` (the LibriSpeech-scale path: the upstream inside each step; the
others run the recipe's ``auto``, which caches a corpus this small); ``sv_superb`` holds out
``task.dev_speakers=2`` speakers instead of 40 because the slice has 4.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from evals.superb import main as superb_main
from speechbert.data.manifest import Utterance, read_manifest, write_manifest, write_trials
from speechbert.models.hubert.build import build_wav2vec2
from speechbert.models.hubert.config import base as hubert_base
from tests.recipes.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.corpus, pytest.mark.usefixtures("one_thread")]

BUNDLED = REPO / "data" / "mini" / "manifests"
"""Manifests of the bundled corpus."""
CPU = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32"]
"""One CPU process in float32."""
RESTORED = "Restored all states from the checkpoint"
"""Lightning's log line when a run continues from a checkpoint."""
HUBERT = "hubert_base_random"
"""Name of the random HuBERT Base upstream (its run folders are ``<out>/<name>/<task>``)."""


def _rows(corpus: str, split: str, count: int, seconds: float | None = None,
          per_speaker: int | None = None) -> list[Utterance]:
    """The ``count`` shortest rows of a bundled split (``per_speaker`` from each of the first
    speakers instead, when given), cut to ``seconds`` if given."""
    path = BUNDLED / corpus / f"{split}.tsv"
    if not path.is_file():
        pytest.fail("bundled corpus missing: run `make setup`")
    rows = sorted(read_manifest(path), key=lambda u: (u.num_samples, u.id))
    if per_speaker is not None:
        speakers = sorted({u.speaker for u in rows})[:count // per_speaker]
        rows = [u for s in speakers for u in [r for r in rows if r.speaker == s][-per_speaker:]]
    rows = rows[:count]
    if seconds is not None:
        rows = [replace(u, num_samples=min(u.num_samples, round(seconds * 16_000)))
                for u in rows]
    return rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Manifests of a few bundled utterances per task (and an SV trial list)."""
    root = tmp_path_factory.mktemp("superb_corpus")
    out: dict[str, str] = {}

    def put(name: str, rows: list[Utterance]) -> None:
        out[name] = str(write_manifest(root / f"{name}.tsv", rows))

    put("asr_train", _rows("librispeech", "train-clean-100", 4))  # whole: transcripts fit
    put("asr_valid", _rows("librispeech", "dev-clean", 2))
    put("asr_test", _rows("librispeech", "test-clean", 2))
    put("ks_train", _rows("speech_commands", "train", 4))
    put("ks_valid", _rows("speech_commands", "valid", 2))
    put("ks_test", _rows("speech_commands", "test", 2))
    put("sv_train", _rows("voxceleb1", "train", 8, seconds=2.0, per_speaker=2))
    test = _rows("voxceleb1", "test", 4, seconds=2.0, per_speaker=2)
    put("sv_test", test)
    trials = [(int(a.speaker == b.speaker), a.id, b.id)
              for i, a in enumerate(test) for b in test[i + 1:]]
    out["sv_trials"] = str(write_trials(root / "sv_trials.tsv", trials))
    return out


@pytest.fixture(scope="module")
def hubert_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An UpstreamSpec YAML of a random HuBERT Base in our checkpoint format (deleted after)."""
    folder = tmp_path_factory.mktemp("hubert_base")
    torch.manual_seed(0)
    cfg = hubert_base()
    model = build_wav2vec2(cfg)
    ckpt = folder / "hubert_base.ckpt"
    torch.save({"state_dict": {f"model.wav2vec2.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model_config": asdict(cfg)}}, ckpt)
    spec = folder / "hubert_base.yaml"
    spec.write_text(f"name: {HUBERT}\nkind: hubert\npath: {ckpt}\n")
    yield str(spec)
    shutil.rmtree(folder, ignore_errors=True)


class _Lines(logging.Handler):
    """Collects formatted log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _launch(upstream: str, task: str, out: Path, overrides: list[str],
            max_steps: int) -> str:
    """One ``evals.superb`` launch; its Lightning log lines (fails the test on exit code 1)."""
    lines = _Lines()
    lightning_log = logging.getLogger("lightning.pytorch")
    lightning_log.addHandler(lines)
    try:
        code = superb_main(["--upstreams", upstream, "--tasks", task, "--out", str(out),
                            "--override", f"cache_dir={out.parent / 'cache'}",
                            f"task.optim.max_steps={max_steps}", *CPU, *overrides])
    finally:
        lightning_log.removeHandler(lines)
    assert code == 0, f"{task} on {upstream} failed (see the log above)"
    return "\n".join(lines.lines)


def _smoke(upstream: str, task: str, run: Path, overrides: list[str]) -> tuple[dict, dict]:
    """Two steps, a checkpoint, then a resumed launch to step 3; the first launch's record and
    its checkpoint's state dict."""
    out = run.parents[1]
    first_log = _launch(upstream, task, out, overrides, max_steps=2)
    first = json.loads((run / "result.json").read_text())
    assert first["steps"] == 2 and RESTORED not in first_log
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)
    assert ckpt["global_step"] == 2
    state = ckpt["state_dict"]
    assert not [k for k in state if k.startswith("upstream.")]  # the frozen upstream stays out
    (run / "result.json").unlink()  # as if killed after its last checkpoint
    second_log = _launch(upstream, task, out, overrides, max_steps=3)
    assert RESTORED in second_log
    second = json.loads((run / "result.json").read_text())
    assert second["steps"] == 3
    return first, state


def test_asr_superb(corpus: dict[str, str], hubert_spec: str, tmp_path: Path) -> None:
    overrides = [f"task.train_manifest={corpus['asr_train']}",
                 f"task.valid_manifest={corpus['asr_valid']}",
                 f"task.test_manifest={corpus['asr_test']}", "task.batch_size=2",
                 "task.eval_batch_size=2", "task.features=online"]
    record, state = _smoke(hubert_spec, "asr_superb", tmp_path / "superb" / HUBERT / "asr",
                           overrides)
    assert record["features"] == "online" and len(record["layer_weights"]) == 13
    assert state["head.project.weight"].shape == (1024, 768)
    assert state["head.lstms.1.weight_hh_l0_reverse"].shape == (4 * 1024, 1024)
    assert state["head.output.weight"].shape == (29, 2048)
    assert not (tmp_path / "superb" / "cache").exists()  # online: nothing cached


def test_ks_superb(corpus: dict[str, str], hubert_spec: str, tmp_path: Path) -> None:
    overrides = [f"task.train_manifest={corpus['ks_train']}",
                 f"task.valid_manifest={corpus['ks_valid']}",
                 f"task.test_manifest={corpus['ks_test']}", "task.batch_size=2",
                 "task.eval_batch_size=2"]
    record, state = _smoke(hubert_spec, "ks_superb", tmp_path / "superb" / HUBERT / "ks",
                           overrides)
    assert record["features"] == "cache"  # auto: a few clips fit on any disk
    assert state["head.project.weight"].shape == (256, 768)
    assert state["head.output.weight"].shape == (12, 256)


def test_sv_superb(corpus: dict[str, str], hubert_spec: str, tmp_path: Path) -> None:
    overrides = [f"task.train_manifest={corpus['sv_train']}",
                 f"task.test_manifest={corpus['sv_test']}", f"task.trials={corpus['sv_trials']}",
                 "task.batch_size=2", "task.dev_speakers=2"]
    run = tmp_path / "superb" / HUBERT / "sv"
    record, state = _smoke(hubert_spec, "sv_superb", run, overrides)
    assert record["metric"] == "eer" and 0.0 <= record["value"] <= 1.0
    assert state["head.project.weight"].shape == (512, 768)
    assert state["head.tdnns.4.conv.weight"].shape == (1500, 512, 1)
    assert state["head.segment1.weight"].shape == (512, 3000)
    assert state["loss.weight"].shape == (2, 512)  # 4 speakers, 2 held out for the dev trials
    dev_trials = (run / "dev_trials.tsv").read_text().splitlines()
    assert len(dev_trials) == 1 + 37720


def test_fbank_baseline(corpus: dict[str, str], tmp_path: Path) -> None:
    """The shipped ``upstream=fbank`` (s3prl's 240-dim baseline) under the KS recipe: the
    cheapest head on this CPU (the ASR head reads FBANK's 100 Hz frames, twice HuBERT's)."""
    overrides = [f"task.train_manifest={corpus['ks_train']}",
                 f"task.valid_manifest={corpus['ks_valid']}",
                 f"task.test_manifest={corpus['ks_test']}", "task.batch_size=2",
                 "task.eval_batch_size=2"]
    record, state = _smoke("fbank", "ks_superb", tmp_path / "superb" / "fbank" / "ks",
                           overrides)
    assert record["params"] == 0 and record["layer_weights"] == [1.0]
    assert state["head.project.weight"].shape == (256, 240)  # 80 + deltas + delta-deltas
