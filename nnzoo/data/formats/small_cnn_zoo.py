"""The public Small CNN Zoo format (Unterthiner et al. 2020), read and written.

A zoo folder holds

* ``weights.npy``: ``(rows, P)`` float32, one row per (network, checkpoint);
* ``metrics.csv.gz``: one line per row, with ``config.*`` hyperparameters,
  ``modeldir``, ``step``, ``test_accuracy``, ``test_loss``, ``train_accuracy``,
  ``train_loss``;
* ``layout.csv``: ``varname, shape, start_idx, end_idx`` per tensor, TensorFlow
  order (kernels ``(h, w, in, out)``, dense ``(in, out)``), each layer's bias
  stored *before* its kernel.

:func:`load_small_cnn_zoo` keeps the final checkpoint of every network,
converts rows to nnzoo's PyTorch flat layout and applies the split protocol of
NFN / Neural Graphs: rows permuted by an optional index file, final
checkpoints kept, the last half is test, the first half is shuffled with
``random.Random(0)`` and split 80/20 into train/val.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nnzoo.errors import NnzooError
from nnzoo.io import atomic_path, write_text
from nnzoo.nets.spec import LayerSpec, NetworkSpec

FILES = ("weights.npy", "metrics.csv.gz", "layout.csv")
CONFIG_COLUMNS = ("activation", "b_init", "dataset", "dnn_architecture", "dropout", "epochs",
                  "epochs_between_checkpoints", "init_std", "l2reg", "learning_rate", "num_layers", "num_units",
                  "optimizer", "random_seed", "train_fraction", "w_init")
RESULT_COLUMNS = ("modeldir", "step", "test_accuracy", "test_loss", "train_accuracy", "train_loss")


def small_cnn_spec(activation: str = "relu", channels: int = 1, units: int = 16, classes: int = 10,
                   layers: int = 3) -> NetworkSpec:
    """The zoo architecture: ``layers`` x Conv(units, 3x3, stride 2, valid) -> GAP -> Dense(classes)."""
    convs = tuple(LayerSpec("conv", channels if i == 0 else units, units, (3, 3), stride=2, padding=0,
                            activation=activation) for i in range(layers))
    return NetworkSpec((*convs, LayerSpec("linear", units, classes)), input_kind="image")


# ------------------------------------------------------------------------ writing
def _tf_tensors(spec: NetworkSpec) -> list[tuple[str, int, str, tuple[int, ...]]]:
    """``(varname, layer, role, tf_shape)`` in file order: per layer bias, then kernel."""
    out, conv_i, dense_i = [], 0, 0
    for index, layer in enumerate(spec.layers):
        if layer.kind == "conv":
            name = "conv2d" + (f"_{conv_i}" if conv_i else "")
            conv_i += 1
            kernel = (*layer.kernel_size, layer.in_features, layer.out_features)
        else:
            name = "dense" + (f"_{dense_i}" if dense_i else "")
            dense_i += 1
            kernel = (layer.in_features, layer.out_features)
        out.append((f"sequential/{name}/bias:0", index, "bias", (layer.out_features,)))
        out.append((f"sequential/{name}/kernel:0", index, "weight", kernel))
    return out


def to_tf_rows(params: Tensor, spec: NetworkSpec) -> Tensor:
    """nnzoo flat rows -> Small CNN Zoo rows (TF tensor order, bias first)."""
    parts = []
    for _, layer, role, _ in _tf_tensors(spec):
        slot = spec.slot(layer, role)
        block = params[:, slot.start:slot.end].reshape(-1, *slot.shape)
        if role == "weight":
            block = block.permute(0, 3, 4, 2, 1) if block.dim() == 5 else block.transpose(1, 2)
        parts.append(block.reshape(len(params), -1))
    return torch.cat(parts, dim=1)


def write_small_cnn_zoo(folder: str | os.PathLike, spec: NetworkSpec, params: Tensor,
                        metrics: list[dict[str, object]]) -> Path:
    """Write rows (``params`` in nnzoo layout, one metrics dict per row) as a Small CNN Zoo folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if len(metrics) != len(params):
        raise NnzooError(f"{len(params)} weight rows but {len(metrics)} metric rows")
    with atomic_path(folder / "weights.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, to_tf_rows(params, spec).numpy().astype(np.float32))
    layout = io.StringIO()
    writer = csv.writer(layout)
    writer.writerow(["varname", "shape", "start_idx", "end_idx"])
    start = 0
    for name, _, _, shape in _tf_tensors(spec):
        size = int(np.prod(shape))
        writer.writerow([name, str(tuple(shape)), start, start + size])
        start += size
    write_text(folder / "layout.csv", layout.getvalue())
    columns = [f"config.{c}" for c in CONFIG_COLUMNS] + list(RESULT_COLUMNS)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(metrics)
    with atomic_path(folder / "metrics.csv.gz") as tmp:
        with gzip.open(tmp, "wt", newline="") as fh:
            fh.write(table.getvalue())
    return folder


# ------------------------------------------------------------------------ reading
@dataclass
class CnnZoo:
    """Final-checkpoint networks of a zoo, split by the public protocol."""

    specs: tuple[NetworkSpec, ...]  # one per activation found (same layout)
    params: Tensor  # (N, P) nnzoo layout
    spec_index: Tensor  # (N,) index into specs
    accuracy: Tensor  # (N,) test accuracy in [0, 1]
    splits: dict[str, Tensor]  # split -> row indices
    configs: list[dict[str, str]]


def _read_layout(path: Path) -> list[tuple[str, tuple[int, ...], int, int]]:
    if not path.is_file():
        raise NnzooError(f"layout file not found: {path}; a Small CNN Zoo folder holds {', '.join(FILES)}")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        return [(r["varname"], tuple(int(v) for v in re.findall(r"\d+", r["shape"])), int(r["start_idx"]),
                 int(r["end_idx"])) for r in rows]
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, csv.Error) as exc:
        raise NnzooError(f"{path} is not a Small CNN Zoo layout (need columns varname, shape, start_idx, "
                         f"end_idx): {exc.__class__.__name__}") from None


def _read_metrics(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise NnzooError(f"metrics file not found: {path}; a Small CNN Zoo folder holds {', '.join(FILES)}")
    try:
        with gzip.open(path, "rt", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, gzip.BadGzipFile) as exc:
        raise NnzooError(f"cannot read {path}: corrupt or not a gzipped CSV ({exc.__class__.__name__})") from None
    missing = {"step", "test_accuracy"} - set(rows[0] if rows else {})
    if missing:
        raise NnzooError(f"{path} lacks column(s) {sorted(missing)}; is it a Small CNN Zoo metrics.csv.gz?")
    return rows


def _read_weights(path: Path) -> np.ndarray:
    if not path.is_file():
        raise NnzooError(f"weights file not found: {path}; a Small CNN Zoo folder holds {', '.join(FILES)}")
    try:
        weights = np.load(path, mmap_mode="r", allow_pickle=False)  # never unpickle
    except (ValueError, OSError, EOFError) as exc:
        raise NnzooError(f"cannot read {path}: corrupt or not a .npy array ({str(exc).splitlines()[0][:120]})"
                         ) from None
    if weights.ndim != 2 or not np.issubdtype(weights.dtype, np.floating):
        raise NnzooError(f"{path} holds a {weights.dtype} array of shape {weights.shape}; expected (rows, params)"
                         " floats")
    return weights


def spec_from_layout(layout: list[tuple[str, tuple[int, ...], int, int]], activation: str, stride: int = 2,
                     padding: int | str = 0, source: Path | str = "layout") -> NetworkSpec:
    """Architecture from the layout: conv kernels ``(h, w, in, out)``, dense kernels ``(in, out)``."""
    layers = []
    kernels = [(name, shape) for name, shape, _, _ in sorted(layout, key=lambda r: r[2]) if "kernel" in name]
    if not kernels:
        raise NnzooError(f"{source} lists no kernel tensors")
    for i, (name, shape) in enumerate(kernels):
        last = i == len(kernels) - 1
        if len(shape) == 4:
            layers.append(LayerSpec("conv", shape[2], shape[3], shape[:2], stride=stride, padding=padding,
                                    activation="none" if last else activation))
        elif len(shape) == 2:
            layers.append(LayerSpec("linear", shape[0], shape[1], activation="none" if last else activation))
        else:
            raise NnzooError(f"{source}: kernel {name} has unsupported shape {shape}")
    return NetworkSpec(tuple(layers), input_kind="image")


def _to_nnzoo(weights: np.ndarray, layout, spec: NetworkSpec, source: Path) -> Tensor:
    """TF-ordered rows -> nnzoo flat rows, matching tensors by layer and role."""
    by_layer: dict[str, dict[str, tuple]] = {}
    for name, shape, start, end in layout:
        if int(np.prod(shape)) != end - start or end > weights.shape[1]:
            raise NnzooError(f"{source}: tensor {name} of shape {shape} does not fit [{start}, {end}) of "
                             f"{weights.shape[1]}-wide rows; layout and weights.npy disagree")
        by_layer.setdefault(name.rsplit("/", 1)[0], {})["weight" if "kernel" in name else "bias"] = (shape, start, end)
    order = sorted(by_layer.values(), key=lambda t: t["weight"][1])
    rows = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32))
    out = torch.empty(len(rows), spec.num_params)
    for index, tensors in enumerate(order):
        for role, (shape, start, end) in tensors.items():
            slot = spec.slot(index, role)
            block = rows[:, start:end].reshape(-1, *shape)
            if role == "weight":
                block = block.permute(0, 4, 3, 1, 2) if block.dim() == 5 else block.transpose(1, 2)
            out[:, slot.start:slot.end] = block.reshape(len(rows), -1)
    return out


def protocol_splits(n: int, val_fraction: float = 0.2) -> dict[str, Tensor]:
    """Last half test; first half shuffled with ``random.Random(0)``, then 80/20 train/val."""
    half = n // 2
    first = list(range(half))
    random.Random(0).shuffle(first)
    cut = int((1 - val_fraction) * half)
    return {"train": torch.tensor(first[:cut], dtype=torch.long),
            "val": torch.tensor(first[cut:], dtype=torch.long),
            "test": torch.arange(half, n, dtype=torch.long)}


def load_small_cnn_zoo(folder: str | os.PathLike, *, split_file: str | os.PathLike | None = None,
                       activation: str | None = None, stride: int = 2, padding: int | str = 0) -> CnnZoo:
    """Read a zoo folder: final checkpoints only, PyTorch layout, protocol splits.

    ``activation`` (``relu``/``tanh``) keeps one sub-zoo, like ScaleGMN's
    subsets; rows with NaN/Inf weights are refused with the count and file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NnzooError(f"Small CNN Zoo folder not found: {folder}; it must hold {', '.join(FILES)} "
                         "(or leave data.root empty to build a zoo offline)")
    layout = _read_layout(folder / "layout.csv")
    metrics = _read_metrics(folder / "metrics.csv.gz")
    weights = _read_weights(folder / "weights.npy")
    if len(metrics) != len(weights):
        raise NnzooError(f"{folder / 'weights.npy'} has {len(weights)} rows but {folder / 'metrics.csv.gz'} has "
                         f"{len(metrics)}; the files do not belong together")
    order = np.arange(len(weights))
    if split_file is not None:
        order = _read_index_file(Path(split_file), len(weights))
    try:
        steps = np.array([float(metrics[i]["step"]) for i in order])
        accuracy = np.array([float(metrics[i]["test_accuracy"]) for i in order])
    except ValueError:
        raise NnzooError(f"{folder / 'metrics.csv.gz'} has non-numeric step/test_accuracy values") from None
    keep = steps == steps.max()  # the final checkpoint of every network
    acts = [metrics[i].get("config.activation") or "relu" for i in order]
    if activation is not None:
        keep &= np.array([a == activation for a in acts])
    rows = order[keep]
    if len(rows) == 0:
        raise NnzooError(f"{folder}: no final-checkpoint rows" + (f" with activation {activation}" if activation else ""))
    names = sorted({acts[i] for i in np.flatnonzero(keep)})
    specs = tuple(spec_from_layout(layout, a, stride, padding, folder / "layout.csv") for a in names)
    params = _to_nnzoo(weights[np.sort(rows)][np.argsort(np.argsort(rows))], layout, specs[0], folder / "layout.csv")
    bad = ~torch.isfinite(params).all(dim=1)
    if bad.any():
        raise NnzooError(f"{folder / 'weights.npy'}: {int(bad.sum())} final-checkpoint rows hold NaN/Inf weights "
                         "(e.g. diverged training); remove them from the zoo")
    kept_acts = [acts[i] for i in np.flatnonzero(keep)]
    return CnnZoo(specs=specs, params=params,
                  spec_index=torch.tensor([names.index(a) for a in kept_acts], dtype=torch.long),
                  accuracy=torch.tensor(accuracy[keep], dtype=torch.float32),
                  splits=protocol_splits(len(rows)),
                  configs=[{k: v for k, v in metrics[i].items() if k.startswith("config.")} for i in rows])


def _read_index_file(path: Path, rows: int) -> np.ndarray:
    if not path.is_file():
        raise NnzooError(f"split index file not found: {path}")
    try:
        order = np.array([int(line) for line in path.read_text().split()], dtype=np.int64)
    except (ValueError, UnicodeDecodeError):
        raise NnzooError(f"{path} must hold one integer row index per line") from None
    if len(order) != rows or len(np.unique(order)) != rows or order.min() < 0 or order.max() >= rows:
        raise NnzooError(f"{path} is not a permutation of the {rows} rows of the zoo")
    return order
