"""``speechbert-tts-train`` (both stages), ``speechbert-tts`` and ``speechbert-vc`` end to end on
the bundled corpus, on a random tiny HuBERT written by the test (a few steps each), so it runs on
a fresh clone without ``make pretrain-demo``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tests.cli.supernet_checkpoint import write_teacher

REPO = Path(__file__).parents[2]
"""Repository root: the working directory the commands run from."""
LS = REPO / "data/mini/manifests/librispeech"

pytestmark = [pytest.mark.slow, pytest.mark.corpus]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_train_both_stages_then_synthesize_and_convert(tmp_path: Path) -> None:
    if not (LS / "dev-clean.tsv").is_file():
        pytest.fail(f"needs the bundled corpus in {LS}: run make setup")
    upstream = write_teacher(tmp_path / "hubert_tiny.ckpt")
    common = ["tts_experiment=mini", f"data.upstream_checkpoint={upstream}",
              f"data.train_manifests=[{LS / 'dev-clean.tsv'}]",
              "data.valid_manifests=[]", f"data.cache_dir={tmp_path / 'cache'}",
              "optim.max_steps=3", "optim.warmup_steps=1", "vocoder_optim.max_steps=3",
              "vocoder_optim.adversarial_start=2", "trainer.checkpoint_every_n_steps=2"]
    for stage in ("text2vec", "vec2wav"):
        _run("-m", "speechbert.cli.tts", f"stage={stage}", f"run_dir={tmp_path / stage}",
             *common)
        assert json.loads((tmp_path / stage / "timing.json").read_text())["total_seconds"] > 0
    t2v, voc = (tmp_path / s / "checkpoints/last.ckpt" for s in ("text2vec", "vec2wav"))
    tts = REPO / ".venv/bin/speechbert-tts"
    vc = REPO / ".venv/bin/speechbert-vc"
    _run(str(tts), "text=The cat sat on 2 mats.", "speaker=1033", f"out={tmp_path / 'a.wav'}",
         f"text2vec={t2v}", f"vocoder={voc}")
    wavs = sorted((REPO / "data/mini/LibriSpeech/dev-clean").rglob("*.flac"))
    _run(str(vc), str(wavs[0]), str(wavs[-1]), "--out", str(tmp_path / "b.wav"),
         "--vocoder", str(voc))
    for name in ("a.wav", "b.wav"):
        wav, rate = sf.read(tmp_path / name)
        assert rate == 16_000 and wav.size > 0 and wav.size % 320 == 0
