"""Editing networks from their weights (e.g. make an INR draw its digit dilated).

The model predicts one change per weight and bias; the edited network is the input plus that change
(the reference's residual update).  It is rendered on the image grid, all networks of a batch at once,
and compared with the target image by mean squared error over pixels, as Neural Graphs trains and
reports style editing (MSE, usually quoted x 10^-2).  The identity edit (the input INR unchanged) is
logged beside it as ``identity_mse``: the floor an editor must beat.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nnzoo.data.siren_fit import render_inrs
from nnzoo.data.weights import WeightBatch
from nnzoo.errors import NnzooError
from nnzoo.models.layers.precision import autocast_off, upcast
from nnzoo.nets.spec import NetworkSpec
from nnzoo.tasks.base import WeightSpaceTask


class EditingTask(WeightSpaceTask):
    """MSE between the edited INR's rendering and the target; logs ``{train,val,test}/mse`` and
    ``{val,test}/identity_mse``."""

    monitor = ("val/mse", "min")

    def __init__(self, model: dict[str, Any], data_info: dict[str, Any], optim: dict[str, Any] | None = None,
                 task: dict[str, Any] | None = None) -> None:
        super().__init__(model, data_info, optim, task)
        size = self.info.extra.get("image_size")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise NnzooError(f"editing dataset '{self.info.name}' records no image_size [H, W] in its info")
        self.image_size = (size[0], size[1])
        bad = [s.describe() for s in self.info.specs if s.is_conv or s.input_kind != "coords" or s.num_outputs != 1]
        if bad:
            raise NnzooError(f"editing renders grey-scale coordinate networks (INRs); '{self.info.name}' holds {bad[0]}")

    def edit(self, batch: WeightBatch) -> list[Tensor]:
        """The edited networks, ``(B_g, P_g)`` per architecture group of ``batch``."""
        deltas = self(batch)
        return [p + d for p, d in zip(batch.params, deltas)]

    def render(self, specs: tuple[NetworkSpec, ...], params: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        """``(B, H * W)`` renderings of every network of a batch, in the order of its targets."""
        h, w = self.image_size
        # the edited INRs are drawn in float32 even under mixed precision: sin(30 x) of a bfloat16 product
        # is off by more than the edits being learnt (upcast: a model may return bfloat16 changes)
        with autocast_off(self.device):
            return torch.cat([render_inrs(upcast(p), s, h, w).flatten(1) for s, p in zip(specs, params)])

    def _step(self, batch: WeightBatch, stage: str) -> Tensor:
        rendered = self.render(batch.specs, self.edit(batch))
        per_network = (rendered - batch.y).pow(2).mean(1)
        loss = per_network.mean()
        n = len(batch)
        self.log(f"{stage}/mse", loss, on_step=stage == "train", on_epoch=True, batch_size=n,
                 prog_bar=True)
        if stage != "train":
            with torch.no_grad():
                identity = (self.render(batch.specs, batch.params) - batch.y).pow(2).mean()
            self.log(f"{stage}/identity_mse", identity, on_epoch=True, batch_size=n)
        return loss

    def predict_scores(self, batch: WeightBatch) -> Tensor:
        """Renderings of the edited networks, ``(B, H * W)``."""
        return self.render(batch.specs, self.edit(batch))
