"""Both TTS stages on the toy setup through the CLI's ``run``, then synthesis and conversion
from their checkpoints (the pipeline and the ``speechbert-tts`` / ``speechbert-vc`` entry
points), and the GAN stage's step accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

from speechbert.cli.tts import run, tts_main, vc_main
from speechbert.models.tts.pipeline import TtsPipeline, Vocoder, read_stage_checkpoint
from tests.lightning.tts_toy import compose_config, toy_overrides, write_toy_tts


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The toy corpus and a 4-batch run of each stage."""
    torch.set_num_threads(1)
    root = write_toy_tts(tmp_path_factory.mktemp("tts_toy"))
    runs = {"root": root}
    for stage in ("text2vec", "vec2wav"):
        runs[stage] = root / "runs" / stage
        run(compose_config(toy_overrides(root, runs[stage], stage, max_steps=4)))
    return runs


def test_vec2wav_steps_both_optimizers_and_starts_the_gan_after_warm_up(
        toy_runs: dict[str, Path]) -> None:
    ckpt = torch.load(toy_runs["vec2wav"] / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8  # 4 batches x (generator + discriminator)
    assert len(ckpt["optimizer_states"]) == 2
    assert ckpt["optimizer_states"][1]["state"], "the discriminator trained after warm-up"
    metrics = json.loads((toy_runs["vec2wav"] / "metrics.json").read_text())
    assert {"train/mel_loss", "train/reconstruction_loss", "train/disc_loss"} <= metrics.keys()
    hparams = ckpt["hyper_parameters"]
    assert hparams["speaker_ids"] == ["s0", "s1"] and hparams["layer"] == 1
    assert ckpt["state_dict"]["speaker_table"].shape == (2, 128)  # tiny HuBERT width


def test_vec2wav_trains_on_a_w2vbert_checkpoint_and_copy_synthesizes(
        toy_runs: dict[str, Path]) -> None:
    root, run_dir = toy_runs["root"], toy_runs["root"] / "runs" / "vec2wav_w2vbert"
    overrides = toy_overrides(root, run_dir, "vec2wav", max_steps=2)
    overrides = [o for o in overrides if not o.startswith("data.upstream_checkpoint=")]
    run(compose_config([*overrides, f"data.upstream_checkpoint={root / 'w2vbert.ckpt'}"]))
    ckpt = read_stage_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt.hparams["upstream_checkpoint"] == str(root / "w2vbert.ckpt")
    vocoder = Vocoder(ckpt)  # reloads the w2v-BERT encoder from the path it was trained on
    wav = vocoder.copy_synthesis(torch.randn(8_000))
    # 0.5 s: 48 fbank frames (25 ms window, 10 ms hop) stacked in pairs = 24 frames of 20 ms
    assert wav.numel() == 24 * 320 and bool(torch.isfinite(wav).all())


def test_text2vec_run_writes_metrics_and_timing(toy_runs: dict[str, Path]) -> None:
    metrics = json.loads((toy_runs["text2vec"] / "metrics.json").read_text())
    assert metrics["global_step"] == 4
    assert {"train/frame_loss", "train/duration_loss", "train/prior_loss"} <= metrics.keys()
    timing = json.loads((toy_runs["text2vec"] / "timing.json").read_text())
    assert timing["launches"][0]["global_step"] == 4 and timing["total_seconds"] > 0


def test_pipeline_synthesizes_for_an_id_and_a_wav(toy_runs: dict[str, Path]) -> None:
    pipeline = TtsPipeline(toy_runs["text2vec"] / "checkpoints" / "last.ckpt",
                           toy_runs["vec2wav"] / "checkpoints" / "last.ckpt")
    by_id = pipeline.synthesize("Dr. Smith has 2 cats.", "s1")
    by_wav = pipeline.synthesize("hello", str(toy_runs["root"] / "audio" / "u0.wav"))
    for wav in (by_id, by_wav):
        assert wav.dim() == 1 and wav.numel() > 0 and wav.numel() % 320 == 0
        assert bool(torch.isfinite(wav).all())


def test_tts_and_vc_commands_write_wavs(toy_runs: dict[str, Path], tmp_path: Path) -> None:
    t2v = toy_runs["text2vec"] / "checkpoints" / "last.ckpt"
    voc = toy_runs["vec2wav"] / "checkpoints" / "last.ckpt"
    tts_main(["text=one two", "speaker=s0", f"out={tmp_path / 'a.wav'}", f"text2vec={t2v}",
              f"vocoder={voc}"])
    audio = toy_runs["root"] / "audio"
    vc_main([str(audio / "u1.wav"), str(audio / "u2.wav"), "--out", str(tmp_path / "b.wav"),
             "--vocoder", str(voc)])
    wav, rate = sf.read(tmp_path / "a.wav")
    assert rate == 16_000 and wav.size % 320 == 0
    converted, _ = sf.read(tmp_path / "b.wav")
    frames = (sf.info(audio / "u1.wav").frames - 400) // 320 + 1  # HuBERT's conv frames
    assert converted.size == 320 * frames


def test_tts_command_names_a_bad_speaker(toy_runs: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        tts_main(["text=hi", "speaker=nobody",
                  f"text2vec={toy_runs['text2vec'] / 'checkpoints' / 'last.ckpt'}",
                  f"vocoder={toy_runs['vec2wav'] / 'checkpoints' / 'last.ckpt'}"])
    assert exit_info.value.code == 2
    assert "speaker='nobody' is neither a training speaker id" in capsys.readouterr().err
