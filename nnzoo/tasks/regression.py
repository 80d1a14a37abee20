"""Regression of a scalar in [0, 1] from weights (e.g. a CNN's test accuracy: generalization prediction)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import KendallRankCorrCoef, MeanAbsoluteError, R2Score

from nnzoo.data.weights import WeightBatch
from nnzoo.errors import NnzooError
from nnzoo.models.layers.precision import upcast
from nnzoo.tasks.base import WeightSpaceTask

METRICS = {"kendall_tau": KendallRankCorrCoef, "r2": R2Score, "mae": MeanAbsoluteError}


class RegressionTask(WeightSpaceTask):
    """Sigmoid output trained with BCE (or MSE) against the target; logs Kendall tau, R^2 and MAE.

    Model selection uses validation Kendall tau, the metric the generalization
    prediction literature reports.
    """

    monitor = ("val/kendall_tau", "max")

    def __init__(self, model: dict[str, Any], data_info: dict[str, Any], optim: dict[str, Any] | None = None,
                 task: dict[str, Any] | None = None) -> None:
        super().__init__(model, data_info, optim, task)
        self.loss_name = self.task_options.get("regression_loss", "bce")
        if self.loss_name not in ("bce", "mse"):
            raise NnzooError(f"task.regression_loss must be 'bce' or 'mse', got '{self.loss_name}'")
        self.metrics = {}
        for stage in ("train", "val", "test"):
            for name, cls in METRICS.items():
                metric = cls()
                self.add_module(f"{stage}_{name}", metric)
                self.metrics[(stage, name)] = metric

    def predict_scores(self, batch: WeightBatch) -> Tensor:
        """Predicted targets in [0, 1], shape ``(B,)``."""
        return upcast(self(batch)).squeeze(-1).sigmoid()

    def _step(self, batch: WeightBatch, stage: str) -> Tensor:
        logits = upcast(self(batch)).squeeze(-1)  # loss and metrics in float32 under mixed precision
        target = batch.y.float()
        if self.loss_name == "bce":
            loss = F.binary_cross_entropy_with_logits(logits, target)
        else:
            loss = F.mse_loss(logits.sigmoid(), target)
        pred = logits.detach().sigmoid()
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=len(batch),
                 prog_bar=stage == "train")
        for name in METRICS:
            if stage == "train" and name == "kendall_tau":
                continue  # O(N^2) over the epoch; validation is what selects models
            metric = self.metrics[(stage, name)]
            metric.update(pred, target)
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, batch_size=len(batch),
                     prog_bar=stage != "train" and name == "kendall_tau")
        return loss

