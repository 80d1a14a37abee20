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
NFN / Neural Graphs (``ZooDataset`` / ``NFNZooDataset``): rows permuted by the
NFN index file, final checkpoints kept, the last half is test, the first half
is shuffled with ``random.Random(0)`` and split 80/20 into train/val.

The index files (``<dataset>_split.csv`` of AllanYangZhou/nfn
``experiments/predict_gen_data_splits/``; neural-graphs ships the CIFAR10 one
as ``experiments/cnn_generalization/dataset/nfn_cifar10_split.csv``) are public
data, not shipped with nnzoo: ``split_file="auto"`` looks for them next to the
zoo (:func:`split_file_candidates`) and identifies them by their sha256
(:data:`PUBLIC_SPLIT_FILES`).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nnzoo.data.builders.cache import BUILD_INFO
from nnzoo.errors import NnzooError
from nnzoo.io import atomic_path, write_text
from nnzoo.nets.spec import LayerSpec, NetworkSpec
from nnzoo.progress import console

FILES = ("weights.npy", "metrics.csv.gz", "layout.csv")
CONFIG_COLUMNS = ("activation", "b_init", "dataset", "dnn_architecture", "dropout", "epochs",
                  "epochs_between_checkpoints", "init_std", "l2reg", "learning_rate", "num_layers", "num_units",
                  "optimizer", "random_seed", "train_fraction", "w_init")
RESULT_COLUMNS = ("modeldir", "step", "test_accuracy", "test_loss", "train_accuracy", "train_loss")

# The public NFN index files, by sha256 of their bytes -> (dataset, rows of that zoo).  Computed with
# `git show HEAD:<path> | sha256sum` from AllanYangZhou/nfn@ce783221 experiments/predict_gen_data_splits/
# {cifar10,svhn,mnist,fashion_mnist}_split.csv; mkofinas/neural-graphs@1f2b671a
# experiments/cnn_generalization/dataset/nfn_cifar10_split.csv is byte-identical to cifar10_split.csv.
# Each file is a header line "0" (pandas' column name) followed by a permutation of the zoo's rows.
PUBLIC_SPLIT_FILES = {
    "04fb71937dc796fc64f6306457de9d95f0d2d8a343db856213b965a4953a4f67": ("cifar10", 270_000),
    "c1dcfc521f38071bb4ac2af4866a38a4d2d468630ef60bb70f9ae75c681fc60c": ("svhn", 269_892),
    "b516aea9d62a8c8f2acb5b92abfedc4c1f0c2f6f9afd716835ec75103c25cf3b": ("mnist", 269_973),
    "0d13165d28963acdac000d3d033da58b5719920f7d19aadf310173823053b021": ("fashion_mnist", 270_000),
}
SPLIT_FILE_SOURCES = ("github.com/AllanYangZhou/nfn experiments/predict_gen_data_splits/{name}_split.csv",
                      "github.com/mkofinas/neural-graphs experiments/cnn_generalization/dataset/"
                      "nfn_cifar10_split.csv (cifar10 only)")


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
    split_file: str | None = None  # the index file that ordered the rows (None: file order)
    split_sha256: str | None = None


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
    """The reference's ``_split_indices_iid``: positions from ``int(0.5 n)`` on are test; the first
    ``int(0.5 n)`` are shuffled with ``random.Random(0)``, the first ``int(0.8 m)`` of them train, the rest val."""
    half = int(0.5 * n)
    first = list(range(half))
    random.Random(0).shuffle(first)
    cut = int((1 - val_fraction) * half)  # 1 - 0.2 == 0.8 exactly in floating point, as the reference's 0.8
    return {"train": torch.tensor(first[:cut], dtype=torch.long),
            "val": torch.tensor(first[cut:], dtype=torch.long),
            "test": torch.arange(half, n, dtype=torch.long)}


# ------------------------------------------------------------------------ split index files
_DATASET_KEYS = (("fashion_mnist", ("fashion", "fmnist")), ("svhn", ("svhn",)), ("cifar10", ("cifar10",)),
                 ("mnist", ("mnist",)))


def zoo_dataset_name(folder: Path, metrics: list[dict[str, str]]) -> str | None:
    """Which public zoo ``folder`` holds (cifar10, svhn, mnist, fashion_mnist): from the ``config.dataset``
    column (e.g. ``svhn_cropped``), else from the folder name (``cifar10``, ``small-zoo-cifar10``, ...)."""
    for text in ((metrics[0].get("config.dataset") or "") if metrics else "", folder.name):
        for name, keys in _DATASET_KEYS:
            if any(k in text.lower() for k in keys):
                return name
    return None


def split_file_candidates(folder: Path, name: str) -> list[Path]:
    """Where ``split_file="auto"`` looks, in order: the zoo folder, then its parent; Neural Graphs' file
    name (``nfn_cifar10_split.csv``) before NFN's (``cifar10_split.csv``)."""
    return [d / f"{prefix}{name}_split.csv" for d in (folder, folder.parent) for prefix in ("nfn_", "")]


def _resolve_split_file(folder: Path, split_file: str | os.PathLike | None,
                        metrics: list[dict[str, str]]) -> Path | None:
    if split_file is None or str(split_file).lower() == "none":
        return None
    if str(split_file).lower() != "auto":
        return Path(split_file).expanduser()
    if (folder / BUILD_INFO).is_file():  # a zoo built offline: its rows are already in random network order
        return None
    name = zoo_dataset_name(folder, metrics)
    optout = "or set data.split_file=none to use file order (not comparable with published numbers)"
    if name is None:
        raise NnzooError(f"data.split_file=auto cannot tell which public Small CNN Zoo {folder} holds (no cifar10, "
                         "svhn, mnist or fashion_mnist in its config.dataset column or folder name); set "
                         f"data.split_file=<its NFN index file>, {optout}")
    candidates = split_file_candidates(folder, name)
    for path in candidates:
        if path.is_file():
            return path
    sources = " or ".join(SPLIT_FILE_SOURCES if name == "cifar10" else SPLIT_FILE_SOURCES[:1]).format(name=name)
    raise NnzooError(f"{folder} is the public {name} Small CNN Zoo, whose published train/val/test split needs "
                     f"its NFN index file, not found (looked for {', '.join(str(c) for c in candidates)}); get "
                     f"{sources} and put it in {folder}, or set data.split_file=<path>, {optout}")


def read_split_file(path: Path, rows: int, dataset: str | None = None) -> tuple[np.ndarray, str]:
    """Row order from an index file, read as the reference reads it; returns ``(order, sha256)``.

    The reference reads the file with ``pd.read_csv(path, header=None)``: every non-blank line is an
    index, *including the first line* ``0`` that pandas wrote as the column name of the public files.
    So a public file yields ``rows + 1`` indices with row 0 twice (first, and again at its place in the
    permutation); :func:`load_small_cnn_zoo` keeps that.  Accepted: ``rows`` indices (a plain
    permutation) or ``rows + 1`` (a first line read as an index, then a permutation).  A public file
    (known sha256) must match the zoo's dataset and size; an unknown one is used with a warning.
    """
    if not path.is_file():
        raise NnzooError(f"split index file not found: {path}; set data.split_file to the zoo's NFN index file "
                         "(or data.split_file=none for file order, not comparable with published numbers)")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        order = np.array([int(line) for line in data.decode().splitlines() if line.strip()], dtype=np.int64)
    except (ValueError, UnicodeDecodeError):
        raise NnzooError(f"{path} must hold one integer row index per line (the NFN index file format)") from None
    known = PUBLIC_SPLIT_FILES.get(digest)
    if known is not None:
        name, size = known
        if dataset is not None and dataset != name:
            raise NnzooError(f"{path} is NFN's {name} index file but the zoo is {dataset}; use {dataset}_split.csv")
        if size != rows:
            raise NnzooError(f"{path} is NFN's {name} index file, for the {size:,} rows of the public {name} zoo, "
                             f"but this zoo has {rows:,} rows; use the complete public zoo or data.split_file=none")
    if len(order) not in (rows, rows + 1):
        raise NnzooError(f"{path} holds {len(order):,} indices but the zoo has {rows:,} rows: an index file lists "
                         f"every row once ({rows:,} lines, or {rows + 1:,} with a header line as NFN's files)")
    body = order[len(order) - rows:]  # without the header line, if any
    if len(order) and (order.min() < 0 or order.max() >= rows) or len(np.unique(body)) != rows:
        raise NnzooError(f"{path} is not a permutation of the {rows:,} rows of the zoo (after an optional header line)")
    if known is None:
        console.print(f"warning: {path} (sha256 {digest[:16]}...) is not one of NFN's public index files; using it "
                      "as your own row permutation: the split differs from published numbers' split",
                      soft_wrap=True, markup=False, highlight=False)
    return order, digest


def load_small_cnn_zoo(folder: str | os.PathLike, *, split_file: str | os.PathLike | None = None,
                       activation: str | None = None, stride: int = 2, padding: int | str = 0) -> CnnZoo:
    """Read a zoo folder: final checkpoints only, PyTorch layout, protocol splits.

    ``split_file``: ``None`` or ``"none"`` keeps file order (``"none"``, the explicit opt-out, warns);
    ``"auto"`` finds the public NFN index file next to the zoo (:func:`split_file_candidates`; a zoo
    built offline keeps file order); anything else is the index file's path.  ``activation``
    (``relu``/``tanh``) keeps one sub-zoo, like ScaleGMN's subsets; rows with NaN/Inf weights are
    refused with the count and file.
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise NnzooError(f"Small CNN Zoo folder not found: {folder}; it must hold {', '.join(FILES)} "
                         "(or leave data.root empty to build a zoo offline)")
    layout = _read_layout(folder / "layout.csv")
    metrics = _read_metrics(folder / "metrics.csv.gz")
    weights = _read_weights(folder / "weights.npy")
    if len(metrics) != len(weights):
        raise NnzooError(f"{folder / 'weights.npy'} has {len(weights)} rows but {folder / 'metrics.csv.gz'} has "
                         f"{len(metrics)}; the files do not belong together")
    order, digest = np.arange(len(weights)), None
    index_file = _resolve_split_file(folder, split_file, metrics)
    if index_file is not None:
        # The header quirk, kept on purpose: with NFN's files ``order`` has rows + 1 entries and row 0 comes
        # first *and* again at its own place (read_split_file).  Like every row it then goes through the
        # final-checkpoint filter below: if row 0 is not a final (step-86) checkpoint -- we have not checked
        # which checkpoint row 0 of each public zoo is -- it is dropped and the quirk changes nothing; if it is,
        # network 0 is kept twice (first in the train/val half, once more where its index falls) and the 50%
        # split point moves by one row, exactly as in the reference.
        order, digest = read_split_file(index_file, len(weights), zoo_dataset_name(folder, metrics))
    elif isinstance(split_file, str) and split_file.lower() == "none" and not (folder / BUILD_INFO).is_file():
        console.print(f"warning: data.split_file=none: {folder} is split in file order, not the NFN/Neural Graphs "
                      "split of published numbers", soft_wrap=True, markup=False, highlight=False)
    try:
        steps = np.array([float(metrics[i]["step"]) for i in order])
        accuracy = np.array([float(metrics[i]["test_accuracy"]) for i in order])
    except ValueError:
        raise NnzooError(f"{folder / 'metrics.csv.gz'} has non-numeric step/test_accuracy values") from None
    # The final checkpoint of every network.  The reference keeps ``step == 86``: the last checkpoint of the
    # public zoos (epochs 0, 1, 2, 3, 20, 40, 60, 80, 86), so the maximum is the same filter there, and it also
    # reads zoos built offline (final step = build.steps).
    keep = steps == steps.max()
    acts = [metrics[i].get("config.activation") or "relu" for i in order]
    if activation is not None:
        keep &= np.array([a == activation for a in acts])
    rows = order[keep]
    if len(rows) == 0:
        raise NnzooError(f"{folder}: no final-checkpoint rows" + (f" with activation {activation}" if activation else ""))
    names = sorted({acts[i] for i in np.flatnonzero(keep)})
    specs = tuple(spec_from_layout(layout, a, stride, padding, folder / "layout.csv") for a in names)
    # sorted reads are fast on a memory map; the ranks restore the permuted order (duplicates included)
    params = _to_nnzoo(weights[np.sort(rows)][np.argsort(np.argsort(rows, kind="stable"), kind="stable")],
                       layout, specs[0], folder / "layout.csv")
    bad = ~torch.isfinite(params).all(dim=1)
    if bad.any():
        raise NnzooError(f"{folder / 'weights.npy'}: {int(bad.sum())} final-checkpoint rows hold NaN/Inf weights "
                         "(e.g. diverged training); remove them from the zoo")
    kept_acts = [acts[i] for i in np.flatnonzero(keep)]
    return CnnZoo(specs=specs, params=params,
                  spec_index=torch.tensor([names.index(a) for a in kept_acts], dtype=torch.long),
                  accuracy=torch.tensor(accuracy[keep], dtype=torch.float32),
                  splits=protocol_splits(len(rows)),
                  configs=[{k: v for k, v in metrics[i].items() if k.startswith("config.")} for i in rows],
                  split_file=str(index_file) if index_file is not None else None, split_sha256=digest)
