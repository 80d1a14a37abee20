"""nnzoo's own format for zoos of graph-spec networks (the offline ``vit_zoo`` and ``mixed_zoo``).

Plain tensors only, one file per architecture, like the CNN park (:mod:`nnzoo.data.formats.cnn_park`), plus
the training run of every network, so that splits keep a run's checkpoints together::

    index.json      {"format": "nnzoo-arch-zoo", "version": 1, "kind": "vit_zoo", "image_size": 16,
                     "architectures": [{"file": "arch_000.pt", "arch": {"family": "vit", ...}, "spec": {...}}],
                     "runs": [{"run": 0, "arch": "vit depth=2 ...", "learning_rate": ..., ...}]}
    arch_000.pt     {"params": (n, P) float32 in the spec's flat layout (the module's state_dict order),
                     "test_accuracy": (n,), "run": (n,) int64, "step": (n,) int64}

The split is by run, fixed by a seeded permutation of the runs (80/10/10).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nnzoo.data.formats.cnn_park import CnnPark, read_groups
from nnzoo.errors import NnzooError
from nnzoo.io import save_tensors, write_json
from nnzoo.nets.graph_spec import spec_from_dict

INDEX = "index.json"
FORMAT = "nnzoo-arch-zoo"


def write_arch_zoo(folder: str | os.PathLike, kind: str, groups: list[dict[str, Any]], runs: list[dict[str, Any]],
                   **extra: Any) -> Path:
    """Write architecture groups (``arch``, ``spec``, ``params (n, P)``, ``test_accuracy``, ``run``, ``step``)
    and the runs' hyperparameters."""
    folder = Path(folder)
    entries = []
    for i, g in enumerate(groups):
        file = f"arch_{i:03d}.pt"
        save_tensors(folder / file, {"params": g["params"].float().contiguous(),
                                     "test_accuracy": g["test_accuracy"].float(), "run": g["run"].long(),
                                     "step": g["step"].long()})
        entries.append({"file": file, "arch": g["arch"], "spec": g["spec"].to_dict()})
    write_json(folder / INDEX, {"format": FORMAT, "version": 1, "kind": kind, **extra, "architectures": entries,
                                "runs": runs})
    return folder


def _runs(blob: dict, n: int, file: Path) -> Tensor:
    run = blob.get("run")
    if not isinstance(run, Tensor) or run.dim() != 1 or len(run) != n or run.is_floating_point() \
            or run.dtype == torch.bool or (n and int(run.min()) < 0):
        raise NnzooError(f"{file} must hold 'run': ({n},) non-negative integer run ids, one per network; fix or "
                         "rebuild the zoo")
    return run.long()


def load_arch_zoo(folder: str | os.PathLike, seed: int = 0) -> CnnPark:
    """Read a zoo: every architecture entry and file is checked before the split by run is drawn."""
    folder = Path(folder)
    zoo, blobs = read_groups(folder, FORMAT, "architecture zoo", "zoo", spec_from_dict)
    run = torch.cat([_runs(blob, len(p), file) for (file, blob), p in zip(blobs, zoo.params)])
    distinct, network_run = torch.unique(run, return_inverse=True)
    if len(distinct) < 3:
        raise NnzooError(f"{folder / INDEX}: the zoo holds {len(distinct)} training run(s); a split by run with "
                         "non-empty train, val and test needs at least 3")
    order = torch.randperm(len(distinct), generator=torch.Generator().manual_seed(seed))
    n_val = n_test = max(1, len(distinct) // 10)
    split_of_run = torch.empty(len(distinct), dtype=torch.long)
    split_of_run[order[n_val + n_test:]], split_of_run[order[:n_val]] = 0, 1
    split_of_run[order[n_val:n_val + n_test]] = 2
    split = split_of_run[network_run]
    zoo.splits = {name: (split == i).nonzero().flatten() for i, name in enumerate(("train", "val", "test"))}
    return zoo
