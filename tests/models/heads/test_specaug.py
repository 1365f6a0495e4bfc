"""SpecAugment on head features: s3prl's defaults, masks within range, the warp, eval identity."""

from __future__ import annotations

import pytest
import torch

from speechbert.errors import ConfigError
from speechbert.models.heads.specaug import SpecAugment, SpecAugmentConfig, off, time_warp


def test_defaults_are_s3prl_asr_settings() -> None:
    cfg = SpecAugmentConfig()
    assert (cfg.time_warp, cfg.time_warp_window) == (True, 5)
    assert (cfg.freq_mask, cfg.freq_mask_width, cfg.num_freq_masks) == (True, 50, 4)
    assert (cfg.time_mask, cfg.time_mask_width, cfg.num_time_masks) == (True, 40, 2)


def test_eval_mode_and_all_parts_off_are_the_identity() -> None:
    x, lengths = torch.randn(2, 30, 16), torch.tensor([30, 20])
    aug = SpecAugment(SpecAugmentConfig()).eval()
    assert aug(x, lengths) is x
    assert SpecAugment(off()).train()(x, lengths) is x


def _masked(config: SpecAugmentConfig, x: torch.Tensor) -> torch.Tensor:
    """(B, T, D) bool: where the augmented ``x`` is zero."""
    out = SpecAugment(config).train()(x, torch.full((x.shape[0],), x.shape[1]))
    return out == 0


def test_freq_masks_zero_whole_feature_columns_of_at_most_their_widths() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 20, 100) + 10.0  # never zero by chance
    cfg = SpecAugmentConfig(time_warp=False, time_mask=False, freq_mask_width=10,
                            num_freq_masks=2)
    zero = _masked(cfg, x)
    columns = zero.all(dim=1)  # (B, D): a column is masked at every frame
    assert (zero.any(dim=1) == columns).all()
    counts = columns.sum(dim=1)  # (B,)
    assert counts.max() <= 2 * 9 and counts.float().mean() > 4  # two widths drawn in [0, 10)
    assert len(set(map(tuple, columns.int().tolist()))) > 32  # a mask per row (iid)


def test_time_masks_zero_whole_frames() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 100, 8) + 10.0
    cfg = SpecAugmentConfig(time_warp=False, freq_mask=False, time_mask_width=40)
    zero = _masked(cfg, x)
    frames = zero.all(dim=2)  # (B, T)
    assert (zero.any(dim=2) == frames).all()
    assert frames.sum(dim=1).max() <= 2 * 39 and frames.any()


def test_time_warp_moves_a_point_and_keeps_lengths_and_padding() -> None:
    torch.manual_seed(1)
    ramp = torch.arange(40.0)[None, :, None].expand(2, 40, 3).clone()  # (B, T, D)
    ramp[1, 30:] = 0.0  # row 1 has 30 valid frames
    lengths = torch.tensor([40, 30])
    out = time_warp(ramp, lengths, window=5)
    assert out.shape == ramp.shape
    assert (out[1, 30:] == 0).all()
    assert not torch.allclose(out[0], ramp[0])
    assert abs(out[0, 0, 0].item()) < 1.0 and abs(out[0, -1, 0].item() - 39.0) < 1.0
    short = time_warp(ramp[:, :10], torch.tensor([10, 10]), window=5)  # 10 <= 2 W: unchanged
    assert torch.equal(short, ramp[:, :10])


def test_augmentation_passes_gradients_to_the_features() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 30, 60, requires_grad=True)
    SpecAugment(SpecAugmentConfig()).train()(x, torch.tensor([30, 25])).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match="task.specaug.freq_mask_width must be >= 1"):
        SpecAugmentConfig(freq_mask_width=0).validate()
    with pytest.raises(ConfigError, match="task.specaug.num_time_masks must be >= 0"):
        SpecAugment(SpecAugmentConfig(num_time_masks=-1))
