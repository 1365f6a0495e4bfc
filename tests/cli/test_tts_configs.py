"""Every shipped TTS config composes into valid typed configs; bad values fail with the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from speechbert.cli.tts import (
    CONFIG_DIR,
    TtsTrainConfig,
    lightning_max_steps,
    parse_key_values,
    to_run_config,
)
from speechbert.errors import ConfigError
from speechbert.models.tts.text2vec import Text2VecConfig
from speechbert.models.tts.vec2wav import Vec2WavConfig

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "tts_experiment").glob("*.yaml"))


def _compose(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="tts", overrides=list(overrides))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("stage", ["text2vec", "vec2wav"])
def test_experiments_compose_into_typed_configs(experiment: str, stage: str) -> None:
    run = to_run_config(_compose(f"tts_experiment={experiment}", f"stage={stage}"))
    assert isinstance(run, TtsTrainConfig) and run.run_dir == f"runs/{stage}/{run.name}"
    assert isinstance(run.text2vec, Text2VecConfig) and isinstance(run.vec2wav, Vec2WavConfig)
    run.text2vec.validate()
    run.vec2wav.validate()
    run.optim.validate()
    run.vocoder_optim.validate()
    assert isinstance(run.vocoder_optim.betas, tuple)
    assert lightning_max_steps(run) == (run.optim.max_steps if stage == "text2vec"
                                        else 2 * run.vocoder_optim.max_steps)


def test_mini_uses_the_tiny_istft_vocoder() -> None:
    run = to_run_config(_compose("tts_experiment=mini", "stage=vec2wav"))
    assert run.vec2wav.istft_n_fft == 1280 and run.vec2wav.upsample_rates == ()
    assert run.data.layer == 1 and run.name == "mini"


def test_bad_values_name_the_field() -> None:
    run = to_run_config(_compose("tts_experiment=mini", "stage=vocoder"))
    with pytest.raises(ConfigError, match="stage must be one of"):
        run.validate()
    run = to_run_config(_compose("tts_experiment=mini", "stage=vec2wav",
                                 "data.conditioning=mel"))
    with pytest.raises(ConfigError, match="data.layer and data.speaker_layer must be 0"):
        run.validate()
    with pytest.raises(ConfigCompositionException):
        _compose("tts_experiment=mini", "stage=vec2wav", "vocoder_optim.no_such_key=1")


def test_key_value_arguments() -> None:
    assert parse_key_values(["text=a=b", "speaker=3"], {"text": "", "speaker": ""}) == {
        "text": "a=b", "speaker": "3"}
    with pytest.raises(ConfigError, match="expected key=value with key one of"):
        parse_key_values(["voice=3"], {"text": ""})
