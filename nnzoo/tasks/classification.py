"""Classification of networks from their weights (e.g. which digit an INR draws)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from nnzoo.data.weights import WeightBatch
from nnzoo.models.layers.precision import upcast
from nnzoo.tasks.base import WeightSpaceTask


class ClassificationTask(WeightSpaceTask):
    """Cross-entropy training; logs ``{train,val,test}/loss`` and ``{train,val,test}/acc``."""

    monitor = ("val/acc", "max")

    def __init__(self, model: dict[str, Any], data_info: dict[str, Any], optim: dict[str, Any] | None = None,
                 task: dict[str, Any] | None = None) -> None:
        super().__init__(model, data_info, optim, task)
        classes = self.info.num_outputs
        self.acc = {stage: MulticlassAccuracy(classes, average="micro") for stage in ("train", "val", "test")}
        for stage, metric in self.acc.items():
            self.add_module(f"{stage}_acc", metric)

    def _step(self, batch: WeightBatch, stage: str) -> Tensor:
        logits = upcast(self(batch))  # loss and metrics in float32 under mixed precision (a no-op otherwise)
        loss = F.cross_entropy(logits, batch.y)
        self.acc[stage](logits, batch.y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, batch_size=len(batch),
                 prog_bar=stage == "train")
        self.log(f"{stage}/acc", self.acc[stage], on_step=False, on_epoch=True, batch_size=len(batch),
                 prog_bar=stage != "train")
        return loss

    def predict_scores(self, batch: WeightBatch) -> Tensor:
        """Class probabilities."""
        return upcast(self(batch)).softmax(-1)
