"""Stage 1 starts as an exact copy of the teacher at real sizes (HuBERT Base and Large, and a
fairseq-layout Base checkpoint), whatever the teacher's front end; what cannot be copied is
refused by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from speechbert.lightning.distill import build_stage1_student, stage1_space
from speechbert.models.hubert.build import build_wav2vec2
from speechbert.models.hubert.config import HubertConfig
from speechbert.models.hubert.config import base as hubert_base
from speechbert.models.hubert.config import large as hubert_large
from speechbert.models.hubert.convert import load_teacher
from speechbert.models.hubert.upstream import HubertUpstream
from speechbert.models.lighthubert import space as spaces
from speechbert.models.lighthubert.supernet import SupernetUpstream
from speechbert.models.lighthubert.teacher import TeacherMismatchError, teacher_front_end
from tests.models.hubert.test_convert import _save_fairseq_checkpoint
from tests.models.lighthubert.tiny_supernet import valid_frames

pytestmark = pytest.mark.usefixtures("one_thread")


def _audio() -> tuple[torch.Tensor, torch.Tensor]:
    """1.5 s and 1.1 s of noise (the second zero-padded)."""
    wavs = 0.1 * torch.randn(2, 24_000, generator=torch.Generator().manual_seed(0))
    wavs[1, 17_600:] = 0.0
    return wavs, torch.tensor([24_000, 17_600])


def _assert_student_equals_teacher(teacher: HubertUpstream, space: spaces.SearchSpace) -> None:
    adopted = stage1_space(space, teacher, "teacher")
    student = build_stage1_student(adopted, teacher, "teacher").eval()
    wavs, lengths = _audio()
    with torch.no_grad():
        want = teacher(wavs, lengths)
        got = SupernetUpstream(student, adopted.arch.full_subnet())(wavs, lengths)
    assert torch.equal(got.lengths, want.lengths)
    assert len(got.hidden_states) == len(want.hidden_states) == teacher.num_layers
    valid = valid_frames(want.lengths, want.hidden_states[0].shape[1])
    for index, (g, w) in enumerate(zip(got.hidden_states, want.hidden_states, strict=True)):
        torch.testing.assert_close(g[valid], w[valid], atol=1e-5, rtol=0,
                                   msg=lambda m, i=index: f"hidden state {i}: {m}")


@pytest.mark.parametrize(("config", "space", "mode"), [
    (hubert_base, spaces.base, "group_norm"),
    (hubert_base, spaces.small, "group_norm"),  # Small's supernet is Base's
    (hubert_large, spaces.large, "layer_norm"),
], ids=["base", "small", "large"])
def test_stage1_student_equals_a_random_teacher_at_step_0(
        config: Callable[[], HubertConfig], space: Callable[[], spaces.SearchSpace],
        mode: str) -> None:
    torch.manual_seed(0)
    teacher = HubertUpstream(build_wav2vec2(config()))
    assert teacher_front_end(teacher.model)[0] == mode
    _assert_student_equals_teacher(teacher, space())


def test_stage1_student_equals_a_fairseq_base_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "hubert_base_ls960.pt"
    _save_fairseq_checkpoint(path, hubert_base(), use_omegaconf=False)
    _assert_student_equals_teacher(load_teacher(path), spaces.base())


def test_a_teacher_of_another_size_is_refused_naming_the_settings() -> None:
    torch.manual_seed(0)
    large = HubertUpstream(build_wav2vec2(hubert_large()))
    with pytest.raises(TeacherMismatchError, match=r"distill.teacher=large.pt is not the "
                       r"supernet of space='base'.*encoder.embed_dim: teacher 1024, supernet 768"
                       r".*encoder.layer_norm_first: teacher True, supernet False"
                       r".*large: HuBERT Large"):
        stage1_space(spaces.base(), large, "large.pt")
