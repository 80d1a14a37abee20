"""The Small Transformer Zoo of Transformer-NFN (Tran et al., ICLR 2025), read into graph specs.

Public layout (github.com/Fsoft-AIC/Transformer-NFN: README "Download data", ``vision_task/solver.py``,
``text_classification/solver.py``, ``nfn_transformer/common/data_utils.py``), after unzipping
``MNIST-Transformers.zip`` (or ``AG-News-Transformers.zip``) into ``<root>``::

    <root>/metadata/<name>.csv     one row per checkpoint: the run's config (embed_dim, n_attention_heads,
                                   n_layers, forward_mul, patch_size, ...), ckpt_epoch (1, 50, 75, 100, best1),
                                   ckpt_file (<name>/<run>_<epoch>_<accuracy x 10^4>.pt) and the test accuracy
                                   (test_top1_accuracy for mnist, test_accuracy for ag_news)
    <root>/<name>/<run>_<epoch>_<acc>.pt   torch.save(model.state_dict()) of the run at that epoch
    <root>/<name>/embedding.pt     (ag_news) the shared, frozen word embedding; not in the checkpoints

``<name>`` is ``mnist`` or ``ag_news``.  The networks (``vision_task/model.py``, ``text_classification/model.py``)
are encoders *without* residual connections: ``x = attention(LN(x))``, then ``x = fc2(relu(fc1(LN(x))))``,
LayerNorms without affine parameters, bias-free ``queries``/``keys``/``values``/``out_projection``, a final
LayerNorm, mean pooling over tokens and a two-layer classifier.  The vision models embed 4x4 patches with a
convolution (``embedding.conv1``) and add a fixed sinusoidal table stored as the parameter
``embedding.pos_embedding``; the text models' checkpoints start at the encoder (their input is the embedded
tokens).  :class:`SmallZooViT` and :class:`SmallZooText` are written here with the same parameter names, so a
checkpoint loads into them as it is and :func:`nnzoo.nets.spec_from_module` reads their graph.

The reference keeps only the epoch-75 checkpoints (``ckpt_epoch == '75'``) above ``cut_off`` accuracy, shuffles
them with Python's ``random`` after ``random.seed(3)`` and takes 70/15/15 % as train/val/test; so does
:func:`load_small_transformer_zoo` by default (the same rule, from the CSV's row order; the reference's
``wandb.init`` runs between seeding and shuffling, so its exact draw cannot be confirmed offline).
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nnzoo.data.formats.cnn_park import CnnPark
from nnzoo.errors import NnzooError
from nnzoo.io import load_tensors, save_tensors, write_text
from nnzoo.nets.graph_spec import GraphSpec, graph_state_dict_to_params
from nnzoo.progress import progress_bar

NAMES = ("mnist", "ag_news")
ACCURACY_COLUMNS = {"mnist": ("test_top1_accuracy", "test_accuracy"),
                    "ag_news": ("test_accuracy", "test_top1_accuracy")}
"""Test-accuracy column the reference reads per dataset first, then the other spelling."""
SPLIT_FRACTIONS = (0.7, 0.15)
REFERENCE_SEED = 3  # nfn_transformer/main.py --seed default: set_seed -> random.seed(3)
TEXT_TOKENS = 8  # sequence length the text graph is read on (the graph does not depend on it)


def sinusoid(dim: int, length: int) -> Tensor:
    """The fixed positional table of the reference (``getPositionalEncoding``): sin on even, cos on odd features."""
    position = torch.arange(length).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return table


class _Embedding(nn.Module):
    def __init__(self, channels: int, dim: int, image_size: int, patch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, dim, patch, stride=patch)
        self.pos_embedding = nn.Parameter(sinusoid(dim, (image_size // patch) ** 2), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return x.reshape(len(x), x.shape[1], -1).permute(0, 2, 1) + self.pos_embedding


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.queries, self.keys, self.values = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.out_projection = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, s, e = x.shape
        d = e // self.heads
        q, k, v = (lin(x).reshape(b, s, self.heads, d).permute(0, 2, 1, 3)
                   for lin in (self.queries, self.keys, self.values))
        scores = torch.softmax(torch.matmul(q, k.permute(0, 1, 3, 2)) / d ** 0.5, dim=-1)
        return self.out_projection(torch.matmul(scores, v).permute(0, 2, 1, 3).reshape(b, s, e))


class _Encoder(nn.Module):
    def __init__(self, dim: int, heads: int, forward_mul: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attention = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.fc1 = nn.Linear(dim, dim * forward_mul)
        self.fc2 = nn.Linear(dim * forward_mul, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.attention(self.norm1(x))  # no residual connections, as the reference trains them
        return self.fc2(torch.relu(self.fc1(self.norm2(x))))


class _Classifier(nn.Module):
    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(x.mean(dim=1))))


def _encode(net: nn.Module, x: Tensor) -> Tensor:
    """Encoder blocks, final LayerNorm, classifier: the forward both zoo networks share after their input."""
    for block in net.encoder:
        x = block(x)
    return net.classifier(net.norm(x))


class SmallZooViT(nn.Module):
    """The Small Transformer Zoo's vision transformer (``vision_task/model.py``, same parameter names)."""

    def __init__(self, channels: int = 1, dim: int = 32, layers: int = 2, heads: int = 2, forward_mul: int = 2,
                 image_size: int = 28, patch: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.embedding = _Embedding(channels, dim, image_size, patch)
        self.encoder = nn.ModuleList(_Encoder(dim, heads, forward_mul) for _ in range(layers))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.classifier = _Classifier(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        return _encode(self, self.embedding(x))


class SmallZooText(nn.Module):
    """The Small Transformer Zoo's text encoder and classifier, on already embedded tokens ``(B, L, dim)`` (the
    checkpoints leave the shared, frozen word embedding out)."""

    def __init__(self, dim: int = 32, layers: int = 2, heads: int = 2, forward_mul: int = 2, classes: int = 4
                 ) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(_Encoder(dim, heads, forward_mul) for _ in range(layers))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.classifier = _Classifier(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        return _encode(self, x)


# ------------------------------------------------------------------ architecture of a checkpoint
def architecture(state: dict[str, Any], heads: int, source: Path) -> dict[str, int]:
    """Sizes of a checkpoint's network, read off its tensor shapes (``heads`` is not in the weights)."""
    def shape(key: str, dims: int) -> tuple[int, ...]:
        t = state.get(key)
        if not isinstance(t, Tensor) or t.dim() != dims:
            raise NnzooError(f"{source} has no {dims}-D tensor '{key}'; it is not a Small Transformer Zoo "
                             "checkpoint")
        return tuple(t.shape)
    layers = len({str(k).split(".")[1] for k in state if str(k).startswith("encoder.")})
    if layers == 0:
        raise NnzooError(f"{source} has no 'encoder.*' tensors; it is not a Small Transformer Zoo checkpoint")
    dim = shape("encoder.0.attention.queries.weight", 2)[0]
    hidden = shape("encoder.0.fc1.weight", 2)[0]
    classes = shape("classifier.fc2.weight", 2)[0]
    if min(dim, hidden, classes) < 1 or dim % heads or hidden % dim:
        raise NnzooError(f"{source}: width {dim} with {heads} heads and feed-forward width {hidden} do not fit the "
                         "Small Transformer Zoo architecture; set data.heads to the zoo's n_attention_heads")
    arch = {"dim": dim, "layers": layers, "heads": heads, "forward_mul": hidden // dim, "classes": classes}
    if "embedding.conv1.weight" in state:
        out, channels, patch, _ = shape("embedding.conv1.weight", 4)
        tokens = shape("embedding.pos_embedding", 2)[0]
        side = math.isqrt(tokens)
        if tokens < 1 or side * side != tokens:
            raise NnzooError(f"{source}: embedding.pos_embedding has {tokens} rows, not a square number of patches")
        arch.update(channels=channels, patch=patch, image_size=side * patch)
    return arch


def zoo_network(arch: dict[str, int]) -> nn.Module:
    """The module of one architecture (vision when it has a patch embedding, else text)."""
    common = dict(dim=arch["dim"], layers=arch["layers"], heads=arch["heads"], forward_mul=arch["forward_mul"],
                  classes=arch["classes"])
    if "patch" in arch:
        return SmallZooViT(arch["channels"], image_size=arch["image_size"], patch=arch["patch"], **common)
    return SmallZooText(**common)


def zoo_spec(arch: dict[str, int]) -> GraphSpec:
    """The graph spec of one architecture, named after it."""
    from nnzoo.nets import spec_from_module
    net = zoo_network(arch)
    shape = (arch["channels"], arch["image_size"], arch["image_size"]) if "patch" in arch else (TEXT_TOKENS,
                                                                                               arch["dim"])
    spec = spec_from_module(net, input_shape=shape, graph=True)
    kind = "vit" if "patch" in arch else "text"
    keys = ("dim", "layers", "heads", "forward_mul", "patch", "image_size", "classes")
    return replace(spec, name="_".join([f"stz_{kind}", *(f"{k}={arch[k]}" for k in keys if k in arch)]))


# ------------------------------------------------------------------ reading
def _read_metadata(path: Path, name: str) -> tuple[list[dict[str, str]], str]:
    if not path.is_file():
        raise NnzooError(f"Small Transformer Zoo metadata not found: {path} (unzip the zoo into data.root so that "
                         f"it holds metadata/{name}.csv and {name}/)")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NnzooError(f"cannot read {path} ({exc.__class__.__name__}: {exc}); restore it from the zoo") from None
    columns = set(rows[0]) if rows else set()
    accuracy = next((c for c in ACCURACY_COLUMNS.get(name, ACCURACY_COLUMNS["mnist"]) if c in columns), None)
    missing = sorted({"ckpt_file", "ckpt_epoch"} - columns) + ([] if accuracy else ["test_top1_accuracy"])
    if missing:
        raise NnzooError(f"{path} lacks column(s) {missing}; is it a Small Transformer Zoo metadata CSV?")
    return rows, accuracy


def _accuracy(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise NnzooError(f"{path} line {line}: test accuracy {text!r} is not a fraction in [0, 1]; restore the file")
    return value


def _checkpoint_path(root: Path, name: str, ckpt_file: str, path: Path, line: int) -> Path:
    """``ckpt_file`` (``<name>/<file>.pt``) resolved inside ``<root>/<name>``, never outside it."""
    file = ckpt_file[len(name) + 1:] if ckpt_file.startswith(f"{name}/") else ckpt_file
    if not file.endswith(".pt") or Path(file).name != file or file in (".pt", "..pt"):
        raise NnzooError(f"{path} line {line}: ckpt_file {ckpt_file!r} is not '{name}/<file>.pt'; restore the file")
    if not (root / name / file).is_file():  # checked for every row before any checkpoint is read
        raise NnzooError(f"{path} line {line}: checkpoint {root / name / file} not found; unzip the whole zoo into "
                         f"{root}")
    return root / name / file


def load_small_transformer_zoo(root: str | os.PathLike, name: str | None = None, epoch: str = "75",
                               cut_off: float = 0.0, heads: int = 2, seed: int = REFERENCE_SEED) -> CnnPark:
    """Read the zoo's checkpoints of ``epoch`` (``all``: every checkpoint) with test accuracy ``>= cut_off``.

    ``heads``: the number of attention heads when the CSV has no ``n_attention_heads`` column (the reference
    loader's ``n_heads`` default is 2).  Split: the reference's rule (shuffle with ``random.Random(seed)``, then
    70/15/15 %), by run when several checkpoints of a run are kept, so no run is on both sides.
    """
    root = Path(root)
    if not root.is_dir():
        raise NnzooError(f"Small Transformer Zoo folder not found: {root}")
    if name is None:
        found = sorted(p.stem for p in (root / "metadata").glob("*.csv")) if (root / "metadata").is_dir() else []
        if len(found) != 1:
            raise NnzooError(f"{root / 'metadata'} holds {found or 'no'} metadata CSV(s); set data.zoo to one of "
                             f"{', '.join(NAMES)}")
        name = found[0]
    path = root / "metadata" / f"{name}.csv"
    rows, accuracy_column = _read_metadata(path, name)
    chosen: list[tuple[Path, float, str, int]] = []
    for line, row in enumerate(rows, start=2):
        if epoch != "all" and str(row["ckpt_epoch"]).strip() != str(epoch):
            continue
        acc = _accuracy(row[accuracy_column], path, line)
        if cut_off > 0 and acc < cut_off:
            continue
        file = _checkpoint_path(root, name, row["ckpt_file"], path, line)
        row_heads = row.get("n_attention_heads", "").strip()
        if row_heads and not re.fullmatch(r"[1-9][0-9]{0,3}", row_heads):
            raise NnzooError(f"{path} line {line}: n_attention_heads {row_heads!r} is not a positive integer")
        chosen.append((file, acc, file.stem.split("_")[0], int(row_heads) if row_heads else heads))
    if len({run for _, _, run, _ in chosen}) < 3:
        raise NnzooError(f"{path}: {len(chosen)} checkpoint(s) of epoch {epoch} with accuracy >= {cut_off}; a "
                         "train/val/test split needs at least 3 runs (lower data.cut_off or set data.epoch=all)")
    groups: dict[str, int] = {}
    specs: list[GraphSpec] = []
    params: list[list[Tensor]] = []
    group_of, row_of, accuracy, run_of = [], [], [], []
    with progress_bar(len(chosen), "reading Small Transformer Zoo checkpoints") as advance:
        for file, acc, run, row_heads in chosen:
            state = load_tensors(file, "Small Transformer Zoo checkpoint")
            if not isinstance(state, dict):
                raise NnzooError(f"{file} is not a state dict; it is not a Small Transformer Zoo checkpoint")
            arch = architecture(state, row_heads, file)
            key = repr(sorted(arch.items()))
            if key not in groups:
                groups[key] = len(specs)
                specs.append(zoo_spec(arch))
                params.append([])
            g = groups[key]
            params[g].append(graph_state_dict_to_params(state, specs[g], file))
            group_of.append(g)
            row_of.append(len(params[g]) - 1)
            accuracy.append(acc)
            run_of.append(run)
            advance(1)
    runs = list(dict.fromkeys(run_of))  # first-appearance order: the CSV's row order, as the reference shuffles
    random.Random(seed).shuffle(runs)
    n_train, n_val = int(len(runs) * SPLIT_FRACTIONS[0]), int(len(runs) * SPLIT_FRACTIONS[1])
    split_of = {r: ("train" if i < n_train else "val" if i < n_train + n_val else "test") for i, r in enumerate(runs)}
    network_split = [split_of[r] for r in run_of]
    splits = {s: torch.tensor([i for i, x in enumerate(network_split) if x == s], dtype=torch.long)
              for s in ("train", "val", "test")}
    return CnnPark(tuple(specs), [torch.stack(p) for p in params], torch.tensor(group_of), torch.tensor(row_of),
                   torch.tensor(accuracy), splits)


# ------------------------------------------------------------------ writing (tests, conversions)
def write_small_transformer_zoo(root: str | os.PathLike, name: str, states: list[dict[str, Tensor]],
                                records: list[dict[str, Any]]) -> Path:
    """Write checkpoints and ``metadata/<name>.csv`` in the public layout; ``records[i]`` holds the CSV row of
    ``states[i]`` (``ckpt_file`` is filled in from ``run`` and ``ckpt_epoch``)."""
    root = Path(root)
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    column = ACCURACY_COLUMNS[name][0]
    rows = []
    for state, record in zip(states, records):
        acc = float(record[column])
        file = f"{record['run']}_{record['ckpt_epoch']}_{int(acc * 10000)}.pt"
        save_tensors(root / name / file, state)
        rows.append({**{k: v for k, v in record.items() if k != "run"}, "ckpt_file": f"{name}/{file}"})
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    write_text(root / "metadata" / f"{name}.csv", table.getvalue())
    return root
