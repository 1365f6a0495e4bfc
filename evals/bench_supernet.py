"""LightHuBERT supernet benchmarks, printed as JSON (figures, not tests; nothing is asserted).

``python -m evals.bench_supernet`` measures, on this machine (fp32, torch's thread count):

slicing_overhead   forward+backward of the Base supernet at its default subnet (640 / 10 heads /
                   2560 / 12 layers) vs the dense model extracted at the same subnet, on a
                   4 x 4 s batch: the cost of running sliced weights (target ratio <= 1.10).
subnet_speed       training-step time (forward+backward) at the min and max subnets of the Base
                   space and at the Small space's default subnet (3.5x fewer parameters than
                   Base max; Base's smallest subnet has only 2.3x fewer), with the shared conv
                   front end trained and frozen (no parameter needs a gradient, so autograd
                   records nothing there, as under no_grad), and the front end's share of each
                   step: its forward+backward over the trained step, its forward under no_grad
                   over the frozen step (target: the 3.5x smaller subnet >= 2.5x faster).
inference_rtf      real-time factor (compute seconds / audio seconds) of extracted subnets and of
                   a dense HuBERT Base (torchaudio ``hubert_base()``, random weights) on 10 s of
                   audio, batch 1, ``torch.inference_mode``.

Times are medians of ``--repeats`` runs after one warm-up run; the models compared in one figure
take turns run by run, so load from other processes falls on them alike. The step loss is the
mean square of the last hidden state (a distillation head would add one 768 x D matmul).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from speechbert.models.lighthubert.extract import extract_subnet
from speechbert.models.lighthubert.space import SearchSpace, base, count_params, small
from speechbert.models.lighthubert.supernet import LightHubertSupernet, build_supernet
from speechbert.nn.elastic import SubnetConfig

Forward = Callable[[], torch.Tensor]
"""Runs a model on the benchmark batch and returns a scalar loss."""


def median_seconds(fns: Mapping[str, Callable[[], object]], repeats: int,
                   warmup: int = 1) -> dict[str, float]:
    """Median wall time of each ``fns[name]()`` over ``repeats`` runs after ``warmup`` untimed
    ones; the functions take turns, so load from other processes hits them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def train_step(model: nn.Module, forward: Forward) -> Callable[[], None]:
    """One forward + backward of ``forward`` on ``model`` (gradients cleared after)."""
    def step() -> None:
        forward().backward()
        model.zero_grad(set_to_none=True)
    return step


def audio_batch(batch: int, seconds: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded quiet noise (B, T) with full lengths (B,)."""
    samples = int(seconds * 16_000)
    wavs = 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(0))
    return wavs, torch.full((batch,), samples, dtype=torch.int64)


def supernet_forward(supernet: LightHubertSupernet, subnet: SubnetConfig, wavs: torch.Tensor,
                     lengths: torch.Tensor) -> Forward:
    """The step loss of ``supernet`` at ``subnet``."""
    return lambda: supernet(wavs, lengths, subnet).hidden_states[-1].pow(2).mean()


def short(subnet: SubnetConfig) -> str | dict[str, object]:
    """``"640 x 12 layers, 10 heads, 2560 FFN"`` for uniform subnets, else the full dict."""
    if len(set(subnet.heads)) == 1 and len(set(subnet.ffn_dims)) == 1:
        return (f"{subnet.embed_dim} x {subnet.depth} layers, {subnet.heads[0]} heads, "
                f"{subnet.ffn_dims[0]} FFN")
    return subnet.to_dict()


def bench_slicing_overhead(supernet: LightHubertSupernet, subnet: SubnetConfig,
                           wavs: torch.Tensor, lengths: torch.Tensor,
                           repeats: int) -> dict[str, object]:
    """Supernet at ``subnet`` vs the dense model extracted there, forward+backward."""
    dense = extract_subnet(supernet, subnet).train()
    times = median_seconds({
        "supernet": train_step(supernet, supernet_forward(supernet, subnet, wavs, lengths)),
        "dense": train_step(dense, lambda: dense(wavs, lengths).hidden_states[-1].pow(2).mean()),
    }, repeats)
    return {"subnet": short(subnet), "supernet_step_s": times["supernet"],
            "dense_step_s": times["dense"],
            "supernet_over_dense": times["supernet"] / times["dense"], "target_ratio_max": 1.10}


def front_end_no_grad(supernet: LightHubertSupernet, wavs: torch.Tensor,
                      lengths: torch.Tensor) -> Callable[[], None]:
    """The shared conv front end's forward alone under ``torch.no_grad`` (its frozen cost)."""
    def run() -> None:
        with torch.no_grad():
            supernet.feature_extractor(wavs, lengths)
    return run


def front_end_forward(supernet: LightHubertSupernet, wavs: torch.Tensor,
                      lengths: torch.Tensor) -> Forward:
    """A loss of the shared conv front end alone."""
    def forward() -> torch.Tensor:
        feats, _ = supernet.feature_extractor(wavs, lengths)
        return feats.pow(2).mean()
    return forward


@dataclass
class StepTimes:
    """Training-step figures of one subnet."""

    subnet: SubnetConfig
    """The subnet."""
    params_m: float
    """Its parameters, in millions."""
    step_s: float
    """Forward + backward seconds, front end trained."""
    frozen_s: float
    """Forward + backward seconds, front end frozen (no gradient through it)."""

    def to_dict(self, front_end_s: float, front_end_frozen_s: float) -> dict[str, object]:
        """JSON form, with the front end's share of the step, trained and frozen."""
        return {"subnet": short(self.subnet), "params_m": self.params_m,
                "step_s": self.step_s, "step_frozen_front_end_s": self.frozen_s,
                "front_end_fraction": front_end_s / self.step_s,
                "front_end_fraction_frozen": front_end_frozen_s / self.frozen_s}


def subnet_steps(supernet: LightHubertSupernet, space: SearchSpace,
                 subnets: dict[str, SubnetConfig], wavs: torch.Tensor, lengths: torch.Tensor,
                 repeats: int) -> tuple[dict[str, StepTimes], float, float]:
    """Step times of ``subnets`` with the front end trained and frozen, and the front end's
    (forward+backward, and forward under no_grad)."""
    steps: dict[str, Callable[[], object]] = {
        name: train_step(supernet, supernet_forward(supernet, subnet, wavs, lengths))
        for name, subnet in subnets.items()}
    trained = median_seconds({**steps, "front_end": train_step(
        supernet, front_end_forward(supernet, wavs, lengths))}, repeats)
    supernet.feature_extractor.requires_grad_(False)
    frozen = median_seconds({**steps, "front_end": front_end_no_grad(supernet, wavs, lengths)},
                            repeats)
    supernet.feature_extractor.requires_grad_(True)
    times = {name: StepTimes(subnet, count_params(space, subnet) / 1e6, trained[name],
                             frozen[name]) for name, subnet in subnets.items()}
    return times, trained["front_end"], frozen["front_end"]


def bench_subnet_speed(wavs: torch.Tensor, lengths: torch.Tensor,
                       repeats: int) -> dict[str, object]:
    """Base min / max and Small default training steps, and the front end's share."""
    space = base()
    supernet = build_supernet(space.arch).train()
    times, front, front_frozen = subnet_steps(supernet, space,
                                              {"base_max": space.max_subnet(),
                                               "base_min": space.min_subnet()},
                                              wavs, lengths, repeats)
    del supernet
    small_space = small()
    small_net = build_supernet(small_space.arch).train()
    small_times, _, _ = subnet_steps(small_net, small_space,
                                  {"small_default": small_space.default_subnet()}, wavs,
                                  lengths, repeats)
    times.update(small_times)
    largest = times["base_max"]
    report: dict[str, object] = {"front_end_step_s": front,
                                 "front_end_no_grad_forward_s": front_frozen,
                                 **{k: v.to_dict(front, front_frozen) for k, v in times.items()}}
    for name in ("base_min", "small_default"):
        entry = times[name]
        report[f"{name}_vs_base_max"] = {
            "params_ratio": largest.params_m / entry.params_m,
            "speedup": largest.step_s / entry.step_s,
            "speedup_frozen_front_end": largest.frozen_s / entry.frozen_s}
    report["target"] = "a 3.5x smaller subnet >= 2.5x faster"
    return report


def inference(model: nn.Module, wavs: torch.Tensor, lengths: torch.Tensor) -> Callable[[], None]:
    """One forward pass of ``model`` under ``torch.inference_mode``."""
    def run() -> None:
        with torch.inference_mode():
            model(wavs, lengths)
    return run


def bench_inference_rtf(audio_seconds: float, repeats: int) -> dict[str, object]:
    """RTF of extracted Base / Small subnets vs a dense HuBERT Base, batch 1, taking turns."""
    import torchaudio

    wavs, lengths = audio_batch(1, audio_seconds)
    teacher_model = torchaudio.models.hubert_base().eval()
    runs = {"hubert_base": inference(teacher_model, wavs, lengths)}
    params = {"hubert_base": sum(p.numel() for p in teacher_model.parameters()) / 1e6}
    subnets: dict[str, SubnetConfig] = {}
    for space in (base(), small()):
        supernet = build_supernet(space.arch).eval()
        for name, subnet in (("min", space.min_subnet()), ("default", space.default_subnet()),
                             ("max", space.max_subnet())):
            key = f"{space.name}_{name}"
            runs[key] = inference(extract_subnet(supernet, subnet), wavs, lengths)
            subnets[key], params[key] = subnet, count_params(space, subnet) / 1e6
    seconds = median_seconds(runs, repeats)
    teacher = seconds.pop("hubert_base")
    report: dict[str, object] = {"audio_seconds": audio_seconds,
                                 "hubert_base_params_m": params["hubert_base"],
                                 "hubert_base_rtf": teacher / audio_seconds}
    for key, value in seconds.items():
        report[key] = {"subnet": short(subnets[key]), "params_m": params[key],
                       "rtf": value / audio_seconds, "speedup_vs_hubert_base": teacher / value}
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI: run the three sections and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--batch", type=int, default=4, help="utterances per training batch")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per utterance")
    parser.add_argument("--rtf-seconds", type=float, default=10.0, help="audio for the RTF")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 is steadier on a busy machine")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    wavs, lengths = audio_batch(args.batch, args.seconds)
    space = base()
    supernet = build_supernet(space.arch).train()
    report: dict[str, object] = {
        "torch_threads": torch.get_num_threads(),
        "batch": f"{args.batch} x {args.seconds} s",
        "slicing_overhead": bench_slicing_overhead(supernet, space.default_subnet(), wavs,
                                                   lengths, args.repeats)}
    del supernet
    report["subnet_speed"] = bench_subnet_speed(wavs, lengths, args.repeats)
    report["inference_rtf"] = bench_inference_rtf(args.rtf_seconds, args.repeats)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
