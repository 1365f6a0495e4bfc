"""Stage 2 across processes: two CPU ranks (DDP, gloo) train what one process accumulating two
batches trains, because a step's subnet comes from the step and a batch's mask from its ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from speechbert.data.collate import AudioBatch
from tests.lightning import toy_distill_ddp
from tests.lightning.child_process import finish
from tests.lightning.toy_distill import fixed_batch, toy_module

STEPS = 6
"""Optimizer steps: two epochs of three global batches of two per step."""
LOSS_RTOL = 1e-5
"""Relative tolerance of each batch's loss (float32 reduction order differs across processes)."""
WEIGHT_ATOL = 1e-5
"""Absolute tolerance of the final weights (DDP averages gradients; one process accumulates)."""


def _trace(run_dir: Path, rank: int) -> list[dict[str, Any]]:
    return json.loads((run_dir / f"trace_rank{rank}.json").read_text())


def test_two_ranks_train_what_one_process_accumulating_two_batches_trains(
        toy_corpus: Path, tmp_path: Path) -> None:
    """Rank r at step k sees global batch 2k + r, one process sees it as micro-batch r of step
    k: same subnet, same mask, so the same loss per batch and the same weights at the end."""
    ddp_dir, one_dir = tmp_path / "ddp", tmp_path / "one"
    ddp = toy_distill_ddp.start(toy_corpus, ddp_dir, "--devices", "2", "--strategy", "ddp",
                                "--max-steps", str(STEPS))
    toy_distill_ddp.main(["--corpus", str(toy_corpus), "--run-dir", str(one_dir),
                          "--accumulate", "2", "--max-steps", str(STEPS)])
    finish(ddp, ddp_dir)
    ranks = [_trace(ddp_dir, r) for r in (0, 1)]
    one = _trace(one_dir, 0)
    assert len(ranks[0]) == len(ranks[1]) == STEPS and len(one) == 2 * STEPS
    for k in range(STEPS):
        pair = one[2 * k:2 * k + 2]
        for r in (0, 1):
            assert ranks[r][k]["step"] == pair[r]["step"] == k
            assert ranks[r][k]["ids"] == pair[r]["ids"], f"step {k} rank {r}: another batch"
            assert ranks[r][k]["subnets"] == pair[r]["subnets"] == ranks[0][k]["subnets"], (
                f"step {k}: one subnet per optimizer step, on every rank and micro-batch")
            assert ranks[r][k]["loss"] == pytest.approx(pair[r]["loss"], rel=LOSS_RTOL), (k, r)
    depths = {row["subnets"][0]["depth"] for row in one}
    assert min(depths) < max(toy_distill_ddp.dropout_free_tiny().depths), (
        "the run must train a shallower subnet (layers without gradient under DDP)")
    assert len({json.dumps(row["subnets"]) for row in one}) > 1, "subnets change per step"
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (ddp_dir, one_dir)]
    assert metrics[0]["global_step"] == metrics[1]["global_step"] == STEPS
    weights = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for d in (ddp_dir, one_dir)]
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[1].items():
        torch.testing.assert_close(weights[0][key], value, atol=WEIGHT_ATOL, rtol=0, msg=key)


def _mask(module: Any, batch: AudioBatch) -> torch.Tensor:
    targets = module.criterion.teacher_targets(module.teacher, batch.wavs, batch.lengths)
    return module.train_mask(batch, targets)


def test_a_steps_subnet_and_a_batchs_mask_come_from_seeds_not_the_process() -> None:
    module = toy_module(stage=2, subnet_seed=3, mask_seed=5)
    assert module.train_subnets(4) == toy_module(stage=2, subnet_seed=3).train_subnets(4)
    assert module.train_subnets(4) != toy_module(stage=2, subnet_seed=4).train_subnets(4)
    batch, other = fixed_batch(), fixed_batch()
    other.ids = ["c", "d"]  # the same audio under other ids
    state = torch.get_rng_state()
    first = _mask(module, batch)
    torch.manual_seed(123)  # another process's global RNG
    assert torch.equal(_mask(module, batch), first), "a batch's mask is the same in any process"
    assert not torch.equal(_mask(module, other), first), "another batch, another mask"
    assert not torch.equal(_mask(toy_module(stage=2, mask_seed=6), batch), first)
    torch.set_rng_state(state)
    _mask(module, batch)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG is left as it was"


def test_ddp_without_find_unused_parameters_is_refused_by_name(toy_corpus: Path,
                                                               tmp_path: Path) -> None:
    """Shallower subnets leave layers without gradient; DDP must look for them, or it stops."""
    run_dir = tmp_path / "strict"
    proc = toy_distill_ddp.start(toy_corpus, run_dir, "--devices", "2", "--strategy", "ddp",
                                 "--no-find-unused-parameters")
    log = finish(proc, run_dir, expect_ok=False)
    assert "ConfigError: trainer.find_unused_parameters=false, but distill.stage=2" in log
    assert "Set trainer.find_unused_parameters=true" in log
