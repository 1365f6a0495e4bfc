"""On-disk cache of a frozen upstream's hidden states, computed once per dataset split.

SUPERB heads train for many epochs on a frozen upstream, so its hidden states are computed once
and read back from disk. A cache entry is a folder under the cache root named by a hash of

* the :class:`CacheKey`: upstream identity (checkpoint path + size + mtime, or a caller-chosen
  name), subnet JSON (or None), manifest path + content hash, layer selection, fp16 flag;
* the utterances' ids, paths, offsets and lengths, in order (so a filtered split is its own
  entry).

Any change is a miss and recomputes. The folder holds ``shard-NNNNN.pt`` files (``torch.save`` of
``{"ids", "frames", "layers"}``: per layer, the frames of the shard's utterances concatenated in
order) and ``index.json``. Entries are written into a ``.partial-*`` folder that is renamed into
place only when complete, so a crashed or interrupted run is never read; a leftover partial
folder is ignored (:meth:`FeatureCache.partial_folders` lists them for cleaning). Shards are read
with ``torch.load(..., weights_only=True, mmap=True)``, so features stay in the page cache, not
in each process's memory.

Disk use is ``layers x frames x D`` values: HuBERT Base's 13 layers at 50 Hz take about 1 MB per
second of audio in fp16; select layers (``CacheKey.layers``) for large sets.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset
from tqdm import tqdm

from speechbert.data.collate import pad_batch
from speechbert.data.manifest import Utterance, load_utterance
from speechbert.errors import ConfigError, ManifestError

FORMAT_VERSION = 1
"""Version of the folder layout; bumping it invalidates every entry."""
INDEX_FILE = "index.json"
"""Written last inside a complete entry."""
PARTIAL_PREFIX = ".partial-"
"""Prefix of folders being written (or left behind by a crash)."""

ComputeFn = Callable[[Sequence[Utterance]], list[list[torch.Tensor]]]
"""Hidden states of a batch of utterances: per utterance, one (T_i, D_l) tensor per layer."""


def checkpoint_identity(path: str | Path) -> str:
    """``"checkpoint <abs path> size=<bytes> mtime_ns=<ns>"``; changes when the file does."""
    src = Path(path).resolve()
    if not src.is_file():
        raise ConfigError(f"{src}: upstream checkpoint not found; pass the checkpoint the "
                          f"upstream was loaded from, or a name= key for built-in upstreams")
    stat = src.stat()
    return f"checkpoint {src} size={stat.st_size} mtime_ns={stat.st_mtime_ns}"


def manifest_identity(path: str | Path) -> str:
    """``"<abs path> sha256=<hex>"`` of a manifest's bytes."""
    src = Path(path).resolve()
    if not src.is_file():
        raise ManifestError(f"{src}: manifest not found; run the corpus's data_prep command")
    return f"{src} sha256={hashlib.sha256(src.read_bytes()).hexdigest()}"


def canonical_subnet(subnet: str | Mapping[str, Any] | None) -> str | None:
    """Subnet as compact JSON with sorted keys (None stays None), so equal subnets match."""
    if subnet is None:
        return None
    values: Any = subnet
    if isinstance(subnet, str):
        try:
            values = json.loads(subnet)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"subnet must be JSON (SubnetConfig's JSON form) or a dict; "
                              f"got {subnet[:80]!r}: {exc}") from exc
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class CacheKey:
    """Everything the cached hidden states depend on besides the utterance list."""

    upstream: str
    """Upstream identity: :func:`checkpoint_identity`, or a name that changes with its settings."""
    manifest: str
    """:func:`manifest_identity` of the manifest the utterances come from."""
    subnet: str | None = None
    """Canonical JSON of the subnet evaluated (from ``SubnetConfig.to_json()``); None if dense."""
    layers: tuple[int, ...] | None = None
    """Indices of the hidden states stored, in order; None stores all."""
    fp16: bool = False
    """Store floating features as float16 (half the disk); else as computed."""

    @classmethod
    def create(cls, *, manifest: str | Path, checkpoint: str | Path | None = None,
               name: str | None = None, subnet: str | Mapping[str, Any] | None = None,
               layers: Sequence[int] | None = None, fp16: bool = False) -> CacheKey:
        """Key from a manifest path and either an upstream ``checkpoint`` path or a ``name``."""
        if (checkpoint is None) == (name is None):
            raise ConfigError("CacheKey.create needs exactly one of checkpoint= (a file whose "
                              "size and mtime identify the upstream) or name= (e.g. 'fbank80')")
        upstream = checkpoint_identity(checkpoint) if checkpoint is not None else f"name {name}"
        return cls(upstream=upstream, manifest=manifest_identity(manifest),
                   subnet=canonical_subnet(subnet),
                   layers=None if layers is None else tuple(int(i) for i in layers), fp16=fp16)

    def as_json(self) -> dict[str, Any]:
        """The key as JSON-ready values (layers as a list), as stored in ``index.json``."""
        values = asdict(self)
        values["layers"] = None if self.layers is None else list(self.layers)
        return values


def utterances_fingerprint(utterances: Sequence[Utterance]) -> str:
    """sha256 over each utterance's id, path, offset and length, in order."""
    digest = hashlib.sha256()
    for u in utterances:
        digest.update(f"{u.id}\t{u.path}\t{u.offset}\t{u.num_samples}\n".encode())
    return digest.hexdigest()


def entry_name(key: CacheKey, utterances: Sequence[Utterance]) -> str:
    """Folder name of the entry for ``key`` and ``utterances`` (24 hex digits)."""
    payload = {"version": FORMAT_VERSION, "key": key.as_json(),
               "utterances": utterances_fingerprint(utterances)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class CachedItem:
    """One utterance's cached hidden states and its manifest row (transcript, label, speaker)."""

    utterance: Utterance
    """The manifest row: its ``text``, ``label`` and ``speaker`` are the label information."""
    hidden_states: list[torch.Tensor]
    """One (T, D_l) tensor per stored layer (float16 when the key says ``fp16``)."""


@dataclass
class CachedBatch:
    """Zero-padded cached hidden states of a batch."""

    hidden_states: list[torch.Tensor]
    """One (B, T, D_l) tensor per stored layer."""
    lengths: torch.Tensor
    """Valid frames per row (B,) int64."""
    utterances: list[Utterance]
    """Manifest rows, one per batch row."""


def collate_cached(items: Sequence[CachedItem]) -> CachedBatch:
    """Pad a list of :class:`CachedItem` into a :class:`CachedBatch` (DataLoader ``collate_fn``)."""
    num_layers = len(items[0].hidden_states)
    lengths = torch.tensor([it.hidden_states[0].shape[0] for it in items], dtype=torch.int64)
    states = [pad_sequence([it.hidden_states[layer] for it in items], batch_first=True)
              for layer in range(num_layers)]  # L x (B, T, D_l)
    return CachedBatch(hidden_states=states, lengths=lengths,
                       utterances=[it.utterance for it in items])


class CachedFeatures(Dataset):
    """A complete cache entry read as a map-style dataset of :class:`CachedItem`."""

    def __init__(self, folder: Path, index: dict[str, Any], utterances: Sequence[Utterance],
                 from_cache: bool) -> None:
        self.folder = folder
        """The entry's folder."""
        self.utterances = list(utterances)
        """Manifest rows, in cache order."""
        self.from_cache = from_cache
        """True when this entry was found on disk, False when it was just computed."""
        self.num_layers: int = index["num_layers"]
        """Hidden states stored per utterance."""
        self.dims: list[int] = index["dims"]
        """Feature dimension of each stored layer."""
        self._files = [shard["file"] for shard in index["shards"]]
        counts = [shard["count"] for shard in index["shards"]]
        self._starts = [0, *itertools.accumulate(counts)][:len(counts)]  # first index per shard
        self._shards: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        """Number of utterances."""
        return len(self.utterances)

    def __getitem__(self, index: int) -> CachedItem:
        """Utterance ``index``'s hidden states (views into its memory-mapped shard)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} utterances")
        shard_no = bisect.bisect_right(self._starts, index) - 1
        shard = self._shard(shard_no)
        pos = index - self._starts[shard_no]
        assert shard["ids"][pos] == self.utterances[index].id, "cache shard out of order"
        start, end = int(shard["offsets"][pos]), int(shard["offsets"][pos + 1])
        return CachedItem(utterance=self.utterances[index],
                          hidden_states=[layer[start:end] for layer in shard["layers"]])

    def _shard(self, shard_no: int) -> dict[str, Any]:
        if shard_no not in self._shards:
            shard = torch.load(self.folder / self._files[shard_no], weights_only=True, mmap=True)
            shard["offsets"] = torch.cat([torch.zeros(1, dtype=torch.int64),
                                          shard["frames"].cumsum(0)])  # (n + 1,)
            self._shards[shard_no] = shard
        return self._shards[shard_no]


class _ShardWriter:
    """Groups utterances' hidden states into shards of ``shard_size`` and writes them."""

    def __init__(self, folder: Path, shard_size: int, fp16: bool) -> None:
        self.folder = folder
        self.shard_size = shard_size
        self.fp16 = fp16
        self.shards: list[dict[str, Any]] = []
        self.dims: list[int] | None = None
        self.dtype: str | None = None
        self._ids: list[str] = []
        self._states: list[list[torch.Tensor]] = []

    def add(self, utt_id: str, states: list[torch.Tensor]) -> None:
        """Queue one utterance's layers, each (T, D_l); flush a full shard."""
        states = [self._stored(s) for s in states]
        assert states and all(s.dim() == 2 for s in states), (
            f"{utt_id}: compute_fn must return at least one (T, D) tensor per utterance")
        assert len({s.shape[0] for s in states}) == 1, f"{utt_id}: layers differ in frames"
        dims = [s.shape[1] for s in states]
        assert self.dims in (None, dims), f"{utt_id}: layer dims {dims} != {self.dims}"
        self.dims, self.dtype = dims, str(states[0].dtype).removeprefix("torch.")
        self._ids.append(utt_id)
        self._states.append(states)
        if len(self._ids) == self.shard_size:
            self.flush()

    def _stored(self, state: torch.Tensor) -> torch.Tensor:
        state = state.detach().to("cpu")
        if self.fp16 and state.is_floating_point():
            state = state.half()
        return state.contiguous()

    def flush(self) -> None:
        """Write the queued utterances as one shard (nothing when the queue is empty)."""
        if not self._ids:
            return
        name = f"shard-{len(self.shards):05d}.pt"
        frames = torch.tensor([states[0].shape[0] for states in self._states])  # (n,)
        layers = [torch.cat([states[i] for states in self._states])  # (sum T, D_i)
                  for i in range(len(self._states[0]))]
        torch.save({"ids": self._ids, "frames": frames, "layers": layers}, self.folder / name)
        self.shards.append({"file": name, "count": len(self._ids)})
        self._ids, self._states = [], []


def upstream_compute_fn(upstream: Callable[[torch.Tensor, torch.Tensor], Any],
                        device: torch.device | str = "cpu") -> ComputeFn:
    """A :data:`ComputeFn` that loads the utterances' audio and runs ``upstream`` on them.

    ``upstream(wavs (B, T), lengths (B,))`` must return an object with ``hidden_states``
    (list of (B, T', D)) and ``lengths`` (B,), i.e. an :class:`~speechbert.models.upstream.
    Upstream`; put it in eval mode and on ``device`` first. Runs under ``torch.no_grad()`` and
    returns each row's valid frames on the CPU.
    """
    def compute(utterances: Sequence[Utterance]) -> list[list[torch.Tensor]]:
        wavs, lengths = pad_batch([load_utterance(u) for u in utterances], 0.0,
                                  torch.float32)  # (B, T), (B,)
        with torch.no_grad():
            out = upstream(wavs.to(device), lengths.to(device))
        frames = out.lengths.cpu().tolist()
        return [[state[row, :n].cpu() for state in out.hidden_states]
                for row, n in enumerate(frames)]
    return compute


class FeatureCache:
    """Cache entries under ``root``, one folder per (key, utterance list)."""

    def __init__(self, root: str | Path, shard_size: int = 256) -> None:
        if shard_size < 1:
            raise ConfigError(f"FeatureCache shard_size must be >= 1; got {shard_size}")
        self.root = Path(root)
        """Folder holding the entries."""
        self.shard_size = shard_size
        """Utterances per shard file."""

    def folder(self, key: CacheKey, utterances: Sequence[Utterance]) -> Path:
        """Where the entry of ``key`` and ``utterances`` lives (whether or not it exists)."""
        return self.root / entry_name(key, utterances)

    def lookup(self, key: CacheKey, utterances: Sequence[Utterance]) -> CachedFeatures | None:
        """The complete entry for ``key`` and ``utterances``, or None on a miss."""
        folder = self.folder(key, utterances)
        index = _read_index(folder, key, utterances)
        if index is None:
            return None
        return CachedFeatures(folder, index, utterances, from_cache=True)

    def get_or_compute(self, key: CacheKey, utterances: Sequence[Utterance],
                       compute_fn: ComputeFn, *, batch_size: int = 1,
                       progress: bool = True) -> CachedFeatures:
        """The entry for ``key`` and ``utterances``, computing it with ``compute_fn`` on a miss.

        ``compute_fn`` is called on consecutive batches of ``batch_size`` utterances (see
        :func:`upstream_compute_fn`); ``progress`` shows a tqdm bar while computing.
        """
        found = self.lookup(key, utterances)
        if found is not None:
            return found
        folder = self.folder(key, utterances)
        partial = self.root / f"{PARTIAL_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}"
        partial.mkdir(parents=True)
        try:
            index = self._write(partial, key, utterances, compute_fn, batch_size, progress)
            _publish(partial, folder, key, utterances)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return CachedFeatures(folder, index, utterances, from_cache=False)

    def partial_folders(self) -> list[Path]:
        """Incomplete entries (being written, or left by a crash); safe to delete when no
        process is writing."""
        return sorted(self.root.glob(f"{PARTIAL_PREFIX}*")) if self.root.is_dir() else []

    def _write(self, folder: Path, key: CacheKey, utterances: Sequence[Utterance],
               compute_fn: ComputeFn, batch_size: int, progress: bool) -> dict[str, Any]:
        """Compute and write every shard, then ``index.json``; return the index."""
        writer = _ShardWriter(folder, self.shard_size, key.fp16)
        layers: int | None = None
        with tqdm(total=len(utterances), unit="utt", desc="caching features",
                  disable=not progress) as bar:
            for start in range(0, len(utterances), batch_size):
                chunk = utterances[start:start + batch_size]
                states = compute_fn(chunk)
                assert len(states) == len(chunk), (
                    f"compute_fn returned {len(states)} utterances for {len(chunk)}")
                for utt, utt_states in zip(chunk, states, strict=True):
                    layers = len(utt_states)
                    writer.add(utt.id, _select_layers(utt_states, key.layers))
                bar.update(len(chunk))
        writer.flush()
        index = {"version": FORMAT_VERSION, "key": key.as_json(),
                 "ids": [u.id for u in utterances], "upstream_layers": layers,
                 "num_layers": len(writer.dims or []), "dims": writer.dims or [],
                 "dtype": writer.dtype, "shards": writer.shards}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        return index


def _select_layers(states: list[torch.Tensor],
                   layers: tuple[int, ...] | None) -> list[torch.Tensor]:
    """The hidden states listed in ``layers`` (all when None)."""
    if layers is None:
        return states
    bad = [i for i in layers if not -len(states) <= i < len(states)]
    if bad:
        raise ConfigError(f"CacheKey.layers {list(layers)} has indices {bad} outside the "
                          f"upstream's {len(states)} hidden states (0..{len(states) - 1})")
    return [states[i] for i in layers]


def _read_index(folder: Path, key: CacheKey, utterances: Sequence[Utterance],
                warn: bool = True) -> dict[str, Any] | None:
    """The entry's index when it is complete and matches; None otherwise (with a warning, if
    ``warn``, when the folder exists but does not match)."""
    path = folder / INDEX_FILE
    if not path.is_file():
        if folder.exists() and warn:
            warnings.warn(f"{folder}: cache entry has no {INDEX_FILE}; recomputing it",
                          stacklevel=3)
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        problem = _index_problem(folder, index, key, utterances)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        problem = f"unreadable index ({exc})"
    if problem:
        if warn:
            warnings.warn(f"{folder}: cache entry does not match ({problem}); recomputing it",
                          stacklevel=3)
        return None
    return index


def _index_problem(folder: Path, index: dict[str, Any], key: CacheKey,
                   utterances: Sequence[Utterance]) -> str | None:
    if index["version"] != FORMAT_VERSION:
        return f"format version {index['version']}, expected {FORMAT_VERSION}"
    if index["key"] != key.as_json():
        return "different key"
    if index["ids"] != [u.id for u in utterances]:
        return "different utterances"
    missing = [s["file"] for s in index["shards"] if not (folder / s["file"]).is_file()]
    if missing or sum(s["count"] for s in index["shards"]) != len(utterances):
        return f"missing shards {missing[:3]}" if missing else "shard counts do not add up"
    return None


def _publish(partial: Path, folder: Path, key: CacheKey, utterances: Sequence[Utterance]) -> None:
    """Rename the finished ``partial`` folder to ``folder``, replacing a stale entry there.

    If another process published a valid entry first, that one is kept.
    """
    if folder.exists():
        if _read_index(folder, key, utterances, warn=False) is not None:
            return
        stale = folder.with_name(f"{PARTIAL_PREFIX}stale-{folder.name}-{uuid.uuid4().hex[:8]}")
        os.rename(folder, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(partial, folder)
    except OSError:
        if _read_index(folder, key, utterances, warn=False) is None:
            raise


def cache_bytes(layer_dims: Sequence[int], frames: int, fp16: bool) -> int:
    """Disk a cache entry of ``frames`` frames takes: sum of the layers' widths x frames x bytes
    per value (2 for fp16, 4 for float32); shard and index overhead is not counted."""
    return sum(layer_dims) * frames * (2 if fp16 else 4)


def free_disk_bytes(folder: str | Path) -> int:
    """Free bytes on the disk of ``folder`` (or of its nearest existing parent, if it is not
    made yet), by ``shutil.disk_usage``."""
    path = Path(folder).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free
