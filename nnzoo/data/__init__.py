"""Weight datasets: public-format loaders, offline builders and LightningDataModules.

Importing this package registers every built-in dataset.
"""

from nnzoo.data import inr  # noqa: F401  (registers "mnist_inr")
from nnzoo.data.datamodule import DATASETS, WeightDataModule, create_datamodule
from nnzoo.data.weights import DataInfo, WeightBatch, WeightDataset

__all__ = ["DATASETS", "DataInfo", "WeightBatch", "WeightDataModule", "WeightDataset", "create_datamodule"]
