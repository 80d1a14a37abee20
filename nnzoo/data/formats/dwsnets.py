"""The public DWSNets INR dataset format (MNIST / FashionMNIST INRs).

On disk (as published by Navon et al. 2023 and used by Neural Graphs):

* one ``.pth`` state dict per INR with keys ``seq.{i}.weight`` ``(out, in)`` and
  ``seq.{i}.bias``; MNIST INRs live in
  ``mnist-inrs/mnist_png_{training|testing}_{label}_{imgidx}/checkpoints/model_final.pth``,
  FashionMNIST INRs in ``fmnist_inrs/{train,test}/model_{i}.pth`` (with an
  extra ``label`` entry that is ignored here);
* a splits JSON ``{"train": {"path": [...], "label": [...]}, "val": ..., "test": ...}``
  (MNIST labels are strings);
* optionally a statistics ``.pth``
  ``{"weights": {"mean": [...], "std": [...]}, "biases": {...}}`` with one
  per-entry tensor per layer, weights transposed to ``(in, out, 1)``, biases
  ``(out, 1)``.

:func:`load_dwsnets` reads all of it (once; a consolidated tensor cache makes
later loads instant) and :func:`write_dwsnets` writes it, which the offline
builder and the tests use, so both paths go through the same reader.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nnzoo.errors import NnzooError
from nnzoo.io import load_tensors, read_json, save_tensors, write_json
from nnzoo.nets.functional import params_to_state_dict, state_dict_to_params
from nnzoo.nets.spec import NetworkSpec
from nnzoo.progress import progress_bar

SPLITS = ("train", "val", "test")
_CACHE_VERSION = 1


@dataclass
class InrSplits:
    """A loaded INR dataset: flat parameters and integer labels per split."""

    spec: NetworkSpec
    params: dict[str, Tensor]  # split -> (N, P)
    labels: dict[str, Tensor]  # split -> (N,)
    statistics: dict[str, list[list[float]]] | None = None  # per-layer stats from the statistics file
    ids: dict[str, Tensor] | None = None  # split -> (N,) image index of each INR, where the format has one


# --------------------------------------------------------------------- writing
def write_dwsnets(root: str | os.PathLike, spec: NetworkSpec, params: dict[str, Tensor],
                  labels: dict[str, Tensor], image_ids: dict[str, Tensor], prefix: str = "mnist",
                  write_statistics: bool = True) -> Path:
    """Write INRs in the DWSNets MNIST layout under ``root``; returns the splits JSON path.

    ``train``/``val`` INRs are named ``..._training_...`` and ``test`` ones
    ``..._testing_...``, like the published files.  Paths in the JSON are
    relative to ``root``.
    """
    root = Path(root)
    splits: dict[str, dict[str, list]] = {}
    for split in SPLITS:
        paths, names = [], []
        folder = "testing" if split == "test" else "training"
        for flat, label, image in zip(params[split], labels[split].tolist(), image_ids[split].tolist()):
            rel = Path(f"{prefix}-inrs") / f"{prefix}_png_{folder}_{label}_{image}" / "checkpoints" / "model_final.pth"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            torch.save(params_to_state_dict(flat, spec, prefix="seq"), root / rel)
            paths.append(str(rel))
            names.append(str(label))
        splits[split] = {"path": paths, "label": names}
    splits_path = root / f"{prefix}_splits.json"
    write_json(splits_path, splits)
    if write_statistics:
        save_tensors(root / f"{prefix}_statistics.pth", entrywise_statistics(params["train"], spec))
    return splits_path


def entrywise_statistics(params: Tensor, spec: NetworkSpec) -> dict[str, dict[str, list[Tensor]]]:
    """DWSNets statistics: per-entry mean/std over networks, weights as ``(in, out, 1)``."""
    out: dict[str, dict[str, list[Tensor]]] = {"weights": {"mean": [], "std": []},
                                               "biases": {"mean": [], "std": []}}
    for s in spec.slots:
        block = params[:, s.start:s.end].reshape(-1, *s.shape)
        if s.role == "weight":
            block = block.transpose(1, 2)
            key = "weights"
        elif s.role == "bias":
            key = "biases"
        else:
            continue
        out[key]["mean"].append(block.mean(0).unsqueeze(-1))
        out[key]["std"].append(block.std(0).unsqueeze(-1))
    return out


# --------------------------------------------------------------------- reading
def read_splits(splits_path: str | os.PathLike) -> dict[str, tuple[list[str], list[int]]]:
    """Parse a splits JSON into ``{split: (paths, int labels)}`` with one-line errors."""
    data = read_json(splits_path, "splits file")
    result = {}
    for split in SPLITS:
        entry = data.get(split) if isinstance(data, dict) else None
        if (not isinstance(entry, dict) or not isinstance(entry.get("path"), list)
                or not isinstance(entry.get("label"), list)):
            raise NnzooError(f"splits file {splits_path} has no '{split}' entry with 'path' and 'label' lists; "
                             'expected {"train": {"path": [...], "label": [...]}, "val": ..., "test": ...}')
        paths, labels = entry["path"], entry["label"]
        if len(paths) != len(labels):
            raise NnzooError(f"splits file {splits_path}: '{split}' has {len(paths)} paths but {len(labels)} labels")
        try:
            result[split] = (list(map(str, paths)), [int(v) for v in labels])
        except (TypeError, ValueError):
            raise NnzooError(f"splits file {splits_path}: '{split}' labels must be integers "
                             "(or strings of integers)") from None
    return result


def _path_resolver(splits_path: Path, first: str, root: Path | None):
    """Find how the JSON's paths map to files on this machine (decided once, from the first path).

    Published splits hold paths relative to wherever they were generated
    (e.g. ``dataset/mnist-inrs/...``), so we try the splits file's folder, its
    parents and ``root``, also with leading path components dropped.
    """
    bases = [b for b in (root, splits_path.parent, *splits_path.parent.parents[:2], Path.cwd()) if b is not None]
    p = Path(first)
    if p.is_absolute() and p.exists():
        return lambda s: Path(s)
    for base in bases:
        for drop in range(len(p.parts)):
            if (base / Path(*p.parts[drop:])).exists():
                return lambda s, base=base, drop=drop: base / Path(*Path(s).parts[drop:])
    raise NnzooError(f"INR file '{first}' listed in {splits_path} was not found under {splits_path.parent} "
                     "or its parents; pass data.root=<folder holding the INR directories>")


def read_statistics(path: str | os.PathLike, spec: NetworkSpec) -> dict[str, list[list[float]]]:
    """Per-layer pooled ``[[mean, std], ...]`` from a DWSNets entrywise statistics file.

    Pooling uses ``var = mean(std_e^2 + mean_e^2) - mean^2``, which is exact for
    equal per-entry sample counts.
    """
    raw = load_tensors(path, "statistics file")
    try:
        stats: dict[str, list[list[float]]] = {}
        for key, role in (("weights", "weight"), ("biases", "bias")):
            rows = []
            for mean_e, std_e in zip(raw[key]["mean"], raw[key]["std"]):
                mean_e, std_e = mean_e.double(), std_e.double()
                mean = mean_e.mean().item()
                var = (std_e.pow(2) + mean_e.pow(2)).mean().item() - mean * mean
                rows.append([mean, max(var, 0.0) ** 0.5 or 1.0])
            if len(rows) != spec.num_layers:
                raise ValueError(f"{len(rows)} layers of {role} statistics, the networks have {spec.num_layers}")
            stats[role] = rows
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NnzooError(f"statistics file {path} is not in the DWSNets format ({exc}); "
                         "expected {'weights': {'mean': [...], 'std': [...]}, 'biases': {...}}") from None
    return stats


def cached_tensors(cache_dir: str | os.PathLike | None, tag: str, key: list[Any],
                   build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``build()``'s tensors, cached as ``cache_dir/{tag}-{hash(key)}.pt`` (no cache if ``cache_dir`` is None).

    ``key`` (JSON-able) must fingerprint everything the tensors depend on: the
    files' paths, sizes and mtimes, the architecture, the loader's options.
    Shared by the INR format loaders so that tens of thousands of small
    ``.pth`` files are read only once.
    """
    if cache_dir is None:
        return build()
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"{tag}-{digest}.pt"
    if cache.is_file():
        return load_tensors(cache, "dataset cache")
    blob = build()
    save_tensors(cache, blob)
    return blob


def load_dwsnets(splits_path: str | os.PathLike, spec: NetworkSpec, *, root: str | os.PathLike | None = None,
                 statistics_path: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None) -> InrSplits:
    """Load a DWSNets-format INR dataset, checking every file against ``spec``.

    With ``cache_dir`` the parsed tensors are cached (keyed by the splits file's
    path, size and mtime), so the tens of thousands of small ``.pth`` files are
    read only once.
    """
    splits_path = Path(splits_path)
    if not splits_path.is_file():
        raise NnzooError(f"splits file not found: {splits_path}; pass data.splits=<path to *_splits.json> "
                         "or leave data.root empty to build the dataset offline")

    def read_all() -> dict[str, dict[str, Tensor]]:
        entries = read_splits(splits_path)
        resolve = _path_resolver(splits_path, entries["train"][0][0], Path(root) if root else None)
        total = sum(len(paths) for paths, _ in entries.values())
        params, labels = {}, {}
        with progress_bar(total, f"reading INRs from {splits_path.name}") as advance:
            for split, (paths, ints) in entries.items():
                rows = torch.empty(len(paths), spec.num_params)
                for i, rel in enumerate(paths):
                    file = resolve(rel)
                    rows[i] = state_dict_to_params(read_state_dict(file), spec, source=file)
                    if i % 256 == 255:
                        advance(256)
                advance(len(paths) % 256)
                params[split], labels[split] = rows, torch.tensor(ints, dtype=torch.long)
        return {"params": params, "labels": labels}

    st = splits_path.stat()
    key = [_CACHE_VERSION, str(splits_path.resolve()), st.st_size, st.st_mtime_ns, spec.to_dict()]
    blob = cached_tensors(cache_dir, "dwsnets", key, read_all)
    statistics = read_statistics(statistics_path, spec) if statistics_path else None
    return InrSplits(spec, blob["params"], blob["labels"], statistics)


def read_state_dict(file: Path) -> dict:
    """One INR's state dict, read safely; one-line errors name the file."""
    sd = load_tensors(file, "INR file")
    if not isinstance(sd, dict):
        raise NnzooError(f"INR file {file} holds a {type(sd).__name__}, not a state dict")
    return sd
