"""W2VBertUpstream: the Upstream protocol on fairseq2's encoder, and loading our checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from fairseq2.nn import BatchLayout

from speechbert.errors import CheckpointError, ConfigError
from speechbert.models.upstream import Upstream
from speechbert.models.w2vbert.build import build_w2vbert
from speechbert.models.w2vbert.config import tiny
from speechbert.models.w2vbert.upstream import W2VBertUpstream, load_w2vbert_checkpoint
from speechbert.nn.fbank import batched_fbank

LENGTHS = torch.tensor([16000, 9000])


@pytest.fixture(scope="module")
def upstream() -> W2VBertUpstream:
    torch.manual_seed(0)
    return W2VBertUpstream(build_w2vbert(tiny()))


@pytest.fixture(scope="module")
def wavs() -> torch.Tensor:
    wavs = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))  # (B, T)
    wavs[1, 9000:] = 0.0
    return wavs


def test_implements_upstream(upstream: W2VBertUpstream, wavs: torch.Tensor) -> None:
    assert isinstance(upstream, Upstream) and not upstream.model.training
    assert (upstream.downsample_rate, upstream.num_layers, upstream.hidden_size) == (320, 5, 64)
    out = upstream(wavs, LENGTHS)
    assert len(out.hidden_states) == upstream.num_layers
    assert all(h.shape == (2, 49, 64) for h in out.hidden_states)
    expected = [(1 + (n - 400) // 160) // 2 for n in LENGTHS.tolist()]  # 20 ms frames
    assert out.lengths.tolist() == expected == [49, 27] and out.lengths.dtype == torch.int64


def test_last_hidden_state_is_fairseq2_encoder_output(upstream: W2VBertUpstream,
                                                      wavs: torch.Tensor) -> None:
    out = upstream(wavs, LENGTHS)
    fbank, frames = batched_fbank(wavs, LENGTHS)
    w2v2 = upstream.model.w2v2_model
    with torch.no_grad():
        seqs, layout = w2v2.encoder_frontend(fbank, BatchLayout.of(fbank, frames.tolist()))
        expected = w2v2.encoder(seqs, layout)
    torch.testing.assert_close(out.hidden_states[0], seqs)
    torch.testing.assert_close(out.hidden_states[-1], expected)


def test_padding_does_not_change_valid_frames(upstream: W2VBertUpstream,
                                              wavs: torch.Tensor) -> None:
    batched = upstream(wavs, LENGTHS)
    alone = upstream(wavs[1:, :9000], LENGTHS[1:])
    valid = int(batched.lengths[1])
    for b_state, a_state in zip(batched.hidden_states, alone.hidden_states, strict=True):
        torch.testing.assert_close(b_state[1, :valid], a_state[0], atol=1e-5, rtol=1e-4)


def test_empty_batch(upstream: W2VBertUpstream) -> None:
    out = upstream(torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64))
    assert len(out.hidden_states) == 5 and out.hidden_states[0].shape == (0, 0, 64)
    assert out.lengths.shape == (0,)


def test_too_short_utterance_is_rejected(upstream: W2VBertUpstream) -> None:
    with pytest.raises(ConfigError, match="at least 560 samples.*row 1 has 500"):
        upstream(torch.zeros(2, 1000), torch.tensor([1000, 500]))


def save_checkpoint(path: Path, model_config: dict, state_dict: dict) -> Path:
    """A checkpoint in the Lightning module's format (extra keys included)."""
    torch.save({"epoch": 3, "pytorch-lightning_version": "2.6.0",
                "hyper_parameters": {"model_config": model_config, "lr": 1e-4},
                "state_dict": state_dict}, path)
    return path


def lightning_state_dict(upstream: W2VBertUpstream) -> dict[str, torch.Tensor]:
    """The W2VBertModel's weights under ``model.``, plus an unrelated key."""
    weights = {f"model.{k}": v for k, v in upstream.model.state_dict().items()}
    return {**weights, "ema.decay": torch.tensor(0.99)}


def test_checkpoint_round_trip(upstream: W2VBertUpstream, wavs: torch.Tensor,
                               tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last.ckpt", dataclasses.asdict(tiny()),
                           lightning_state_dict(upstream))
    loaded = load_w2vbert_checkpoint(path)
    assert not loaded.model.training
    for got, want in zip(loaded(wavs, LENGTHS).hidden_states,
                         upstream(wavs, LENGTHS).hidden_states, strict=True):
        torch.testing.assert_close(got, want)


def test_checkpoint_errors_name_the_problem(upstream: W2VBertUpstream, tmp_path: Path) -> None:
    config = dataclasses.asdict(tiny())
    state = lightning_state_dict(upstream)
    with pytest.raises(CheckpointError, match="no such w2v-BERT checkpoint"):
        load_w2vbert_checkpoint(tmp_path / "missing.ckpt")
    path = tmp_path / "bad.ckpt"
    torch.save({"hyper_parameters": {}, "state_dict": state}, path)
    with pytest.raises(CheckpointError, match="missing 'model_config'"):
        load_w2vbert_checkpoint(path)
    save_checkpoint(path, config, {k[len("model."):]: v for k, v in state.items()})
    with pytest.raises(CheckpointError, match="no key starting with 'model.'"):
        load_w2vbert_checkpoint(path)
    save_checkpoint(path, {**config, "model_dim": 128, "num_heads": 4}, state)
    with pytest.raises(CheckpointError, match="does not fit model_config"):
        load_w2vbert_checkpoint(path)
