"""DWSNet: a stack of equivariant DWS layers on MLP weights, then an invariant head.

Navon et al., "Equivariant Architectures for Learning in Deep Weight Spaces"
(ICML 2023).  The network's weights and biases are processed as tensors whose
hidden-neuron axes are permutable (see :mod:`nnzoo.models.layers.dws`); every
layer commutes with those permutations and the head pools them away, so the
prediction is invariant by construction.  Only MLPs of one architecture per
dataset can be read: the layer's maps are sized by the widths.

Deviations from the paper besides those of the layer: the input is standardised
per (role, layer) rather than per entry (that keeps it equivariant); the
network's BatchNorm tensors, if any, enter as extra bias channels; BatchNorm in
weight space normalises each tensor's channels over the batch and all its
permutable axes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.errors import NnzooError
from nnzoo.models.layers.dws import DWSLayer, WeightSpaceTensor, weight_space
from nnzoo.models.layers.encoders import mlp
from nnzoo.models.layers.standardize import Standardize
from nnzoo.models.registry import register_model
from nnzoo.nets.functional import unflatten
from nnzoo.nets.spec import NORM_ROLES, NetworkSpec

NEURON_ROLES = ("bias", *NORM_ROLES)
"""Per-neuron tensors of a layer; they share the bias's axis and become its input channels."""

REDUCTIONS = ("max", "mean")


def neuron_roles(spec: NetworkSpec, layer: int) -> list[str]:
    return [s.role for s in spec.slots if s.layer == layer and s.role in NEURON_ROLES]


def weight_space_inputs(params: Tensor, spec: NetworkSpec, space: tuple[WeightSpaceTensor, ...]) -> list[Tensor]:
    """Flat ``(B, P)`` parameters -> one ``(B, *permutable axes, channels)`` tensor per weight and bias."""
    layers = unflatten(params, spec)
    inputs = []
    for tensor in space:
        tensors = layers[tensor.layer]
        if tensor.role == "weight":
            x = tensors["weight"].transpose(1, 2).unsqueeze(-1)  # (B, in, out, 1): axes in group order
        else:
            roles = neuron_roles(spec, tensor.layer)
            x = (torch.stack([tensors[r] for r in roles], dim=-1) if roles
                 else params.new_zeros(params.shape[0], spec.widths[tensor.layer + 1], 1))
        inputs.append(tensor.fold_fixed_axes(x))
    return inputs


class WeightSpaceBatchNorm(nn.Module):
    """BatchNorm per tensor and channel, with statistics over the batch and the permutable axes.

    Pooling over whole permutable axes (never per neuron) keeps it equivariant.
    """

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm1d(size) for size in sizes)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [norm(x.reshape(-1, x.shape[-1])).reshape(x.shape) for norm, x in zip(self.norms, xs)]


def invariant_features(xs: list[Tensor], reduction: str) -> Tensor:
    """Pool every permutable axis away and concatenate: ``(B, sum of channels)``.

    Fixed input/output axes are already channels, so they survive as features
    (first-layer weights keep the input neurons, the last bias stays whole).
    """
    pooled = []
    for x in xs:
        dims = list(range(1, x.dim() - 1))
        if not dims:
            pooled.append(x)
        else:
            pooled.append(x.amax(dim=dims) if reduction == "max" else x.mean(dim=dims))
    return torch.cat(pooled, dim=-1)


@register_model("dwsnet", "DWSNet: equivariant linear layers on MLP weight spaces, invariant pooling head "
                "(Navon et al. 2023)", conv=False, heterogeneous=False)
class DWSNet(nn.Module):
    """``layers`` DWS layers (each with BatchNorm, ReLU, dropout), invariant pooling, MLP head.

    The first DWS layer lifts the scalar weights (and the per-neuron tensors
    stacked as bias channels) to ``hidden`` channels.  Reference size (MNIST
    INRs): ``hidden=32``, 5 layers, max reduction, BatchNorm.
    """

    def __init__(self, info: DataInfo, hidden: int = 32, layers: int = 5, reduction: str = "max",
                 batch_norm: bool = True, dropout: float = 0.0, head_hidden: int | None = None,
                 head_layers: int = 1) -> None:
        super().__init__()
        spec = info.specs[0]
        if spec.is_conv:
            raise NnzooError(f"dwsnet reads MLPs only, but dataset '{info.name}' holds {spec.describe()}; "
                             "use gnn, transformer or statnn")
        if reduction not in REDUCTIONS:
            raise NnzooError(f"dwsnet reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")
        if layers < 1 or hidden < 1 or head_layers < 0:
            raise NnzooError(f"dwsnet needs layers >= 1, hidden >= 1 and head_layers >= 0, "
                             f"got {layers}, {hidden}, {head_layers}")
        self.widths = spec.widths
        self.space = weight_space(self.widths)
        self.standardize = Standardize(info.stats)
        first_channels = [1 if t.role == "weight" else max(1, len(neuron_roles(spec, t.layer)))
                          for t in self.space]
        self.dws = nn.ModuleList(DWSLayer(self.space, first_channels if i == 0 else hidden, hidden)
                                 for i in range(layers))
        sizes = [t.fold * hidden for t in self.space]
        self.norms = nn.ModuleList(WeightSpaceBatchNorm(sizes) if batch_norm else nn.Identity()
                                   for _ in range(layers))
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.reduction = reduction
        head_hidden = head_hidden or hidden
        self.head = mlp([sum(sizes), *[head_hidden] * head_layers, info.num_outputs], dropout=dropout)

    def forward(self, batch: WeightBatch) -> Tensor:
        spec = batch.spec
        if spec.widths != self.widths:
            raise NnzooError(f"this dwsnet was built for MLPs {'-'.join(map(str, self.widths))}, "
                             f"got {spec.describe()}")
        xs = weight_space_inputs(self.standardize(spec, batch.flat), spec, self.space)
        for dws, norm in zip(self.dws, self.norms):
            xs = [self.dropout(self.act(x)) for x in norm(dws(xs))]
        return self.head(invariant_features(xs, self.reduction))
