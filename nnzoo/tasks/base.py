"""LightningModules that train any registered model on a weight dataset.

The split follows Lightning's: the datamodule owns data, the task owns the
model, loss, metrics and optimiser.  The model is rebuilt from the task's
hyperparameters (model options + the dataset's :class:`DataInfo`), which
Lightning stores in every checkpoint, so ``load_from_checkpoint`` needs no data.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.models import count_parameters, create_model


class WeightSpaceTask(L.LightningModule):
    """Common optimisation: AdamW (amsgrad) with linear warm-up, then constant or cosine decay.

    Gradient clipping is the Trainer's ``gradient_clip_val``.
    """

    def __init__(self, model: dict[str, Any], data_info: dict[str, Any], optim: dict[str, Any] | None = None,
                 task: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.run_config: dict[str, Any] | None = None  # the run's full config: set by nnzoo fit, read back on load
        self.task_options = dict(task or {})
        self.info = DataInfo.from_dict(data_info)
        options = {k: v for k, v in model.items() if k != "name"}
        self.model = create_model(model["name"], self.info, **options)
        self.optim = {"lr": 1e-3, "weight_decay": 5e-4, "amsgrad": True, "warmup_steps": 100,
                      "schedule": "constant", **(optim or {})}

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def forward(self, batch: WeightBatch) -> Tensor:
        return self.model(batch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the full run config (set by ``nnzoo fit``) in the checkpoint: ``nnzoo test`` rebuilds the very
        dataset it was trained on from the ``.ckpt`` alone."""
        if self.run_config is not None:
            checkpoint["nnzoo_config"] = self.run_config

    def configure_optimizers(self):
        o = self.optim
        optimizer = torch.optim.AdamW(self.parameters(), lr=o["lr"], weight_decay=o["weight_decay"],
                                      amsgrad=o["amsgrad"])
        warmup = max(int(o["warmup_steps"]), 1)
        total = max(int(self.trainer.estimated_stepping_batches), warmup + 1) if self._trainer else warmup + 1

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if o["schedule"] == "cosine":
                progress = min((step - warmup) / max(total - warmup, 1), 1.0)
                return 0.5 * (1 + math.cos(progress * math.pi))
            return 1.0

        # Closed form, not SequentialLR(LinearLR, CosineAnnealingLR): those update the rate recursively, which
        # drifts from this formula (8e-12 relative over 1e5 steps, measured) and climbs back after T_max where this
        # stays at 0; tests/test_models.py::test_learning_rate_schedule checks the rates and a resume.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- Lightning hooks: each task implements ``_step(batch, stage)`` and ``predict_scores(batch)``
    def _step(self, batch: WeightBatch, stage: str) -> Tensor:
        raise NotImplementedError

    def predict_scores(self, batch: WeightBatch) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: WeightBatch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: WeightBatch, batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: WeightBatch, batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def predict_step(self, batch: WeightBatch, batch_idx: int) -> Tensor:
        return self.predict_scores(batch)
