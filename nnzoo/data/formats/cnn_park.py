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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _park_spec(entry: object, g: int, index: Path, from_dict: Callable[[Any], Any] = NetworkSpec.from_dict,
               noun: str = "park") -> tuple[NetworkSpec, str]:
    """Architecture ``g`` of the index: its spec and file name, or a one-line refusal naming the index."""
    try:
        spec = from_dict(entry["spec"])
        file = entry["file"]
    except (KeyError, TypeError, ValueError, AttributeError, NnzooError) as exc:
        raise NnzooError(f"{index}: architecture {g} is malformed ({exc.__class__.__name__}: {exc}); fix or rebuild "
                         f"the {noun}") from None
    if not isinstance(file, str) or file in ("", ".", "..") or Path(file).name != file:
        raise NnzooError(f"{index}: architecture {g} names file {file!r}; it must be a file name inside the {noun} "
                         f"folder; fix or rebuild the {noun}")
    for i, layer in enumerate(spec.layers):
        sizes = (layer.in_features, layer.out_features, layer.stride, *layer.kernel_size)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in sizes) or layer.stride < 1 \
                or min(layer.kernel_size) < 1 or not (layer.padding in ("same", "valid") or (
                    isinstance(layer.padding, int) and not isinstance(layer.padding, bool) and layer.padding >= 0)):
            raise NnzooError(f"{index}: architecture {g} layer {i} has sizes {layer.in_features}->"
                             f"{layer.out_features}, kernel {layer.kernel_size}, stride {layer.stride!r}, padding "
                             f"{layer.padding!r}; sizes, kernel and stride must be integers >= 1, padding an integer "
                             ">= 0, 'same' or 'valid'; fix or rebuild the park")
    return spec, file


def _park_tensors(blob: object, spec: NetworkSpec, file: Path) -> tuple[Tensor, Tensor]:
    """``params (n, P)`` and ``test_accuracy (n,)`` of one park file, checked: shapes, finite weights,
    accuracies in [0, 1] (the regression targets)."""
    p, a = (blob.get("params"), blob.get("test_accuracy")) if isinstance(blob, dict) else (None, None)
    if not isinstance(p, Tensor) or not isinstance(a, Tensor) or p.dim() != 2 or a.dim() != 1 or len(p) != len(a):
        shapes = (f"'params' {tuple(p.shape)}, 'test_accuracy' {tuple(a.shape)}"
                  if isinstance(p, Tensor) and isinstance(a, Tensor) else "other contents")
        raise NnzooError(f"{file} must hold 'params' (n, P) and 'test_accuracy' (n,) tensors, not {shapes}; fix or "
                         "rebuild the park")
    if not p.is_floating_point() or not a.is_floating_point():
        raise NnzooError(f"{file}: 'params' is {p.dtype} and 'test_accuracy' {a.dtype}; both must be floating point; "
                         "fix or rebuild the park")
    if len(p) == 0:
        raise NnzooError(f"{file} holds no networks; fix or rebuild the park")
    if p.shape[1] != spec.num_params:
        raise NnzooError(f"{file}: rows have {p.shape[1]} parameters but {spec.describe()} needs "
                         f"{spec.num_params}; wrong architecture")
    p, a = p.float(), a.float()  # a float64 value beyond float32's range becomes inf here: cast, then check
    bad = (~torch.isfinite(p).all(dim=1)).nonzero().flatten()
    if len(bad):
        raise NnzooError(f"{file}: {len(bad)} networks hold NaN or Inf weights, the first is row {int(bad[0])}; "
                         "rebuild the zoo or drop those networks")
    bad = (~((a >= 0) & (a <= 1))).nonzero().flatten()  # NaN fails both comparisons
    if len(bad):
        raise NnzooError(f"{file}: row {int(bad[0])} of 'test_accuracy' is {a[bad[0]].item()}; accuracies must be "
                         "finite fractions in [0, 1]; fix or rebuild the park")
    return p, a


def read_groups(folder: str | os.PathLike, fmt: str, what: str, noun: str,
                from_dict: Callable[[Any], Any] = NetworkSpec.from_dict) -> tuple[CnnPark, list[tuple[Path, dict]]]:
    """The architecture groups of an index of format ``fmt`` (``what``: its name in messages), every entry and file
    checked, without a split yet; and each architecture file with its contents (for the caller's own columns)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NnzooError(f"{what} folder not found: {folder} (leave data.root empty to build one offline)")
    index = read_json(folder / INDEX, f"{what} index")
    entries = index.get("architectures") if isinstance(index, dict) else None
    if not isinstance(index, dict) or index.get("format") != fmt or not isinstance(entries, list) or not entries:
        raise NnzooError(f"{folder / INDEX} is not an nnzoo {what} index (format '{fmt}' with a non-empty "
                         f"'architectures' list); fix or rebuild the {noun}")
    if index.get("version") != 1:
        raise NnzooError(f"{folder / INDEX} has version {index.get('version')!r}; this nnzoo reads version 1; fix "
                         f"or rebuild the {noun}")
    specs, params, groups, rows, accs, blobs, files = [], [], [], [], [], [], {}
    for g, entry in enumerate(entries):
        spec, name = _park_spec(entry, g, folder / INDEX, from_dict, noun)
        if name in files:  # the same networks twice: they could land in train and test
            raise NnzooError(f"{folder / INDEX}: architectures {files[name]} and {g} both name {name}; fix or rebuild "
                             f"the {noun}")
        files[name] = g
        blob = load_tensors(folder / name, f"{what} file")
        p, a = _park_tensors(blob, spec, folder / name)
        specs.append(spec)
        params.append(p)
        groups.append(torch.full((len(p),), g, dtype=torch.long))
        rows.append(torch.arange(len(p)))
        accs.append(a)
        blobs.append((folder / name, blob))
    return CnnPark(tuple(specs), params, torch.cat(groups), torch.cat(rows), torch.cat(accs), {}), blobs


def load_cnn_park(folder: str | os.PathLike, seed: int = 0) -> CnnPark:
    """Read a park; every architecture entry and file is checked before the split is drawn."""
    park, _ = read_groups(folder, FORMAT, "CNN park", "park")
    n = len(park.accuracy)
    if n < 3:
        raise NnzooError(f"{Path(folder) / INDEX}: the park holds {n} network(s); an 80/10/10 split with non-empty "
                         "train, val and test needs at least 3")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = n_test = max(1, n // 10)
    park.splits = {"train": order[n_val + n_test:], "val": order[:n_val], "test": order[n_val:n_val + n_test]}
    return park
