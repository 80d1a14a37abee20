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
from nnzoo.models.compiling import compile_model, plan_compile
from nnzoo.progress import note

WARMUP_SCALED_FRACTION = 0.1
"""``optim.warmup_scaling=auto``: a recipe's warm-up that would fill at least half of the planned steps is cut to
this fraction of them (a common warm-up share); shorter warm-ups are the recipe's and stay."""


def plan_warmup(recipe_steps: int, planned_steps: float, scaling: str) -> tuple[int, str | None]:
    """The warm-up a run uses, and a line saying why when it is not the recipe's (or is, but cannot work).

    The reference recipes warm up for 1,000 (NG) or 10,000 (NFN) steps of runs of 10^5 steps or more.  A run of
    a few hundred steps (the main job, a pack of 30 networks) would spend all of it below the recipe's learning
    rate and report success at chance accuracy; ``auto`` scales such a warm-up to the planned run, ``fixed``
    keeps it and warns.  ``planned_steps`` is Lightning's ``estimated_stepping_batches`` (inf when unbounded).
    """
    recipe = max(int(recipe_steps), 0)
    if not math.isfinite(planned_steps) or planned_steps <= 0 or recipe < planned_steps / 2:
        return recipe, None
    planned = int(planned_steps)
    if scaling == "auto":
        steps = max(int(planned * WARMUP_SCALED_FRACTION), 1)
        return steps, (f"warm-up: {steps} steps, the recipe's {recipe} scaled to {WARMUP_SCALED_FRACTION:.0%} of the "
                       f"{planned} planned steps (optim.warmup_scaling=auto; =fixed keeps {recipe})")
    return recipe, (f"warning: the warm-up ({recipe} steps) fills {min(recipe / planned, 1):.0%} of the {planned} "
                    "planned steps, so most of the run trains below the recipe's learning rate; set "
                    "optim.warmup_scaling=auto, fewer optim.warmup_steps or more trainer.max_epochs")


class WeightSpaceTask(L.LightningModule):
    """Common optimisation: AdamW (amsgrad) with linear warm-up, then constant or cosine decay.

    Gradient clipping is the Trainer's ``gradient_clip_val``.
    """

    def __init__(self, model: dict[str, Any], data_info: dict[str, Any], optim: dict[str, Any] | None = None,
                 task: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.run_config: dict[str, Any] | None = None  # the run's full config: set by nnzoo fit, read back on load
        self.compile_setting: bool | str = False  # the run option ``compile``: set by nnzoo fit, applied at fit start
        self.task_options = dict(task or {})
        self.info = DataInfo.from_dict(data_info)
        options = {k: v for k, v in model.items() if k != "name"}
        self.model = create_model(model["name"], self.info, **options)
        self.optim = {"lr": 1e-3, "weight_decay": 5e-4, "amsgrad": True, "warmup_steps": 100,
                      "warmup_scaling": "auto", "schedule": "constant", **(optim or {})}

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def forward(self, batch: WeightBatch) -> Tensor:
        return self.model(batch)

    def on_fit_start(self) -> None:
        """Apply the run option ``compile`` now that the device and the planned steps are known (a compiled
        model is still this task's: parameters, state dict and checkpoints are the eager model's)."""
        if getattr(self.model, "compiled", False):
            return
        planned = float(self.trainer.estimated_stepping_batches)
        use, why = plan_compile(self.compile_setting, self.model, self.device.type, planned, torch.get_num_threads())
        if why and getattr(self.trainer, "is_global_zero", True):
            note(why)
        if use:
            compile_model(self.model)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the full run config (set by ``nnzoo fit``) in the checkpoint: ``nnzoo test`` rebuilds the very
        dataset it was trained on from the ``.ckpt`` alone."""
        if self.run_config is not None:
            checkpoint["nnzoo_config"] = self.run_config

    def configure_optimizers(self):
        o = self.optim
        optimizer = torch.optim.AdamW(self.parameters(), lr=o["lr"], weight_decay=o["weight_decay"],
                                      amsgrad=o["amsgrad"])
        planned = float(self.trainer.estimated_stepping_batches) if self._trainer else math.inf
        warmup, why = plan_warmup(o["warmup_steps"], planned, o["warmup_scaling"])
        if why and self._trainer is not None and getattr(self.trainer, "is_global_zero", True):
            note(why)
        warmup = max(warmup, 1)
        total = max(int(planned), warmup + 1) if math.isfinite(planned) else warmup + 1

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
