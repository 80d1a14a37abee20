"""Weight-space augmentations of the reference recipes (DWSNets / Neural Graphs), vectorised per mini-batch.

INR recipe (``INRDataset._augment`` of DWSNets and Neural Graphs), in the
reference's order, on raw weights (``W`` in PyTorch ``(out, in)`` layout):

1. translation: ``t ~ U(-translate, translate)^{n_in}`` and a layer ``k ~ U{1..L-1}``;
   ``W_{k-1} ... W_1 W_0 t`` is added to the bias of layer ``k - 1``.  For ``k = 1``
   that is an exact input translation ``f(x + t)``; for deeper ``k`` the
   reference ignores the non-linearities (``exact_translation`` keeps ``k = 1``);
2. rotation of the first layer: ``W_0 <- W_0 R^T`` with an angle ``U(-rotate, rotate)``
   degrees (2-D inputs), i.e. ``f(R^T x + ...)``;
3. ``shift``: the reference's "noise", a *deterministic* ``+ shift * std(tensor)``
   added to every weight tensor and to every bias with more than one entry;
4. ``noise``: Gaussian noise ``noise * std(tensor)`` on the same tensors (the CNN-zoo
   recipe uses it; real noise, unlike ``shift``);
5. ``dropout``: each weight and bias entry is zeroed with probability ``p`` and the
   survivors are scaled by ``1 / (1 - p)`` (``F.dropout``);
6. scaling of the first layer: ``W_0 <- s W_0``, ``s ~ U(1 - scale, 1 + scale)``.

BatchNorm tensors are left alone.  Everything draws from torch's global RNG, so
``seed_everything`` makes it reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nnzoo.data.weights import WeightBatch
from nnzoo.nets.functional import unflatten
from nnzoo.nets.spec import NetworkSpec


@dataclass
class WeightAugment:
    """Random weight-space augmentation; zero disables a component."""

    translate: float = 0.0  # max |t| per input coordinate
    rotate: float = 0.0  # max angle in degrees (2-D inputs only)
    scale: float = 0.0  # W0 scaled by U(1 - scale, 1 + scale)
    shift: float = 0.0  # deterministic + shift * std per tensor (the reference INR "noise")
    noise: float = 0.0  # Gaussian noise std, relative to each tensor's std
    dropout: float = 0.0  # probability of zeroing each weight/bias (survivors scaled by 1 / (1 - p))
    exact_translation: bool = False  # translate through the first layer only (k = 1 always)

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.translate, self.rotate, self.scale, self.shift, self.noise, self.dropout))

    def __call__(self, batch: WeightBatch) -> WeightBatch:
        if not self.active:
            return batch
        return batch.replace(params=[self.apply(spec, p) for spec, p in zip(batch.specs, batch.params)])

    def apply(self, spec: NetworkSpec, params: Tensor) -> Tensor:
        """Augmented copy of ``(B, P)`` parameters of architecture ``spec``."""
        params = params.clone()
        b = params.shape[0]
        layers = unflatten(params, spec)  # views into params: in-place edits below change it
        coordinate_mlp = all(layer.kind == "linear" for layer in spec.layers)
        if coordinate_mlp and self.translate > 0 and "bias" in layers[0]:
            self._translate(spec, layers)
        w0 = layers[0]["weight"]
        if coordinate_mlp and self.rotate > 0 and spec.num_inputs == 2:
            angle = (torch.rand(b) * 2 - 1) * math.radians(self.rotate)
            cos, sin = torch.cos(angle), torch.sin(angle)
            rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], 1).to(w0)  # (B, 2, 2)
            w0.copy_(torch.bmm(w0, rot.transpose(1, 2)))
        for s in spec.slots:
            if s.role not in ("weight", "bias"):  # leave BatchNorm tensors alone
                continue
            block = params[:, s.start:s.end]
            if (self.shift > 0 or self.noise > 0) and (s.role == "weight" or s.numel > 1):
                std = block.std(dim=1, keepdim=True)
                if self.shift > 0:
                    block += std * self.shift
                if self.noise > 0:
                    block += torch.randn_like(block) * std * self.noise
            if self.dropout > 0:
                block *= (torch.rand_like(block) >= self.dropout).to(block) / (1 - self.dropout)
        if coordinate_mlp and self.scale > 0:
            w0.mul_((1 + (torch.rand(b, 1, 1) * 2 - 1) * self.scale).to(w0))
        return params

    def _translate(self, spec: NetworkSpec, layers: list[dict[str, Tensor]]) -> None:
        """Add ``W_{k-1} ... W_0 t`` to the bias of layer ``k - 1``, ``k`` drawn per network (reference)."""
        b = layers[0]["weight"].shape[0]
        t = ((torch.rand(b, spec.num_inputs) * 2 - 1) * self.translate).to(layers[0]["weight"])
        deepest = 1 if self.exact_translation else max(spec.num_layers - 1, 1)
        order = torch.randint(1, deepest + 1, (b,))
        shift = t
        updates = []
        for k in range(1, deepest + 1):  # computed from the un-augmented weights, like the reference
            shift = torch.bmm(layers[k - 1]["weight"], shift.unsqueeze(-1)).squeeze(-1)
            updates.append(shift)
        for k, update in enumerate(updates, start=1):
            chosen = (order == k).to(update).unsqueeze(-1)
            if "bias" in layers[k - 1]:
                layers[k - 1]["bias"].add_(update * chosen)
