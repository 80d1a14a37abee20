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
data, and nnzoo ships all four, gzipped and byte-identical once decompressed
(``nfn_splits/``, MIT licence of AllanYangZhou/nfn): ``split_file="auto"`` uses a
copy next to the zoo if there is one (:func:`split_file_candidates`), else the
shipped one, and identifies every index file by its sha256 (:data:`PUBLIC_SPLIT_FILES`).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import os
import random
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nnzoo.data.builders.cache import BUILD_INFO
from nnzoo.errors import NnzooError
from nnzoo.io import atomic_path, write_text
from nnzoo.nets.spec import ACTIVATIONS, LayerSpec, NetworkSpec
from nnzoo.progress import warn

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


Layout = list[tuple[str, tuple[int, ...], int, int]]
"""``(varname, shape, start_idx, end_idx)`` per row of ``layout.csv``."""

_INT = re.compile(r"[+-]?[0-9]{1,15}")  # ASCII digits only: int() would also take "1_0" and other scripts' digits
_LAYOUT_COLUMNS = ("varname", "shape", "start_idx", "end_idx")


def _layout_int(text: str, what: str, path: Path, line: int) -> int:
    if not _INT.fullmatch(text.strip()):
        raise NnzooError(f"{path} line {line}: {what} is {text!r}, not an integer; fix or replace the file")
    return int(text)


def _parse_shape(text: str, name: str, path: Path, line: int) -> tuple[int, ...]:
    """``"(3, 3, 1, 16)"`` -> ``(3, 3, 1, 16)``; brackets optional, every dimension a positive integer.

    Strict on purpose: reading only the digits turned ``-3`` into ``3`` and ``2.5`` into ``(2, 5)``."""
    inner = text.strip()
    if inner.startswith(("(", "[")) and inner.endswith((")", "]")):
        inner = inner[1:-1]
    tokens = [t for t in re.split(r"[\s,]+", inner) if t]
    fix = "dimensions must be positive integers, e.g. (3, 3, 1, 16); fix or replace the file"
    if not tokens:
        raise NnzooError(f"{path} line {line}: tensor {name} has an empty shape {text!r}; {fix}")
    dims = []
    for token in tokens:
        if not _INT.fullmatch(token):
            raise NnzooError(f"{path} line {line}: tensor {name} has shape {text!r} with dimension {token!r}; {fix}")
        if int(token) < 1:
            raise NnzooError(f"{path} line {line}: tensor {name} has shape {text!r} with dimension {int(token)}; {fix}")
        dims.append(int(token))
    return tuple(dims)


def _read_layout(path: Path) -> Layout:
    if not path.is_file():
        raise NnzooError(f"layout file not found: {path}; a Small CNN Zoo folder holds {', '.join(FILES)}")
    layout = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in _LAYOUT_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise NnzooError(f"{path} is not a Small CNN Zoo layout: it lacks column(s) {', '.join(missing)} "
                                 f"(need {', '.join(_LAYOUT_COLUMNS)}); fix or replace the file")
            for row in reader:
                line = reader.line_num
                if None in row or any(row[c] is None for c in _LAYOUT_COLUMNS):
                    raise NnzooError(f"{path} line {line} does not have the {len(reader.fieldnames)} fields of "
                                     "its header; fix or replace the file")
                name = row["varname"].strip()
                if not name:
                    raise NnzooError(f"{path} line {line} has an empty varname; fix or replace the file")
                layout.append((name, _parse_shape(row["shape"], name, path, line),
                               _layout_int(row["start_idx"], f"start_idx of {name}", path, line),
                               _layout_int(row["end_idx"], f"end_idx of {name}", path, line)))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise NnzooError(f"{path} is not a readable CSV layout ({exc.__class__.__name__}); fix or replace the "
                         "file") from None
    return layout


def _read_metrics(path: Path) -> tuple[list[dict[str, str]], np.ndarray, np.ndarray]:
    """Rows of ``metrics.csv.gz`` with their ``step`` and ``test_accuracy``, every row checked.

    Accuracies are the regression targets: a NaN, an infinity or a percentage would only surface as a
    NaN training loss much later, so they are refused here, naming row and column."""
    if not path.is_file():
        raise NnzooError(f"metrics file not found: {path}; a Small CNN Zoo folder holds {', '.join(FILES)}")
    rows, lines = [], []
    try:
        with gzip.open(path, "rt", newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, zlib.error) as exc:
        raise NnzooError(f"cannot read {path}: corrupt or not a gzipped CSV ({exc.__class__.__name__}); fix or "
                         "replace the file") from None
    if not header:
        raise NnzooError(f"{path} is empty (no header line); fix or replace the file")
    doubled = sorted({c for c in header if header.count(c) > 1})
    if doubled:
        raise NnzooError(f"{path} has column(s) {doubled} more than once; fix or replace the file")
    missing = {"step", "test_accuracy"} - set(header)
    if missing:
        raise NnzooError(f"{path} lacks column(s) {sorted(missing)}; is it a Small CNN Zoo metrics.csv.gz?")
    if not rows:
        raise NnzooError(f"{path} holds a header but no rows; fix or replace the file")
    for i, (row, line) in enumerate(zip(rows, lines)):
        if None in row or None in row.values():
            raise NnzooError(f"{path}: row {i} (line {line}) does not have the {len(header)} fields of the header; "
                             "fix or replace the file")

    def column(name: str, ok, allowed: str) -> np.ndarray:
        values = []
        for i, row in enumerate(rows):
            try:
                value = float(row[name])
            except ValueError:
                value = math.nan
            if not ok(value):
                raise NnzooError(f"{path}: row {i} (line {lines[i]}), column {name}: {row[name]!r} is not "
                                 f"{allowed}; fix or replace the file")
            values.append(value)
        return np.array(values)

    steps = column("step", lambda v: math.isfinite(v) and v >= 0, "a finite step >= 0")
    accuracy = column("test_accuracy", lambda v: 0.0 <= v <= 1.0,  # False for NaN
                      "an accuracy in [0, 1] (a finite fraction, not a percentage)")
    if "config.activation" in header:
        for i, row in enumerate(rows):
            if row["config.activation"] and row["config.activation"] not in ACTIVATIONS:
                raise NnzooError(f"{path}: row {i} (line {lines[i]}), column config.activation: "
                                 f"{row['config.activation']!r} is not one of {', '.join(ACTIVATIONS)}; fix or "
                                 "replace the file")
    return rows, steps, accuracy


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


# ------------------------------------------------------------------------ checking the layout
def _role(name: str) -> str | None:
    """``.../kernel:0`` -> ``weight``, ``.../bias:0`` -> ``bias``, anything else -> None."""
    return {"kernel": "weight", "bias": "bias"}.get(name.rsplit("/", 1)[-1].split(":", 1)[0])


_KERAS_LAYER = re.compile(r"(?P<prefix>.*/)?(?P<kind>conv2d|dense)(?:_(?P<n>[0-9]+))?")


def _missing_layer_between(before: str | None, after: str) -> str:
    """Name the Keras layer a numbering gap points to (``conv2d`` .. ``conv2d_2`` -> ``conv2d_1``), else ''."""
    nxt = _KERAS_LAYER.fullmatch(after.rsplit("/", 1)[0])
    if nxt is None:
        return ""
    prev = _KERAS_LAYER.fullmatch(before.rsplit("/", 1)[0]) if before else None
    if prev is not None and (prev["prefix"], prev["kind"]) != (nxt["prefix"], nxt["kind"]):
        return ""
    low = int(prev["n"] or 0) + 1 if prev is not None else 0
    if int(nxt["n"] or 0) <= low:
        return ""
    missing = (nxt["prefix"] or "") + nxt["kind"] + (f"_{low}" if low else "")
    return f" (layer {missing}: its bias and kernel rows)"


def _layout_layers(layout: Layout, source: Path | str, width: int | None = None
                   ) -> list[dict[str, tuple[str, tuple[int, ...], int, int]]]:
    """Check that the rows give each layer one kernel and one bias and tile ``[0, width)`` exactly.

    Returns the layers in file order as ``{"weight": row, "bias": row}``.  Anything less would leave parts
    of the converted parameters unwritten (uninitialised memory) or read one value into two tensors."""
    fix = "fix or replace it"
    if not layout:
        raise NnzooError(f"{source} lists no tensors; {fix}")
    layers: dict[str, dict[str, tuple[str, tuple[int, ...], int, int]]] = {}
    names: set[str] = set()
    for row in layout:
        name, shape, start, end = row
        role = _role(name)
        if role is None:
            raise NnzooError(f"{source}: tensor {name} is neither a kernel nor a bias (a Small CNN Zoo holds conv and "
                             f"dense kernels and biases only); {fix}")
        if name in names:
            raise NnzooError(f"{source} lists tensor {name} twice; each tensor has exactly one row; {fix}")
        names.add(name)
        if not shape or any(d < 1 for d in shape):
            raise NnzooError(f"{source}: tensor {name} has shape {shape}; dimensions must be positive; {fix}")
        if not 0 <= start < end:
            raise NnzooError(f"{source}: tensor {name} spans [{start}, {end}); need 0 <= start_idx < end_idx; {fix}")
        if math.prod(shape) != end - start:
            raise NnzooError(f"{source}: tensor {name} of shape {shape} holds {math.prod(shape)} values but spans "
                             f"[{start}, {end}) ({end - start} values); {fix}")
        key = name.rsplit("/", 1)[0]
        layer = layers.setdefault(key, {})
        if role in layer:
            word = "kernel" if role == "weight" else "bias"
            raise NnzooError(f"{source}: layer {key} has two {word} rows ({layer[role][0]} and {name}); {fix}")
        layer[role] = row
    for key, tensors in layers.items():
        for role, word, other in (("bias", "bias", "kernel"), ("weight", "kernel", "bias")):
            if role not in tensors:
                present = next(iter(tensors.values()))[0]
                head, tail = present.rsplit("/", 1) if "/" in present else ("", present)
                missing = (f"{head}/" if head else "") + word + (tail[len(other):] if tail.startswith(other) else "")
                raise NnzooError(f"{source} has no row for tensor {missing} (layer {key} has a {other} row only); "
                                 f"every layer needs a kernel and a bias row; {fix}")
    position, previous = 0, None
    for name, _, start, end in sorted(layout, key=lambda r: (r[2], r[3])):
        if start > position:
            raise NnzooError(f"{source}: no row covers values [{position}, {start}) of the weight rows, between "
                             f"{previous or 'the start'} and {name}: a tensor row is missing"
                             f"{_missing_layer_between(previous, name)}; {fix}")
        if start < position:
            raise NnzooError(f"{source}: tensors {previous} and {name} overlap on [{start}, {position}); {fix}")
        position, previous = end, name
    if width is not None and position < width:
        raise NnzooError(f"{source}: rows cover values [0, {position}) but weights.npy rows hold {width}: the tensor "
                         f"rows after {previous} are missing (or weights.npy belongs to another zoo); {fix}")
    if width is not None and position > width:
        raise NnzooError(f"{source}: tensor {previous} ends at {position} but weights.npy rows hold {width} values; "
                         f"layout.csv and weights.npy do not belong together; {fix}")
    ordered = sorted(layers.values(), key=lambda t: min(t["weight"][2], t["bias"][2]))
    dense_seen = None
    for tensors in ordered:
        (kernel, kshape, _, _), (bias, bshape, _, _) = tensors["weight"], tensors["bias"]
        if len(kshape) not in (2, 4):
            raise NnzooError(f"{source}: kernel {kernel} has shape {kshape}; expected (h, w, in, out) for a conv or "
                             f"(in, out) for a dense layer; {fix}")
        if len(kshape) == 4 and dense_seen:
            raise NnzooError(f"{source}: conv kernel {kernel} comes after dense kernel {dense_seen}; the Small CNN "
                             f"Zoo architecture is convs, then dense layers; {fix}")
        dense_seen = dense_seen or (kernel if len(kshape) == 2 else None)
        if bshape != (kshape[-1],):
            raise NnzooError(f"{source}: bias {bias} has shape {bshape} but kernel {kernel} has {kshape[-1]} outputs; "
                             f"expected ({kshape[-1]},); {fix}")
    return ordered


def spec_from_layout(layout: Layout, activation: str, stride: int = 2,
                     padding: int | str = 0, source: Path | str = "layout") -> NetworkSpec:
    """Architecture from the layout: conv kernels ``(h, w, in, out)``, dense kernels ``(in, out)``."""
    ordered = _layout_layers(layout, source)
    layers = []
    for i, tensors in enumerate(ordered):
        shape = tensors["weight"][1]
        act = "none" if i == len(ordered) - 1 else activation
        try:
            if len(shape) == 4:
                layers.append(LayerSpec("conv", shape[2], shape[3], shape[:2], stride=stride, padding=padding,
                                        activation=act))
            else:
                layers.append(LayerSpec("linear", shape[0], shape[1], activation=act))
        except NnzooError as exc:
            raise NnzooError(f"{source}: kernel {tensors['weight'][0]}: {exc}") from None
    try:
        return NetworkSpec(tuple(layers), input_kind="image")
    except NnzooError as exc:  # e.g. a kernel whose inputs are not the previous layer's outputs
        raise NnzooError(f"{source}: {exc}; fix or replace it") from None


def _to_nnzoo(rows: Tensor, layout: Layout, spec: NetworkSpec, source: Path) -> Tensor:
    """TF-ordered rows (float32) -> nnzoo flat rows, matching tensors by layer and role.

    :func:`_layout_layers` guarantees every value of the output is written exactly once."""
    out = torch.empty(len(rows), spec.num_params)
    for index, tensors in enumerate(_layout_layers(layout, source, rows.shape[1])):
        for role, (_, shape, start, end) in tensors.items():
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


SHIPPED_SPLITS = Path(__file__).with_name("nfn_splits")
"""NFN's four public index files, gzipped (AllanYangZhou/nfn@ce783221, MIT licence; see its NOTICE)."""


def shipped_split_file(name: str) -> Path:
    """The shipped copy of NFN's index file of zoo ``name`` (cifar10, svhn, mnist, fashion_mnist)."""
    return SHIPPED_SPLITS / f"{name}_split.csv.gz"


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
    if shipped_split_file(name).is_file():  # the public file, shipped with nnzoo
        return shipped_split_file(name)
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
    if path.suffix == ".gz":  # e.g. the shipped copies: identified by the sha256 of the public file itself
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise NnzooError(f"{path} is not a readable gzip file ({exc}); restore it, or set data.split_file to "
                             "the uncompressed index file") from None
    digest = hashlib.sha256(data).hexdigest()
    fix = "fix or replace it, or set data.split_file=none for file order (not comparable with published numbers)"
    try:
        lines = [(n, line.strip()) for n, line in enumerate(data.decode("utf-8-sig").splitlines(), 1) if line.strip()]
    except UnicodeDecodeError:
        raise NnzooError(f"{path} must hold one integer row index per line (the NFN index file format); {fix}"
                         ) from None
    for n, line in lines:
        if not _INT.fullmatch(line):
            raise NnzooError(f"{path} line {n} is {line[:40]!r}: it must hold one integer row index per line (the NFN "
                             f"index file format); {fix}")
    order = np.array([int(line) for _, line in lines], dtype=np.int64)
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
                         f"every row once ({rows:,} lines, or {rows + 1:,} with a header line as NFN's files); {fix}")
    head = len(order) - rows  # 1 with a header line, else 0
    outside = np.flatnonzero((order < 0) | (order >= rows))
    if len(outside):
        n = lines[outside[0]][0]
        raise NnzooError(f"{path} is not a permutation of the {rows:,} rows of the zoo: line {n} holds index "
                         f"{order[outside[0]]}, outside 0..{rows - 1}; {fix}")
    if head and order[0] != 0:
        # NFN's files start with pandas' column name "0"; any other first index would put that row in the
        # train/val half *and* at its own place (possibly test): a train/test overlap the reference never had
        raise NnzooError(f"{path} holds {len(order):,} indices for {rows:,} rows, so its first line is read as NFN's "
                         f"header line, which is always 0, but it is {order[0]} (line {lines[0][0]}): that row "
                         f"would be in the split twice, train/val and test; {fix}")
    values, first, counts = np.unique(order[head:], return_index=True, return_counts=True)
    if (counts > 1).any():
        twice = int(np.flatnonzero(counts > 1)[0])
        again = head + np.flatnonzero(order[head:] == values[twice])[1]
        raise NnzooError(f"{path} is not a permutation of the {rows:,} rows of the zoo: index {values[twice]} is on "
                         f"line {lines[head + first[twice]][0]} and again on line {lines[again][0]} (it would be in "
                         f"two splits, e.g. train and test); {fix}")
    if known is None:
        warn(f"{path} (sha256 {digest[:16]}...) is not one of NFN's public index files; using it "
             "as your own row permutation: the split differs from published numbers' split")
    return order, digest


def load_small_cnn_zoo(folder: str | os.PathLike, *, split_file: str | os.PathLike | None = None,
                       activation: str | None = None, stride: int = 2, padding: int | str = 0) -> CnnZoo:
    """Read a zoo folder: final checkpoints only, PyTorch layout, protocol splits.

    ``split_file``: ``None`` or ``"none"`` keeps file order (``"none"``, the explicit opt-out, warns);
    ``"auto"`` finds the public NFN index file next to the zoo (:func:`split_file_candidates`; a zoo
    built offline keeps file order); anything else is the index file's path.  ``activation``
    (``relu``/``tanh``) keeps one sub-zoo, like ScaleGMN's subsets.  Every file is checked before any
    conversion (:func:`_layout_layers`, :func:`_read_metrics`); final-checkpoint rows with NaN/Inf weights
    are refused with the count and file.
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise NnzooError(f"Small CNN Zoo folder not found: {folder}; it must hold {', '.join(FILES)} "
                         "(or leave data.root empty to build a zoo offline)")
    layout = _read_layout(folder / "layout.csv")
    metrics, all_steps, all_accuracy = _read_metrics(folder / "metrics.csv.gz")
    weights = _read_weights(folder / "weights.npy")
    if len(metrics) != len(weights):
        raise NnzooError(f"{folder / 'weights.npy'} has {len(weights)} rows but {folder / 'metrics.csv.gz'} has "
                         f"{len(metrics)}; the files do not belong together")
    _layout_layers(layout, folder / "layout.csv", weights.shape[1])  # before any work: refuse gaps and overlaps
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
        warn(f"data.split_file=none: {folder} is split in file order, not the NFN/Neural Graphs "
             "split of published numbers")
    steps, accuracy = all_steps[order], all_accuracy[order]  # checked finite (and in [0, 1]) by _read_metrics
    # The final checkpoint of every network.  The reference keeps ``step == 86``: the last checkpoint of the
    # public zoos (epochs 0, 1, 2, 3, 20, 40, 60, 80, 86), so the maximum is the same filter there, and it also
    # reads zoos built offline (final step = build.steps).
    keep = steps == steps.max()
    acts = [metrics[i].get("config.activation") or "relu" for i in order]
    if activation is not None:
        keep &= np.array([a == activation for a in acts])
    rows = order[keep]
    which = f" with activation {activation}" if activation else ""
    if len(rows) == 0:
        raise NnzooError(f"{folder / 'metrics.csv.gz'}: no final-checkpoint rows{which}")
    if len(rows) < 4:  # int(0.5 n) >= 2 test and int(0.8 int(0.5 n)) >= 1 train, leaving >= 1 val
        raise NnzooError(f"{folder / 'metrics.csv.gz'}: only {len(rows)} final-checkpoint network(s) (step "
                         f"{steps.max():g}){which}; the split protocol (half test, the rest 80/20 train/val) needs at "
                         "least 4 for non-empty train, val and test splits")
    names = sorted({acts[i] for i in np.flatnonzero(keep)})
    specs = tuple(spec_from_layout(layout, a, stride, padding, folder / "layout.csv") for a in names)
    # sorted reads are fast on a memory map; the ranks restore the permuted order (duplicates included).
    # Cast first: a float64 value beyond float32's range would turn into inf only in the cast.
    with np.errstate(over="ignore"):  # the overflow is reported below, as a row holding Inf
        selected = np.ascontiguousarray(weights[np.sort(rows)], dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(selected).all(axis=1))
    if len(bad):
        raise NnzooError(f"{folder / 'weights.npy'}: {len(bad)} final-checkpoint rows hold NaN/Inf weights (e.g. "
                         f"diverged training), the first is row {np.sort(rows)[bad[0]]}; fix or replace the file, or "
                         "drop those networks from all three files")
    rank = np.argsort(np.argsort(rows, kind="stable"), kind="stable")
    params = _to_nnzoo(torch.from_numpy(selected[rank]), layout, specs[0], folder / "layout.csv")
    kept_acts = [acts[i] for i in np.flatnonzero(keep)]
    return CnnZoo(specs=specs, params=params,
                  spec_index=torch.tensor([names.index(a) for a in kept_acts], dtype=torch.long),
                  accuracy=torch.tensor(accuracy[keep], dtype=torch.float32),
                  splits=protocol_splits(len(rows)),
                  configs=[{k: v for k, v in metrics[i].items() if k.startswith("config.")} for i in rows],
                  split_file=str(index_file) if index_file is not None else None, split_sha256=digest)
