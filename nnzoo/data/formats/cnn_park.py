"""nnzoo's own format for heterogeneous CNN zoos (the offline ``cnn_wild_park``).

The public Wild Park stores one pickled training checkpoint per CNN; ours is
plain tensors only, one file per architecture::

    index.json          {"format": "nnzoo-cnn-park", "version": 1,
                         "architectures": [{"file": "arch_000.pt", "spec": {...}, "hyperparameters": [...]}]}
    arch_000.pt         {"params": (n, P) float32 in nnzoo's flat layout, "test_accuracy": (n,)}

Files are read with ``torch.load(weights_only=True)``.  The split is by
network, fixed by a seeded permutation (80/10/10).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nnzoo.errors import NnzooError
from nnzoo.io import load_tensors, read_json, save_tensors, write_json
from nnzoo.nets.spec import NetworkSpec

INDEX = "index.json"
FORMAT = "nnzoo-cnn-park"


def write_cnn_park(folder: str | os.PathLike, groups: list[tuple[NetworkSpec, Tensor, Tensor, list[dict]]]) -> Path:
    """Write ``(spec, params (n, P), test_accuracy (n,), hyperparameters)`` groups."""
    folder = Path(folder)
    entries = []
    for i, (spec, params, accuracy, hps) in enumerate(groups):
        file = f"arch_{i:03d}.pt"
        save_tensors(folder / file, {"params": params.float().contiguous(), "test_accuracy": accuracy.float()})
        entries.append({"file": file, "spec": spec.to_dict(), "hyperparameters": hps})
    write_json(folder / INDEX, {"format": FORMAT, "version": 1, "architectures": entries})
    return folder


@dataclass
class CnnPark:
    specs: tuple[NetworkSpec, ...]
    params: list[Tensor]  # per architecture (n_a, P_a)
    group: Tensor  # (N,) architecture of each network
    row: Tensor  # (N,) row within its architecture
    accuracy: Tensor  # (N,)
    splits: dict[str, Tensor]  # split -> network ids


def load_cnn_park(folder: str | os.PathLike, seed: int = 0) -> CnnPark:
    folder = Path(folder)
    if not folder.is_dir():
        raise NnzooError(f"CNN park folder not found: {folder} (leave data.root empty to build one offline)")
    index = read_json(folder / INDEX, "CNN park index")
    if not isinstance(index, dict) or index.get("format") != FORMAT or not index.get("architectures"):
        raise NnzooError(f"{folder / INDEX} is not an nnzoo CNN park index (format '{FORMAT}')")
    specs, params, groups, rows, accs = [], [], [], [], []
    for g, entry in enumerate(index["architectures"]):
        try:
            spec = NetworkSpec.from_dict(entry["spec"])
            file = folder / entry["file"]
        except (KeyError, TypeError) as exc:
            raise NnzooError(f"{folder / INDEX}: architecture {g} is malformed ({exc.__class__.__name__}: {exc})"
                             ) from None
        blob = load_tensors(file, "CNN park file")
        p, a = (blob.get("params"), blob.get("test_accuracy")) if isinstance(blob, dict) else (None, None)
        if not isinstance(p, Tensor) or not isinstance(a, Tensor) or p.dim() != 2 or len(p) != len(a):
            raise NnzooError(f"{file} must hold 'params' (n, P) and 'test_accuracy' (n,) tensors")
        if p.shape[1] != spec.num_params:
            raise NnzooError(f"{file}: rows have {p.shape[1]} parameters but {spec.describe()} needs "
                             f"{spec.num_params}; wrong architecture")
        if not torch.isfinite(p).all():
            raise NnzooError(f"{file} contains NaN or Inf weights; rebuild the zoo or drop those networks")
        specs.append(spec)
        params.append(p.float())
        groups.append(torch.full((len(p),), g, dtype=torch.long))
        rows.append(torch.arange(len(p)))
        accs.append(a.float())
    n = sum(len(p) for p in params)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = n_test = max(1, n // 10)
    splits = {"train": order[n_val + n_test:], "val": order[:n_val], "test": order[n_val:n_val + n_test]}
    return CnnPark(tuple(specs), params, torch.cat(groups), torch.cat(rows), torch.cat(accs), splits)
