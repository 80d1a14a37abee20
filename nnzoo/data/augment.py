"""Weight-space augmentations (DWSNets / Neural Graphs INR recipe), vectorised per mini-batch.

Geometric ones act on the first layer of a coordinate network and change the
*function* in a known way: for ``f(x) = g(W1 x + b1)``

* translation by ``t``: ``b1 <- b1 + W1 t``  (``f(x + t)``),
* rotation by ``R``:    ``W1 <- W1 R``       (``f(R x)``),
* scaling by ``s``:     ``W1 <- s W1``       (``f(s x)``).

Generic ones act on every tensor: Gaussian noise relative to the tensor's own
std (real noise, not the deterministic ``+0.1 std`` shift of the original
code) and entrywise dropout.  All draw from torch's global RNG, so
``seed_everything`` makes them reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nnzoo.data.weights import WeightBatch
from nnzoo.nets.spec import NetworkSpec


@dataclass
class WeightAugment:
    """Random weight-space augmentation; zero disables a component."""

    translate: float = 0.0  # max |t| per input coordinate
    rotate: float = 0.0  # max angle in degrees (2-D inputs only)
    scale: float = 0.0  # W1 scaled by U(1 - scale, 1 + scale)
    noise: float = 0.0  # Gaussian noise std, relative to each tensor's std
    dropout: float = 0.0  # probability of zeroing each weight

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.translate, self.rotate, self.scale, self.noise, self.dropout))

    def __call__(self, batch: WeightBatch) -> WeightBatch:
        if not self.active:
            return batch
        return batch.replace(params=[self.apply(spec, p) for spec, p in zip(batch.specs, batch.params)])

    def apply(self, spec: NetworkSpec, params: Tensor) -> Tensor:
        """Augmented copy of ``(B, P)`` parameters of architecture ``spec``."""
        params = params.clone()
        b = params.shape[0]
        first = spec.layers[0]
        w_slot, b_slot = spec.slot(0, "weight"), spec.slot(0, "bias")
        if first.kind == "linear" and w_slot is not None:
            w1 = params[:, w_slot.start:w_slot.end].view(b, first.out_features, first.in_features)
            if self.rotate > 0 and first.in_features == 2:
                angle = (torch.rand(b) * 2 - 1) * math.radians(self.rotate)
                cos, sin = torch.cos(angle), torch.sin(angle)
                rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], 1)  # (B, 2, 2)
                w1.copy_(torch.bmm(w1, rot.to(w1)))
            if self.scale > 0:
                w1.mul_((1 + (torch.rand(b, 1, 1) * 2 - 1) * self.scale).to(w1))
            if self.translate > 0 and b_slot is not None:
                shift = ((torch.rand(b, first.in_features, 1) * 2 - 1) * self.translate).to(w1)
                params[:, b_slot.start:b_slot.end] += torch.bmm(w1, shift).squeeze(-1)
        if self.noise > 0 or self.dropout > 0:
            for s in spec.slots:
                if s.role not in ("weight", "bias"):  # leave BatchNorm statistics alone
                    continue
                block = params[:, s.start:s.end]
                if self.noise > 0:
                    std = block.std(dim=1, keepdim=True) if block.shape[1] > 1 else block.abs()
                    block += torch.randn_like(block) * std * self.noise
                if self.dropout > 0:
                    block *= (torch.rand_like(block) >= self.dropout).to(block)
        return params
