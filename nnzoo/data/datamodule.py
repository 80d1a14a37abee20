"""The shared LightningDataModule of every weight dataset, and the dataset registry.

A concrete datamodule only implements :meth:`WeightDataModule.load`, returning
its train/val/test :class:`~nnzoo.data.weights.WeightDataset` and the
:class:`~nnzoo.data.weights.DataInfo` models are built from; batching,
augmentation and loaders live here once.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from nnzoo.data.augment import WeightAugment
from nnzoo.data.weights import DataInfo, WeightDataset, collate_weight_batch
from nnzoo.errors import NnzooError
from nnzoo.io import cache_home
from nnzoo.progress import warn
from nnzoo.registry import Registry

DATASETS: Registry[type["WeightDataModule"]] = Registry("dataset")


class WeightDataModule(L.LightningDataModule):
    """Base datamodule: builds or loads once, then serves mini-batches of networks."""

    def __init__(self, batch_size: int = 64, eval_batch_size: int | None = None, num_workers: int = 0,
                 augment: dict[str, float] | None = None, cache_dir: str | None = None) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        try:
            self.augment = WeightAugment(**(augment or {}))
        except TypeError as exc:
            known = ", ".join(f.name for f in fields(WeightAugment))
            raise NnzooError(f"bad data.augment option ({exc}); known: {known}") from None
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else cache_home()
        self._splits: dict[str, WeightDataset] | None = None
        self._info: DataInfo | None = None

    # -- to implement ------------------------------------------------------
    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        """Return ``({"train": ..., "val": ..., "test": ...}, info)``; build data first if missing."""
        raise NotImplementedError

    # -- Lightning hooks ------------------------------------------------------
    def prepare_data(self) -> None:
        """Build the dataset if it is missing (called on one process only)."""
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        if self._splits is None:
            splits, info = self.load()
            check_splits(splits, info)
            self._splits, self._info = splits, info

    @property
    def info(self) -> DataInfo:
        self.setup()
        assert self._info is not None
        return self._info

    def split(self, name: str) -> WeightDataset:
        self.setup()
        assert self._splits is not None
        if name not in self._splits:
            raise NnzooError(f"dataset has no '{name}' split (has: {', '.join(self._splits)})")
        return self._splits[name]

    def _loader(self, name: str, train: bool) -> DataLoader:
        dataset = self.split(name)
        if train and self.augment.active:
            dataset = dataset.with_transform(self.augment)
        return DataLoader(dataset, batch_size=self.batch_size if train else self.eval_batch_size,
                          shuffle=train, drop_last=False, collate_fn=collate_weight_batch,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Any split in evaluation order, without augmentation (``nnzoo test --split train``)."""
        return self._loader(split, train=False)

    def describe(self) -> dict[str, Any]:
        """Sizes and architectures, for logs and reports."""
        self.setup()
        assert self._splits is not None
        return {"name": self.info.name, **{f"num_{k}": len(v) for k, v in self._splits.items()},
                "architectures": [s.describe() for s in self.info.specs]}


REQUIRED_SPLITS = ("train", "val", "test")
FEW_EVAL_NETWORKS = 10
"""Below this many validation or test networks a metric moves in steps of 10% or more: the best checkpoint is
picked, and the run scored, by noise."""


def check_splits(splits: dict[str, WeightDataset], info: DataInfo) -> None:
    """Refuse, before any training, a dataset with a missing or empty split, or class ids it does not declare.

    Every run needs all three: without training networks there is nothing to fit, without
    validation networks no best checkpoint is chosen, without test networks no test metric is
    reported, and each of these used to surface late (a crash deep in Lightning, or exit code 0
    with nothing to show).  Classification targets must be class ids below ``info.num_outputs``,
    the number of classes the dataset declares.  Applies to every registered dataset.
    """
    source = next((str(info.extra[k]) for k in ("splits_file", "root", "folder") if info.extra.get(k)), None)
    where = f"dataset '{info.name}'" + (f" ({source})" if source else "")
    for name in REQUIRED_SPLITS:
        if name not in splits or len(splits[name]) == 0:
            raise NnzooError(f"{where} has no {name} networks: the {name} split is empty; a run needs train, val "
                             "and test networks, so fix or replace the data (or, for built data, enlarge data.build)")
        targets = splits[name].targets
        if info.task == "classification" and len(targets):
            low, high = int(targets.min()), int(targets.max())
            if targets.is_floating_point() or low < 0 or high >= info.num_outputs:
                raise NnzooError(f"{where}: {name} labels span {low}..{high} but the dataset declares "
                                 f"{info.num_outputs} classes; fix or replace the data")
    for name in ("val", "test"):
        if len(splits[name]) < FEW_EVAL_NETWORKS:
            warn(f"{where} has only {len(splits[name])} {name} networks, so its {name} metrics move in steps of "
                 f"{1 / len(splits[name]):.0%} or more; give it at least {FEW_EVAL_NETWORKS} (a pack: more networks "
                 "or a larger --val-fraction/--test-fraction)")


def create_datamodule(name: str, **kwargs: Any) -> WeightDataModule:
    """Instantiate a registered datamodule; unknown options give a one-line error."""
    cls = DATASETS.get(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise NnzooError(f"bad option for dataset '{name}': {exc}") from None
