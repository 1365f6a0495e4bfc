"""Throughput and peak memory of the real-size recipes on one GPU, beside torchaudio's HuBERT Base.

    python scripts/gpu_recipes.py --steps 300 --out runs/gpu_recipes   # one GPU, bf16-mixed
    python scripts/gpu_recipes.py --steps 2 --device cpu --precision 32 \\
        --batch-seconds 4 --clip-seconds 2 --num-utterances 4 --asr-batch-size 2   # a check

Runs, each through its own command line with overrides (so it follows the shipped configs):
``hubert_base`` (``speechbert-pretrain experiment=hubert_base_librispeech_iter1``),
``lighthubert_stage1`` and ``lighthubert_stage2`` (``speechbert-distill
distill_experiment=lighthubert_base_stage1|2``, teacher = the ``hubert_base`` run's checkpoint)
and ``asr_superb_online`` (``python -m evals.superb --tasks asr_superb`` with
``task.features=online`` over that same checkpoint); then ``torchaudio_hubert_base``: a bare
training step of ``torchaudio.models.hubert_pretrain_base`` (forward, masked cross-entropy plus
the feature penalty, backward, clipping, AdamW) on the same batch shape and precision, in this
process. w2v-BERT is not run: the GPU image has no fairseq2.

Data: ``--num-utterances`` rows of the bundled corpus (``data/mini``, ``make setup``) at least
``--clip-seconds`` long, each cut to exactly that length by its manifest row, with random
100-cluster frame labels (label values do not change the cost of a step). Equal lengths make
every batch hold ``floor(batch seconds / clip)`` clips, so the audio of a step is known.

Figures (printed as JSON, also written to ``<out>/results.json``): audio-seconds per second
between the first logged step after ``--skip-steps`` and the last one (wall times of the
TensorBoard ``train/loss`` events the runs log every step), the same over the whole launch
(start-up, model build, checkpoints included), its ratio to torchaudio's step, and the peak
memory: on a GPU the largest ``memory.used`` nvidia-smi reported while the run was alive
(everything on that GPU, CUDA context included; run on an otherwise idle GPU), on the CPU the
child's peak resident set (VmHWM). torchaudio's row also gives ``torch.cuda.max_memory_allocated``.

Needs what the command lines need: torch with torchaudio of the same release, lightning,
hydra-core, omegaconf, soundfile, tensorboard and this repository (``pip install -e .`` or run
from its root); not fairseq2 (checked on the CPU with fairseq2 made unimportable: pretraining,
stage 1 and the ASR cell run). On an image without them, install wheels brought along first.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
"""Repository root: the working directory of every launch."""
BUNDLED = REPO / "data" / "mini" / "manifests" / "librispeech"
"""LibriSpeech-layout manifests of the bundled corpus."""
SAMPLE_RATE = 16_000
"""Audio sample rate of every manifest."""
NUM_CLASSES = 100
"""Clusters of the random iteration-1 labels (the recipe's ``model.num_classes``)."""
RECIPES = ("hubert_base", "lighthubert_stage1", "lighthubert_stage2", "asr_superb_online",
           "torchaudio_hubert_base")
"""What the script can run, in order (``--skip`` takes these names)."""
NOT_RUN = {"w2vbert_300m": "the GPU image has no fairseq2 (speechbert's w2v-BERT is fairseq2's)"}
"""Recipes this script never runs, and why."""


@dataclass
class Options:
    """Command-line settings of one run of the script."""

    steps: int
    """Optimizer steps of every run."""
    device: str
    """``cuda`` or ``cpu``."""
    precision: str
    """Lightning precision of every run (``bf16-mixed``, ``32``, ...)."""
    out: Path
    """Folder of the runs and ``results.json`` (run folders are deleted unless ``keep``)."""
    batch_seconds: float
    """Padded audio per pretraining/distillation batch (the recipes use 87.5)."""
    clip_seconds: float
    """Length of every clip."""
    num_utterances: int
    """Clips in the training manifest."""
    asr_batch_size: int
    """Utterances per ``asr_superb`` batch (the recipe uses 32)."""
    skip_steps: int
    """Logged steps left out of the timed window (compilation, autotuning)."""
    skip: tuple[str, ...]
    """Recipe names not to run."""
    keep: bool
    """Keep the run folders (checkpoints of ~1-3 GB each)."""


@dataclass
class Measured:
    """One recipe's figures."""

    audio_seconds_per_step: float
    """Audio in one optimizer step (all clips of a batch)."""
    steps: int
    """Optimizer steps run."""
    wall_s: float
    """Wall time of the whole launch."""
    audio_s_per_s: float | None = None
    """Audio-seconds per second in the timed window (None when fewer than 2 steps logged)."""
    audio_s_per_s_whole_launch: float | None = None
    """Audio-seconds per second over the whole launch (start-up included)."""
    peak_memory_mib: float | None = None
    """Peak memory while it ran (see the module docstring for what is measured)."""
    extra: dict[str, float | str] = field(default_factory=dict)
    """Anything else worth reporting (e.g. torch.cuda.max_memory_allocated)."""


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Options from the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--precision", default="bf16-mixed", help="Lightning precision")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_recipes")
    p.add_argument("--batch-seconds", type=float, default=87.5)
    p.add_argument("--clip-seconds", type=float, default=4.0)
    p.add_argument("--num-utterances", type=int, default=84)
    p.add_argument("--asr-batch-size", type=int, default=32)
    p.add_argument("--skip-steps", type=int, default=10, help="logged steps not timed")
    p.add_argument("--skip", nargs="*", default=[], choices=RECIPES, help="recipes not to run")
    p.add_argument("--keep", action="store_true", help="keep the run folders")
    a = p.parse_args(argv)
    if a.steps < 1 or a.clip_seconds * SAMPLE_RATE < 32_000 or a.batch_seconds < a.clip_seconds:
        p.error("need --steps >= 1, --clip-seconds >= 2 (the recipes' data.min_samples) and "
                "--batch-seconds >= --clip-seconds")
    return Options(a.steps, a.device, a.precision, a.out, a.batch_seconds, a.clip_seconds,
                   a.num_utterances, a.asr_batch_size, a.skip_steps, tuple(a.skip), a.keep)


def clips_per_batch(opts: Options) -> int:
    """Clips in one pretraining/distillation batch (equal lengths: no padding)."""
    return math.floor(opts.batch_seconds / opts.clip_seconds)


def write_data(opts: Options) -> dict[str, str]:
    """Training/validation manifests of equal clips and random labels; their paths by role."""
    sys.path.insert(0, str(REPO))
    from speechbert.data.frames import conv_frame_count
    from speechbert.data.manifest import read_manifest, write_manifest
    from speechbert.data.targets import LabelInfo, write_label_info, write_labels

    samples = round(opts.clip_seconds * SAMPLE_RATE)
    folder = opts.out / "data"
    paths: dict[str, str] = {}
    gen = torch.Generator().manual_seed(0)
    for role, source, count in (("train", "train-clean-100", opts.num_utterances),
                                ("valid", "dev-clean", 2), ("test", "test-clean", 2)):
        rows = [replace(u, num_samples=samples)
                for u in read_manifest(BUNDLED / f"{source}.tsv") if u.num_samples >= samples]
        if len(rows) < count:
            raise SystemExit(f"{source}: only {len(rows)} utterances of {opts.clip_seconds} s; "
                             f"lower --num-utterances or --clip-seconds")
        paths[role] = str(write_manifest(folder / f"{role}.tsv", rows[:count]))
        labels = [torch.randint(0, NUM_CLASSES, (conv_frame_count(samples),), generator=gen)
                  for _ in rows[:count]]
        km = write_labels(folder / f"{role}.km", labels)
        write_label_info(km, LabelInfo(n_clusters=NUM_CLASSES, features="random",
                                       manifest=paths[role]))
        paths[f"{role}_km"] = str(km)
    return paths


class PeakMemory:
    """Polls the peak memory of a running child (nvidia-smi on a GPU, VmHWM on the CPU)."""

    def __init__(self, device: str, pid: int) -> None:
        self.device, self.pid, self.peak_mib = device, pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _read(self) -> float | None:
        if self.device == "cuda":
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used",
                                  "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True, check=False).stdout.strip()
            return float(out) if out else None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        kib = [int(line.split()[1]) for line in status.splitlines()
               if line.startswith("VmHWM:")]
        return kib[0] / 1024 if kib else None

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            value = self._read()
            if value is not None:
                self.peak_mib = max(self.peak_mib, value)

    def stop(self) -> float | None:
        """Stop polling; the peak in MiB (None when nothing could be read)."""
        self._stop.set()
        self._thread.join()
        return self.peak_mib or None


def launch(module: str, args: Sequence[str], device: str, log: Path) -> tuple[float, float | None]:
    """Run ``python -m module args`` from the repo root, output to ``log``; wall time and peak
    memory. Raises ``RuntimeError`` with the log's tail on a non-zero exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                                stdout=f, stderr=subprocess.STDOUT)
        peak = PeakMemory(device, proc.pid)
        code = proc.wait()
    wall, peak_mib = time.perf_counter() - start, peak.stop()
    if code != 0:
        raise RuntimeError(f"{module} exited with {code}; last lines of {log}:\n"
                           + "\n".join(log.read_text().splitlines()[-30:]))
    return wall, peak_mib


def step_times(run_dir: Path, tag: str = "train/loss") -> list[tuple[int, float]]:
    """(step, wall time) of every ``tag`` event the run's TensorBoard logger wrote, by step."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    times: dict[int, float] = {}
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(events)).Load():
            if any(v.tag == tag for v in event.summary.value):
                times[int(event.step)] = float(event.wall_time)
    return sorted(times.items())


def measure(run_dir: Path, audio_per_step: float, opts: Options, wall: float,
            peak: float | None) -> Measured:
    """Throughput of a finished run from its logged step times (module docstring)."""
    times = step_times(run_dir)
    timed = times[min(opts.skip_steps, max(len(times) - 2, 0)):]
    result = Measured(audio_per_step, opts.steps, wall,
                      audio_s_per_s_whole_launch=audio_per_step * opts.steps / wall,
                      peak_memory_mib=peak)
    if len(timed) >= 2:
        (s0, t0), (s1, t1) = timed[0], timed[-1]
        result.audio_s_per_s = audio_per_step * (s1 - s0) / max(t1 - t0, 1e-9)
        result.extra["timed_steps"] = f"{s0}-{s1}"
    return result


def trainer_overrides(opts: Options, prefix: str = "trainer.") -> list[str]:
    """One device, the chosen precision, a logged step each step, no checkpoint but the last."""
    accelerator = "gpu" if opts.device == "cuda" else "cpu"
    far = opts.steps + 1
    return [f"{prefix}accelerator={accelerator}", f"{prefix}devices=1",
            f"{prefix}precision={opts.precision}", f"{prefix}log_every_n_steps=1",
            f"{prefix}progress_bar=false", f"{prefix}checkpoint_every_n_steps={far}"]


def common_overrides(opts: Options, data: dict[str, str], run_dir: Path) -> list[str]:
    """Overrides shared by pretraining and distillation: paths, steps, batch, trainer."""
    return [f"run_dir={run_dir}", f"data.train_manifests=[{data['train']}]",
            f"data.valid_manifests=[{data['valid']}]",
            f"data.max_batch_seconds={opts.batch_seconds}",
            *(["data.num_workers=0"] if opts.device == "cpu" else []),  # the recipe's 8 on GPUs
            f"optim.max_steps={opts.steps}", f"optim.warmup_steps={min(opts.steps, 10)}",
            f"trainer.val_every_n_steps={opts.steps + 1}", "resume=never",
            *trainer_overrides(opts)]


def run_hubert_base(opts: Options, data: dict[str, str]) -> Measured:
    """HuBERT Base iteration 1 through ``speechbert-pretrain``."""
    run_dir = opts.out / "hubert_base"
    args = ["experiment=hubert_base_librispeech_iter1", *common_overrides(opts, data, run_dir),
            f"data.train_labels=[{data['train_km']}]", f"data.valid_labels=[{data['valid_km']}]"]
    wall, peak = launch("speechbert.cli.pretrain", args, opts.device, run_dir.with_suffix(".log"))
    return measure(run_dir, clips_per_batch(opts) * opts.clip_seconds, opts, wall, peak)


def teacher_checkpoint(opts: Options) -> Path:
    """The ``hubert_base`` run's ``last.ckpt`` (the teacher and the SUPERB upstream)."""
    ckpt = opts.out / "hubert_base" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise RuntimeError(f"{ckpt} missing: run hubert_base first (do not --skip it)")
    return ckpt


def run_lighthubert(stage: int, opts: Options, data: dict[str, str]) -> Measured:
    """LightHuBERT Base stage 1 or 2 through ``speechbert-distill``."""
    run_dir = opts.out / f"lighthubert_stage{stage}"
    args = [f"distill_experiment=lighthubert_base_stage{stage}",
            *common_overrides(opts, data, run_dir), f"distill.teacher={teacher_checkpoint(opts)}"]
    if stage == 2:
        stage1 = opts.out / "lighthubert_stage1" / "checkpoints" / "last.ckpt"
        if not stage1.is_file():
            raise RuntimeError(f"{stage1} missing: run lighthubert_stage1 first")
        args.append(f"distill.init_from={stage1}")
    wall, peak = launch("speechbert.cli.distill", args, opts.device, run_dir.with_suffix(".log"))
    return measure(run_dir, clips_per_batch(opts) * opts.clip_seconds, opts, wall, peak)


def run_asr_superb(opts: Options, data: dict[str, str]) -> Measured:
    """One ``asr_superb`` cell with ``task.features=online`` through ``evals.superb``."""
    out = opts.out / "superb"
    spec = opts.out / "hubert_base_upstream.yaml"
    spec.write_text(f"name: hubert_base_gpu\nkind: hubert\npath: {teacher_checkpoint(opts)}\n")
    overrides = [f"task.train_manifest={data['train']}", f"task.valid_manifest={data['valid']}",
                 f"task.test_manifest={data['test']}", f"task.batch_size={opts.asr_batch_size}",
                 "task.eval_batch_size=2", "task.features=online",
                 f"task.optim.max_steps={opts.steps}", f"task.val_every_n_steps={opts.steps + 1}",
                 f"cache_dir={out / 'cache'}",
                 *[o for o in trainer_overrides(opts) if "checkpoint_every" not in o]]
    args = ["--upstreams", str(spec), "--tasks", "asr_superb", "--out", str(out),
            "--override", *overrides]
    wall, peak = launch("evals.superb", args, opts.device, out.with_suffix(".log"))
    return measure(out, opts.asr_batch_size * opts.clip_seconds, opts, wall, peak)


def run_torchaudio(opts: Options, data: dict[str, str]) -> Measured:
    """torchaudio's ``hubert_pretrain_base`` training step on the pretraining batch shape."""
    import torchaudio

    device = torch.device(opts.device)
    torch.manual_seed(0)
    model = torchaudio.models.hubert_pretrain_base(num_classes=NUM_CLASSES).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6,
                                  weight_decay=0.01)
    batch, samples = clips_per_batch(opts), round(opts.clip_seconds * SAMPLE_RATE)
    wavs = torch.randn(batch, samples, device=device) * 0.1  # (B, T)
    lengths = torch.full((batch,), samples, device=device)  # (B,)
    frames = model.wav2vec2.feature_extractor(wavs[:1], lengths[:1])[0].shape[1]
    labels = torch.randint(0, NUM_CLASSES, (batch, frames), device=device)  # (B, T')
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=opts.precision.startswith("bf16"))

    def step() -> None:
        with autocast:
            logit_m, _, feature_penalty = model(wavs, labels, lengths)
        target = torch.zeros(logit_m.shape[0], dtype=torch.long, device=device)
        loss = torch.nn.functional.cross_entropy(logit_m.float(), target) \
            + 10.0 * feature_penalty.float()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return time_steps(step, opts, batch * opts.clip_seconds, device)


def time_steps(step: Callable[[], None], opts: Options, audio_per_step: float,
               device: torch.device) -> Measured:
    """Run ``step`` ``opts.steps`` times, timing those after the first ``skip_steps``."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    warm = min(opts.skip_steps, opts.steps - 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(warm):
        step()
    sync()
    timed_start = time.perf_counter()
    for _ in range(opts.steps - warm):
        step()
    sync()
    end = time.perf_counter()
    result = Measured(audio_per_step, opts.steps, end - start,
                      audio_s_per_s=audio_per_step * (opts.steps - warm) / (end - timed_start),
                      audio_s_per_s_whole_launch=audio_per_step * opts.steps / (end - start))
    if device.type == "cuda":
        result.peak_memory_mib = torch.cuda.max_memory_reserved() / 2**20
        result.extra["max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


RUNNERS: dict[str, Callable[[Options, dict[str, str]], Measured]] = {
    "hubert_base": run_hubert_base,
    "lighthubert_stage1": lambda o, d: run_lighthubert(1, o, d),
    "lighthubert_stage2": lambda o, d: run_lighthubert(2, o, d),
    "asr_superb_online": run_asr_superb,
    "torchaudio_hubert_base": run_torchaudio,
}
"""Recipe name -> the function that runs and measures it."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run every recipe not skipped, print and write the JSON report; 1 if any failed."""
    opts = parse_args(argv)
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU; use --device cpu for a check")
    opts.out.mkdir(parents=True, exist_ok=True)
    data = write_data(opts)
    report: dict[str, object] = {
        "device": torch.cuda.get_device_name(0) if opts.device == "cuda" else "cpu",
        "precision": opts.precision, "steps": opts.steps, "clip_seconds": opts.clip_seconds,
        "clips_per_batch": clips_per_batch(opts), "torch": torch.__version__,
        "results": {}, "failed": {}, "skipped": {**NOT_RUN, **{n: "--skip" for n in opts.skip}}}
    results, failed = report["results"], report["failed"]
    assert isinstance(results, dict) and isinstance(failed, dict)
    for name in RECIPES:
        if name in opts.skip:
            continue
        print(f"[gpu_recipes] {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = asdict(RUNNERS[name](opts, data))
        except RuntimeError as exc:
            failed[name] = str(exc)
    base = results.get("torchaudio_hubert_base", {}).get("audio_s_per_s")
    for row in results.values():
        if base and row.get("audio_s_per_s"):
            row["ratio_vs_torchaudio"] = row["audio_s_per_s"] / base
    text = json.dumps(report, indent=2)
    (opts.out / "results.json").write_text(text + "\n")
    print(text)
    if not opts.keep:
        for name in ("hubert_base", "lighthubert_stage1", "lighthubert_stage2", "superb"):
            shutil.rmtree(opts.out / name, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
