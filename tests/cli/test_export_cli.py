"""``speechbert-export`` end to end on a tiny distillation checkpoint: the dense checkpoint equals
the supernet at the subnet, the HF folder loads in transformers with the same hidden states, and
bad requests fail with a message naming the subnet file and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from speechbert.models.lighthubert.checkpoint import load_supernet
from speechbert.models.lighthubert.extract import load_dense
from speechbert.nn.elastic import SubnetConfig
from tests.cli.run_cli import REPO
from tests.cli.supernet_checkpoint import write_supernet_checkpoint, write_teacher
from tests.models.lighthubert.tiny_supernet import padded_batch, valid_frames

pytestmark = pytest.mark.slow


def run_export(*overrides: str) -> subprocess.CompletedProcess[str]:
    """``python -m speechbert.cli.export <overrides>`` from the repo root, output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "speechbert.cli.export", *overrides], cwd=REPO,
                          capture_output=True, text=True, timeout=240, env=env)


def _log(result: subprocess.CompletedProcess[str]) -> str:
    """What the CLI printed (Hydra logs to stdout)."""
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny stage-2 distillation checkpoint."""
    root = tmp_path_factory.mktemp("export")
    return write_supernet_checkpoint(root / "last.ckpt", write_teacher(root / "teacher.ckpt"))


def _write_subnet(path: Path, subnet: SubnetConfig) -> Path:
    path.write_text(json.dumps(subnet.to_dict()))
    return path


def test_dense_and_hf_exports_equal_the_supernet_at_the_subnet(checkpoint: Path,
                                                               tmp_path: Path) -> None:
    subnet = SubnetConfig.uniform(128, 4, 384, 3)
    search = tmp_path / "search.json"  # speechbert-subnet's report: its "subnet" key is read
    search.write_text(json.dumps({"subnet": subnet.to_dict(), "loss": 0.5}))
    result = run_export(f"checkpoint={checkpoint}", f"subnet={search}",
                        f"out={tmp_path / 'out'}", "hf=true")
    assert result.returncode == 0, result.stderr[-3000:]
    supernet = load_supernet(checkpoint).supernet
    wavs, lengths = padded_batch()
    with torch.no_grad():
        want = supernet(wavs, lengths, subnet)
        got = load_dense(tmp_path / "out" / "encoder.pt")(wavs, lengths)
    valid = valid_frames(want.lengths, 49)
    assert len(got.hidden_states) == len(want.hidden_states) == 4
    for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
        torch.testing.assert_close(g[valid], w[valid], atol=1e-5, rtol=0)
    hf = transformers.HubertModel.from_pretrained(tmp_path / "out" / "hf",
                                                  local_files_only=True).eval()
    attention_mask = (torch.arange(wavs.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        hf_states = hf(wavs, attention_mask=attention_mask, output_hidden_states=True)
    for g, w in zip(hf_states.hidden_states, want.hidden_states, strict=True):
        torch.testing.assert_close(g[valid], w[valid], atol=1e-4, rtol=0)
    assert SubnetConfig.from_json((tmp_path / "out" / "subnet.json").read_text()) == subnet


def test_a_subnet_outside_the_space_is_refused_naming_the_file(checkpoint: Path,
                                                               tmp_path: Path) -> None:
    bad = _write_subnet(tmp_path / "bad.json", SubnetConfig.uniform(128, 3, 384, 3))
    result = run_export(f"checkpoint={checkpoint}", f"subnet={bad}", f"out={tmp_path / 'out'}")
    assert result.returncode == 2
    assert f"{bad}: subnet is not in the checkpoint's search space 'tiny'" in _log(result)
    assert "heads must each be one of (2, 4); got (3, 3, 3)" in _log(result)
    assert not (tmp_path / "out" / "encoder.pt").exists()


def test_a_non_uniform_subnet_asked_for_hf_is_refused_before_writing(checkpoint: Path,
                                                                     tmp_path: Path) -> None:
    mixed = _write_subnet(tmp_path / "mixed.json", SubnetConfig(96, (2, 4), (192, 384)))
    result = run_export(f"checkpoint={checkpoint}", f"subnet={mixed}",
                        f"out={tmp_path / 'out'}", "hf=true")
    assert result.returncode == 2
    assert f"subnet={mixed}: hf=true is not possible" in _log(result)
    assert "needs a uniform subnet" in _log(result) and "drop hf=true" in _log(result)
    assert not (tmp_path / "out" / "encoder.pt").exists()
