"""Weight datasets: public-format loaders, offline builders and LightningDataModules.

Importing this package registers every built-in dataset.
"""

from nnzoo.data import arch_zoo, cnn, editing, inr, packed  # noqa: F401  (registers the datasets)
from nnzoo.data.datamodule import DATASETS, WeightDataModule, create_datamodule
from nnzoo.data.weights import DataInfo, WeightBatch, WeightDataset

__all__ = ["DATASETS", "DataInfo", "WeightBatch", "WeightDataModule", "WeightDataset", "create_datamodule"]
