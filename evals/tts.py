"""WavThruVec figures on the bundled corpus, as JSON and a spectrogram PNG (runs/demo/tts/).

``python -m evals.tts`` takes the first ``--num`` utterances of the test manifest and makes six
versions of each:

real          the recording (the ceiling for intelligibility and speaker similarity);
copy          vec2wav on the recording's own upstream embeddings and speaker vector
              (copy-synthesis: the vocoder alone);
mel_vocoder   the same vec2wav recipe trained on the 50 Hz log-mel instead of embeddings
              (``--mel-vocoder``; :class:`~speechbert.models.tts.mel.MelUpstream`), on the
              recording's mel: a vocoder with exactly the information Griffin-Lim gets;
griffin_lim   Griffin-Lim from the recording's 80-bin mel at the vocoder's 50 Hz frame rate
              (:data:`~speechbert.models.tts.griffin_lim.BASELINE_MEL`, 32 iterations);
griffin_lim_embeddings
              Griffin-Lim from the mel a ridge map predicts from the recording's embeddings
              (:class:`~speechbert.models.tts.griffin_lim.LinearMelProbe`, fitted on
              ``--probe-num`` training utterances): a classical inversion of exactly what the
              vocoder is given;
tts           text2vec on the transcript with the recording's speaker vector, then vec2wav.

"The vocoder beats Griffin-Lim" (``vocoder_beats_griffin_lim_mcd``) is judged on ``copy``, the
embedding-conditioned vec2wav the pipeline ships, against ``griffin_lim``. ``copy`` pays for
what the upstream layer does not keep of the spectrum, which a vocoder cannot put back, so
``mel_vocoder_beats_griffin_lim_mcd`` also compares the same recipe on exactly Griffin-Lim's
input, and ``vocoder_beats_griffin_lim_on_embeddings_mcd`` Griffin-Lim on exactly the
vocoder's input: those two measure the inversion, the first the vocoder with its features.

For every system the report gives: mel-cepstral distortion against the recording
(DTW-aligned, speech frames,
:func:`~speechbert.models.tts.griffin_lim.mel_cepstral_distortion`), WER/CER of the
project's SUPERB ASR model on it, and the cosine similarity of the SUPERB SV model's speaker
embeddings to the recording's (both when ``runs/superb/<upstream>/{asr,sv}`` hold finished
cells, else marked pending), plus each stage's training time (``timing.json``). The PNG shows the
log-mel spectrograms of one utterance's versions. A few WAVs are written for listening.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from speechbert.audio import SAMPLE_RATE
from speechbert.data.manifest import Utterance, load_utterance, read_manifest
from speechbert.models.tts.griffin_lim import (
    LinearMelProbe,
    griffin_lim_resynthesis,
    mel_cepstral_distortion,
)
from speechbert.models.tts.pipeline import TtsPipeline, Vocoder, read_stage_checkpoint

SYSTEMS = ("real", "copy", "mel_vocoder", "griffin_lim", "griffin_lim_embeddings", "tts")
"""The versions of every test utterance, in report order."""


def fit_probe(vocoder: Vocoder, utts: list[Utterance]) -> LinearMelProbe:
    """The ridge map from ``vocoder``'s normalised embeddings to the baseline mel, on ``utts``."""
    return LinearMelProbe.fit((vocoder.speakers.embed(wav)[0], wav)
                              for wav in (load_utterance(u) for u in utts))


def synthesize(pipeline: TtsPipeline, mel_vocoder: Vocoder | None, utt: Utterance,
               probe: LinearMelProbe | None = None) -> dict[str, torch.Tensor]:
    """The versions (S,) of one test utterance (no ``mel_vocoder`` or
    ``griffin_lim_embeddings`` without a vocoder or probe)."""
    real = load_utterance(utt)
    vocoder = pipeline.vocoder
    features, speaker = vocoder.speakers.embed(real)
    t2v_features = pipeline.text2vec(utt.text or "", speaker)
    t2v_raw = t2v_features * pipeline.t2v_stats.std + pipeline.t2v_stats.mean
    out = {"real": real, "copy": vocoder(features, speaker),
           "griffin_lim": griffin_lim_resynthesis(real),
           "tts": vocoder(vocoder.speakers.stats.normalise(t2v_raw), speaker)}
    if mel_vocoder is not None:
        out["mel_vocoder"] = mel_vocoder.copy_synthesis(real)
    if probe is not None:
        out["griffin_lim_embeddings"] = probe.resynthesize(features, real.numel())
    return {name: out[name] for name in SYSTEMS if name in out}


def mcd_figures(versions: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Mean MCD (dB) of every system against the recordings."""
    return {name: float(np.mean([mel_cepstral_distortion(v["real"], v[name])
                                 for v in versions])) for name in versions[0]}


def training_times(run_dirs: dict[str, Path]) -> dict[str, Any]:
    """Wall seconds per stage from the runs' ``timing.json`` (None when missing)."""
    times: dict[str, Any] = {}
    for stage, run in run_dirs.items():
        path = run / "timing.json"
        times[stage] = json.loads(path.read_text())["total_seconds"] if path.is_file() else None
    return times


def log_mel(wav: torch.Tensor) -> np.ndarray:
    """Log-mel (80, frames) for plotting."""
    import librosa

    mel = librosa.feature.melspectrogram(y=wav.numpy(), sr=SAMPLE_RATE, n_fft=1024,
                                         hop_length=160, win_length=400, n_mels=80)
    return np.log(np.maximum(mel, 1e-5))


def spectrogram_png(versions: dict[str, torch.Tensor], title: str, path: Path) -> Path:
    """One row per system: log-mel spectrograms of the same utterance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(versions)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names)), sharex=True)
    for ax, name in zip(axes, names, strict=True):
        ax.imshow(log_mel(versions[name]), origin="lower", aspect="auto", vmin=-11, vmax=2,
                  extent=(0, versions[name].numel() / SAMPLE_RATE, 0, 80))
        ax.set_ylabel(f"{name}\nmel bin")
    axes[0].set_title(title)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def superb_figures(versions: list[dict[str, torch.Tensor]], utts: list[Utterance],
                   superb_dir: Path) -> dict[str, Any]:
    """WER/CER by the SUPERB ASR cell and SV cosine by the SV cell, or why they are pending."""
    from evals.tts_superb import asr_figures, sv_figures

    return {"asr": asr_figures(versions, utts, superb_dir / "asr"),
            "speaker_similarity": sv_figures(versions, superb_dir / "sv")}


def write_listening_wavs(versions: list[dict[str, torch.Tensor]], out: Path,
                         count: int = 2) -> None:
    """The first ``count`` utterances' versions as WAVs in ``out/wav/``."""
    (out / "wav").mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(versions[:count]):
        for name, wav in v.items():
            sf.write(out / "wav" / f"{i}_{name}.wav", wav.clamp(-1, 1).numpy(), SAMPLE_RATE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="mini", help="run name of both stages")
    parser.add_argument("--mel-vocoder", default=None,
                        help="run name of a vec2wav trained with data.conditioning=mel")
    parser.add_argument("--runs", default="runs", help="runs folder")
    parser.add_argument("--manifest", default="data/mini/manifests/librispeech/test-clean.tsv")
    parser.add_argument("--num", type=int, default=8, help="test utterances")
    parser.add_argument("--probe-manifest",
                        default="data/mini/manifests/librispeech/train-clean-100.tsv",
                        help="utterances the embeddings-to-mel ridge map is fitted on")
    parser.add_argument("--probe-num", type=int, default=200,
                        help="how many of them (0: no griffin_lim_embeddings system)")
    parser.add_argument("--superb", default="runs/superb/w2vbert_mini",
                        help="SUPERB cells of the upstream (asr/, sv/) used as judges")
    parser.add_argument("--out", default="runs/demo/tts")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Compute the figures, write metrics.json and spectrogram.png, print the JSON."""
    args = parse_args(argv)
    start, runs, out = time.perf_counter(), Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = {"text2vec": runs / "text2vec" / args.name, "vec2wav": runs / "vec2wav" / args.name}
    pipeline = TtsPipeline(stages["text2vec"] / "checkpoints/last.ckpt",
                           stages["vec2wav"] / "checkpoints/last.ckpt")
    mel_vocoder = None
    if args.mel_vocoder:
        stages["vec2wav_mel"] = runs / "vec2wav" / args.mel_vocoder
        mel_vocoder = Vocoder(read_stage_checkpoint(stages["vec2wav_mel"] /
                                                    "checkpoints/last.ckpt"))
    utts = [u for u in read_manifest(args.manifest) if u.text][:args.num]
    probe = fit_probe(pipeline.vocoder, read_manifest(args.probe_manifest)[:args.probe_num]) \
        if args.probe_num > 0 else None
    versions = [synthesize(pipeline, mel_vocoder, u, probe) for u in utts]
    report: dict[str, Any] = {
        "utterances": [u.id for u in utts], "mcd_db": mcd_figures(versions),
        **superb_figures(versions, utts, Path(args.superb)),
        "training_seconds": training_times(stages),
        "spectrogram": str(spectrogram_png(versions[0], f"{utts[0].id}: {utts[0].text}",
                                           out / "spectrogram.png"))}
    mcd = report["mcd_db"]
    report["vocoder_beats_griffin_lim_mcd"] = mcd["copy"] < mcd["griffin_lim"]
    if "mel_vocoder" in mcd:
        report["mel_vocoder_beats_griffin_lim_mcd"] = mcd["mel_vocoder"] < mcd["griffin_lim"]
    if "griffin_lim_embeddings" in mcd:
        report["vocoder_beats_griffin_lim_on_embeddings_mcd"] = \
            mcd["copy"] < mcd["griffin_lim_embeddings"]
    write_listening_wavs(versions, out)
    report["eval_seconds"] = round(time.perf_counter() - start, 1)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    json.dump(report, sys.stdout, indent=2)
    print()
    return report


if __name__ == "__main__":
    main()
