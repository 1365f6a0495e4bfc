"""Every shipped SUPERB config composes into typed configs; bad keys and values fail fast."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from speechbert.cli.superb import CONFIG_DIR, compose_config, to_run_config
from speechbert.errors import ConfigError
from speechbert.lightning.superb import AsrTaskConfig, KsTaskConfig, SvTaskConfig
from speechbert.models.heads.sv import XvectorConfig

CONFIGS = Path(CONFIG_DIR)
UPSTREAMS = sorted(p.stem for p in (CONFIGS / "upstream").glob("*.yaml"))
TASKS = sorted(p.stem for p in (CONFIGS / "task").glob("*.yaml"))
KINDS = {"asr": AsrTaskConfig, "ks": KsTaskConfig, "sv": SvTaskConfig}


@pytest.mark.parametrize("task", TASKS)
def test_every_task_composes_typed(task: str) -> None:
    run = to_run_config(compose_config([f"task={task}"]))
    typed = run.task
    assert isinstance(typed, AsrTaskConfig | KsTaskConfig | SvTaskConfig)
    assert type(typed) in (KINDS[task.split("_")[0]],)
    typed.validate()
    run.trainer.validate()
    assert isinstance(typed.optim.betas, tuple)
    if isinstance(typed.head, XvectorConfig):
        assert isinstance(typed.head.contexts, tuple)
    assert run.run_dir == f"runs/superb/fbank/{typed.name}"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_every_upstream_composes(upstream: str) -> None:
    run = to_run_config(compose_config([f"upstream={upstream}", "out=elsewhere"]))
    assert run.upstream.validate().name == upstream
    assert run.run_dir == f"elsewhere/{upstream}/ks"


def test_upstream_file_replaces_the_upstream(tmp_path: Path) -> None:
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\nkind: hubert\npath: x.ckpt\n")
    run = to_run_config(compose_config(["task=sv"], upstream_file=str(spec)))
    assert (run.upstream.name, run.upstream.kind, run.upstream.path) == ("mine", "hubert",
                                                                         "x.ckpt")
    assert run.run_dir == "runs/superb/mine/sv"
    with pytest.raises(ConfigError, match="upstream spec file not found"):
        compose_config([], upstream_file=str(tmp_path / "none.yaml"))


def test_unknown_keys_and_bad_values_fail() -> None:
    with pytest.raises(ConfigCompositionException):
        compose_config(["task.no_such_field=1"])
    with pytest.raises(ConfigCompositionException):
        compose_config(["task=ks", "task.head.hidden_size=3"])  # the KS head has no LSTM
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_config(["task.batch_size=many"])
    run = to_run_config(compose_config(["task=sv", "task.valid_manifest=dev.tsv"]))
    with pytest.raises(ConfigError, match="task.valid_manifest must be null for sv"):
        run.task.validate()
