"""The SUPERB ASR and SV cells as judges of synthesised speech (intelligibility, speaker).

A finished cell (``speechbert-superb upstream=<u> task=asr|sv``) is a folder with
``result.json`` (the tested checkpoint), ``config.yaml`` (the upstream spec) and the Lightning
checkpoint of the featurizer and head (``hyper_parameters`` = the task config). The judge runs
the cell's upstream on a waveform, the weighted layer sum and the head: greedy CTC text for
ASR, an x-vector for SV. Until a cell exists its figures are reported as pending, with the
command that makes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from speechbert.data.manifest import Utterance
from speechbert.data.text import CharVocab
from speechbert.metrics import cer, wer
from speechbert.models.heads.asr import AsrHead, AsrHeadConfig, greedy_decode
from speechbert.models.heads.featurizer import Featurizer
from speechbert.models.heads.sv import XvectorConfig, XvectorHead
from speechbert.models.load import UpstreamSpec, load_upstream

PENDING = ("pending: no finished SUPERB {task} cell at {path} (make it with speechbert-superb "
           "upstream=<the judge's upstream> task={task})")
"""Reason reported while a judge is missing."""


@dataclass
class Judge:
    """A SUPERB cell's upstream, featurizer and head, ready to run on waveforms."""

    upstream: torch.nn.Module
    """The frozen encoder (eval)."""
    featurizer: Featurizer
    """The trained weighted layer sum."""
    head: torch.nn.Module
    """The trained task head (eval)."""
    source: str
    """The checkpoint it came from."""

    @torch.no_grad()
    def run(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head output for one waveform (S,) (an SV head's embedding, before its training-only
        layers), and the frame count (1,)."""
        out = self.upstream(wav.unsqueeze(0), torch.tensor([wav.numel()]))
        features = self.featurizer([h.float() for h in out.hidden_states])  # (1, T, D)
        if isinstance(self.head, XvectorHead):
            return self.head.embed(features, out.lengths), out.lengths  # (1, E)
        return self.head(features, out.lengths), out.lengths  # (1, T, V)


def load_judge(cell: Path, task: str) -> Judge:
    """The judge of a finished cell (``task`` ``asr`` or ``sv``)."""
    result = json.loads((cell / "result.json").read_text())
    config = yaml.safe_load((cell / "config.yaml").read_text())
    upstream = load_upstream(UpstreamSpec(**config["upstream"])).module.eval()
    ckpt = torch.load(result["checkpoint"], map_location="cpu", weights_only=True)
    state, hparams = ckpt["state_dict"], ckpt["hyper_parameters"]
    featurizer = Featurizer(state["featurizer.weights"].numel(),
                            layer_norm=bool(hparams.get("layer_norm", False)))
    head_cfg: Any = hparams["head"]
    head: torch.nn.Module
    if task == "asr":
        cfg = AsrHeadConfig(**head_cfg)
        head = AsrHead(_input_dim(state), cfg)
    else:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in head_cfg.items()}
        head = XvectorHead(_input_dim(state), XvectorConfig(**values))
    featurizer.load_state_dict({k.removeprefix("featurizer."): v for k, v in state.items()
                                if k.startswith("featurizer.")})
    head.load_state_dict({k.removeprefix("head."): v for k, v in state.items()
                          if k.startswith("head.")})
    return Judge(upstream, featurizer.eval(), head.eval(), result["checkpoint"])


def _input_dim(state: dict[str, torch.Tensor]) -> int:
    """Feature width the head reads: the in-width of its first 2-D weight."""
    first = next(v for k, v in state.items() if k.startswith("head.") and v.dim() >= 2)
    return int(first.shape[-1] if first.dim() == 2 else first.shape[1])


def asr_figures(versions: list[dict[str, torch.Tensor]], utts: list[Utterance],
                cell: Path) -> dict[str, Any]:
    """WER and CER per system by the ASR cell, or a pending note."""
    if not (cell / "result.json").is_file():
        return {"status": PENDING.format(task="asr", path=cell)}
    judge, vocab = load_judge(cell, "asr"), CharVocab()
    refs = [(u.text or "").upper() for u in utts]
    figures: dict[str, Any] = {"judge": judge.source}
    for name in versions[0]:
        hyps = []
        for v in versions:
            logits, lengths = judge.run(v[name])
            hyps += greedy_decode(logits, lengths, vocab)
        figures[name] = {"wer": wer(refs, hyps), "cer": cer(refs, hyps), "first": hyps[0]}
    figures["reference_first"] = refs[0]
    return figures


def sv_figures(versions: list[dict[str, torch.Tensor]], cell: Path) -> dict[str, Any]:
    """Mean cosine of each system's SV embedding to the recording's, or a pending note."""
    if not (cell / "result.json").is_file():
        return {"status": PENDING.format(task="sv", path=cell)}
    judge = load_judge(cell, "sv")
    figures: dict[str, Any] = {"judge": judge.source}
    for name in [n for n in versions[0] if n != "real"]:
        cosines = [float(torch.nn.functional.cosine_similarity(
            judge.run(v["real"])[0], judge.run(v[name])[0])) for v in versions]
        figures[name] = sum(cosines) / len(cosines)
    return figures
