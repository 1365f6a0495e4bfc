"""The fbank (MelHuBERT) front end: HuBERT's frame counts, the stacked frames, the configs that
describe it, and a teacher, supernet and extracted subnet built on it."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from speechbert.data.frames import conv_frame_count
from speechbert.errors import ConfigError
from speechbert.lightning.distill import check_teacher, stage1_space
from speechbert.losses.distill import DistillLossConfig
from speechbert.models.hubert.build import build_hubert_pretrain, build_wav2vec2
from speechbert.models.hubert.config import HubertConfig, tiny, tiny_fbank
from speechbert.models.hubert.fbank_frontend import FbankFeatureExtractor, fbank_conv_layers
from speechbert.models.hubert.features import HubertLayerFrames
from speechbert.models.hubert.upstream import HubertUpstream
from speechbert.models.lighthubert import space as spaces
from speechbert.models.lighthubert.extract import export_hf, extract_subnet
from speechbert.models.lighthubert.supernet import SupernetUpstream, build_supernet
from speechbert.models.lighthubert.teacher import copy_teacher
from speechbert.nn.fbank import utterance_fbank
from tests.models.lighthubert.tiny_supernet import padded_batch, randomise, valid_frames


def test_frames_count_as_hubert_conv_frames_and_stack_two_fbank_frames() -> None:
    extractor = FbankFeatureExtractor()
    lengths = torch.tensor([16_000, 12_345, 720, 400])
    wavs = 0.1 * torch.randn(4, 16_000, generator=torch.Generator().manual_seed(0))
    for row, n in enumerate(lengths.tolist()):
        wavs[row, n:] = 0.0
    feats, frames = extractor(wavs, lengths)
    assert frames.tolist() == [conv_frame_count(n) for n in lengths.tolist()]
    assert feats.shape == (4, int(frames.max()), 160)
    assert not list(extractor.parameters())
    for row, n in enumerate(lengths.tolist()):
        fbank = utterance_fbank(wavs[row, :n])  # (N, 80)
        t = int(frames[row])
        last = fbank.shape[0] - 1
        want = torch.cat([fbank[torch.clamp(torch.arange(t) * 2 + k, max=last)]
                          for k in (0, 1)], dim=1)  # (T', 160)
        torch.testing.assert_close(feats[row, :t], want)
        assert not feats[row, t:].any()


def test_a_row_gets_the_same_frames_alone_and_in_a_padded_batch() -> None:
    wavs, lengths = padded_batch()
    batched, _ = FbankFeatureExtractor()(wavs, lengths)
    alone, frames = FbankFeatureExtractor()(wavs[1:, :11_000], lengths[1:])
    torch.testing.assert_close(batched[1, :int(frames[0])], alone[0])


def test_config_round_trips_and_bad_layers_name_the_fix() -> None:
    cfg = tiny_fbank().validate()
    assert cfg.conv_layers == fbank_conv_layers(80) == ((160, 400, 320),)
    assert cfg.conv_channels == 160
    assert HubertConfig.from_dict(dataclasses.asdict(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"one \(width, 400, 320\) layer"):
        dataclasses.replace(cfg, conv_layers=tiny().conv_layers).validate()
    with pytest.raises(ConfigError, match="extractor_mode must be one of"):
        dataclasses.replace(cfg, extractor_mode="mel").validate()


def test_pretraining_model_and_upstream_run_on_fbank_frames() -> None:
    torch.manual_seed(0)
    model = build_hubert_pretrain(tiny_fbank())
    assert isinstance(model.wav2vec2.feature_extractor, FbankFeatureExtractor)
    wavs, lengths = padded_batch()
    frames = torch.tensor([conv_frame_count(int(n)) for n in lengths])
    labels = torch.randint(0, 100, (2, int(frames.max())))
    logit_m, logit_u, _ = model(wavs, labels, lengths)
    assert logit_m.shape[1] == logit_u.shape[1] == 101 and logit_m.shape[0] > 0
    upstream = HubertUpstream(build_wav2vec2(tiny_fbank())).eval()
    out = upstream(wavs, lengths)
    assert upstream.downsample_rate == 320 and upstream.num_layers == 5
    assert out.lengths.tolist() == frames.tolist()
    assert all(h.shape == (2, int(frames.max()), 128) for h in out.hidden_states)


def test_fbank_supernet_starts_from_the_teacher_and_its_subnets_extract_exactly() -> None:
    space = spaces.tiny_fbank()
    torch.manual_seed(0)
    teacher = build_wav2vec2(tiny_fbank())
    randomise(teacher)
    supernet = build_supernet(space.arch)
    report = copy_teacher(supernet, teacher)
    assert "feature_projection.projection.weight" in report.copied
    randomise(supernet)
    supernet.eval()
    wavs, lengths = padded_batch()
    rng = random.Random(0)
    for subnet in [space.sample(rng) for _ in range(3)] + [space.min_subnet()]:
        dense = extract_subnet(supernet, subnet)
        assert sum(p.numel() for p in dense.parameters()) == spaces.count_params(space, subnet)
        with torch.no_grad():
            want = SupernetUpstream(supernet, subnet)(wavs, lengths)
            got = dense(wavs, lengths)
        valid = valid_frames(want.lengths, want.hidden_states[0].shape[1])
        for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
            torch.testing.assert_close(g[valid], w[valid], atol=1e-5, rtol=0)
    assert spaces.count_macs(space, space.max_subnet(), 50) < \
        spaces.count_macs(spaces.tiny(), spaces.tiny().max_subnet(), 50)


def test_transformers_export_and_a_mismatched_teacher_are_refused(tmp_path) -> None:
    space = spaces.tiny_fbank()
    dense = extract_subnet(build_supernet(space.arch).eval(), space.max_subnet())
    with pytest.raises(ConfigError, match="no filterbank front end"):
        export_hf(dense, tmp_path / "hf")
    conv_teacher = HubertUpstream(build_wav2vec2(tiny()))
    with pytest.raises(ConfigError, match="frames do not line up"):  # stage 2
        check_teacher(conv_teacher, space, DistillLossConfig(teacher_layers=[-1]), "t.ckpt")
    with pytest.raises(ConfigError, match="encoder.num_layers: teacher 2, supernet 4"):
        stage1_space(space, conv_teacher, "t.ckpt")
    fbank_teacher = HubertUpstream(build_wav2vec2(tiny_fbank()))
    # stage 1 puts any space of the teacher's size on the teacher's front end
    assert stage1_space(spaces.tiny(), fbank_teacher, "t.ckpt").arch == space.arch
    check_teacher(fbank_teacher, space, DistillLossConfig(teacher_layers=[-1]), "t.ckpt")


def test_an_fbank_teacher_gives_iteration_2_features_per_label_frame() -> None:
    frames = HubertLayerFrames(HubertUpstream(build_wav2vec2(tiny_fbank())), 1, "teacher")
    wav = 0.1 * torch.randn(12_345, generator=torch.Generator().manual_seed(0))
    assert frames(wav).shape == (conv_frame_count(12_345), 128)
