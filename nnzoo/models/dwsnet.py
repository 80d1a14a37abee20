"""DWSNet: the reference DWSNets classifier on MLP weights (Navon et al., ICML 2023).

``layers`` DWS layers (:mod:`nnzoo.models.layers.dws`: four blocks of
same-layer / successive / non-neighbour sub-blocks with max pooling and
Set-Transformer set layers), BatchNorm + ReLU + dropout between them (none
after the last, which gets ReLU + dropout only), then an invariant head: every
tensor pooled over its hidden-neuron axes (the fixed input/output axes of
``W_0``, ``W_{M-1}`` and ``b_{M-1}`` survive as features), concatenated, and
``head_layers`` linear maps.  It is the authors' ``DWSModelForClassification``
(github AvivNavon/DWSNets) with the MNIST-INR settings as defaults: 5 DWS
layers of width 32, SAB with 8 heads (1 in the last DWS layer, as there), max
pooling, one linear map per sub-block and in the head, BatchNorm, no dropout:
552,650 parameters on the 2-32-32-1 MNIST INRs, the reference's count.  Every
layer commutes with hidden-neuron permutations and the head pools them away,
so the prediction is invariant by construction; only MLPs of one architecture
per dataset (and at least 3 layers) can be read.

Deviations from the reference:

* input standardisation is per (role, layer) tensor (nnzoo's
  :class:`~nnzoo.models.layers.standardize.Standardize`) instead of per entry,
  which would not be equivariant;
* a network's BatchNorm tensors, if any, enter as extra bias channels (the
  reference reads weights and biases only);
* dropout is active in training only (the reference's weight-space dropout is
  also applied in evaluation; irrelevant at its default rate 0);
* ``heads`` must divide ``hidden`` (the reference fails inside the attention
  otherwise);
* see :mod:`nnzoo.models.layers.dws` for the layer (no down-sampling layer or
  skip connections, both off in the reference's MNIST configuration; max-pool
  gradients at exact ties).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.errors import NnzooError, check_choice
from nnzoo.models.layers.dws import (REDUCTIONS, SET_LAYERS, DWSLayer, WeightSpaceTensor, channel_mlp, reduce,
                                     weight_space)
from nnzoo.models.layers.standardize import Standardize
from nnzoo.models.registry import register_model
from nnzoo.nets.functional import unflatten
from nnzoo.nets.spec import NORM_ROLES, NetworkSpec

NEURON_ROLES = ("bias", *NORM_ROLES)
"""Per-neuron tensors of a layer; they share the bias's axis and become its input channels."""


def neuron_roles(spec: NetworkSpec, layer: int) -> list[str]:
    return [s.role for s in spec.slots if s.layer == layer and s.role in NEURON_ROLES]


def weight_space_inputs(params: Tensor, spec: NetworkSpec, space: Sequence[WeightSpaceTensor]) -> list[Tensor]:
    """Flat ``(B, P)`` parameters -> one ``(B, *hidden axes, fold * channels)`` tensor per weight and bias."""
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
        inputs.append(tensor.fold_fixed_axes(x).contiguous())
    return inputs


class WeightSpaceBatchNorm(nn.Module):
    """BatchNorm per tensor and channel, statistics over the batch and all the tensor's axes (as the reference).

    Pooling over whole axes (never per neuron) keeps it equivariant.
    """

    def __init__(self, channels: int, tensors: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in range(tensors))

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        out = []
        for norm, x in zip(self.norms, xs):
            out.append(norm(x.reshape(-1, norm.num_features)).view(x.shape))
        return out


class InvariantHead(nn.Module):
    """Pool every tensor over its hidden axes, concatenate, ``layers`` linear maps (the reference's InvariantLayer).

    Features in the reference's order: the pooled internal weights, ``W_0``
    pooled over ``d_1`` (``d_0 * C``), ``W_{M-1}`` pooled over ``d_{M-1}``
    (``d_M * C``), the pooled biases but the last, and ``b_{M-1}`` whole
    (``d_M * C``).  The linear maps keep PyTorch's default initialisation, as there.
    """

    def __init__(self, space: Sequence[WeightSpaceTensor], channels: int, outputs: int, reduction: str,
                 layers: int = 1) -> None:
        super().__init__()
        weights = [i for i, t in enumerate(space) if t.role == "weight"]
        biases = [i for i, t in enumerate(space) if t.role == "bias"]
        self.order = [*weights[1:-1], weights[0], weights[-1], *biases]
        self.space = tuple(space)
        self.reduction = reduction
        self.mlp = channel_mlp(sum(space[i].fold for i in self.order) * channels, outputs, layers)

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        features = []
        for i in self.order:
            x = xs[i]
            dims = list(range(1, x.dim() - 1))
            features.append(reduce(x, dims, self.reduction) if dims else x)
        return self.mlp(torch.cat(features, dim=-1))


def parameter_positions(spec: NetworkSpec, space: Sequence[WeightSpaceTensor]) -> Tensor:
    """Where each entry of the weight-space tensors (one channel, laid out as :func:`weight_space_inputs`
    lays them out) sits in the flat parameter vector: the inverse map, for equivariant outputs.
    Biases only (a layer's BatchNorm tensors share the bias's axis but get no output channel)."""
    layers = unflatten(torch.arange(spec.num_params).float()[None], spec)
    positions = []
    for tensor in space:
        if tensor.role == "weight":
            x = layers[tensor.layer]["weight"].transpose(1, 2).unsqueeze(-1)
        else:
            bias = layers[tensor.layer].get("bias")
            x = (bias if bias is not None else torch.full((1, spec.widths[tensor.layer + 1]), -1.0)).unsqueeze(-1)
        positions.append(tensor.fold_fixed_axes(x).reshape(-1))
    return torch.cat(positions).long()


@register_model("dwsnet", "DWSNet: equivariant DWS layers (set-transformer sub-blocks) on MLP weights, "
                "invariant max-pool head (Navon et al. 2023)", conv=False, heterogeneous=False,
                tasks=("classification", "regression", "editing"))
class DWSNet(nn.Module):
    """The reference DWSNets classifier; the defaults are its MNIST-INR configuration.

    ``hidden``: channels per weight/bias entry; ``layers``: DWS layers (the
    reference's ``n_hidden + 1``); ``reduction``: pooling everywhere (``max`` |
    ``mean`` | ``sum``); ``set_layer``: ``sab`` (Set Transformer) | ``ds``
    (DeepSets); ``heads``: SAB heads (the last DWS layer uses one);
    ``fc_layers``: linear maps per sub-block MLP (``n_fc_layers``);
    ``head_layers``: linear maps of the head (``n_out_fc``); ``batch_norm``;
    ``dropout``; ``adjacent_only``: only same-layer and successive sub-blocks
    (the reference's ``diagonal``); ``init_scale``: factor on the initial weights of every DWS layer
    (reference: 1 in the classifier, 1e-4 in the editing ``DWSModel``, so an edit starts near zero).

    On an editing dataset the last DWS layer has one output channel per entry and there is no head:
    the model is the reference's ``DWSModel`` (``output_features=1``, as in the Neural Graphs
    style-editing config), and ``forward`` returns that channel as the change of every weight and bias.
    """

    embedding_head = "head.mlp"
    """The submodule whose input is a network's embedding (:func:`nnzoo.inference.embed_networks`): every
    tensor's features pooled over its hidden axes, concatenated (:class:`InvariantHead`)."""
    compiled_cores = ("layers",)
    """What ``compile=true`` compiles (:func:`~nnzoo.models.compiling.compile_model`): the DWS layers."""

    def __init__(self, info: DataInfo, hidden: int = 32, layers: int = 5, reduction: str = "max",
                 set_layer: str = "sab", heads: int = 8, fc_layers: int = 1, head_layers: int = 1,
                 batch_norm: bool = True, dropout: float = 0.0, adjacent_only: bool = False,
                 init_scale: float = 1.0) -> None:
        super().__init__()
        spec = info.specs[0]
        if spec.is_conv:
            raise NnzooError(f"dwsnet reads MLPs only, but dataset '{info.name}' holds {spec.describe()}; "
                             "use gnn, transformer, statnn, nfn_hnp or nfn_np")
        if spec.num_layers < 3:
            raise NnzooError(f"dwsnet (like the reference) needs MLPs with at least 3 layers, "
                             f"got {spec.describe()}")
        check_choice("dwsnet reduction", reduction, REDUCTIONS)
        check_choice("dwsnet set_layer", set_layer, SET_LAYERS)
        if layers < 1 or hidden < 1 or heads < 1 or fc_layers < 1 or head_layers < 1:
            raise NnzooError(f"dwsnet needs layers, hidden, heads, fc_layers and head_layers >= 1, "
                             f"got {layers}, {hidden}, {heads}, {fc_layers}, {head_layers}")
        if set_layer == "sab" and hidden % heads:
            raise NnzooError(f"dwsnet hidden ({hidden}) must be a multiple of heads ({heads})")
        self.widths = spec.widths
        self.space = weight_space(self.widths)
        self.standardize = Standardize(info.stats)
        first_channels = [1 if t.role == "weight" else max(1, len(neuron_roles(spec, t.layer)))
                          for t in self.space]
        options = dict(set_layer=set_layer, reduction=reduction, fc_layers=fc_layers, adjacent_only=adjacent_only,
                       init_scale=init_scale)
        self.editing = info.task == "editing"
        last_channels = 1 if self.editing else hidden
        self.dws = nn.ModuleList(
            DWSLayer(self.space, first_channels if k == 0 else hidden, last_channels if k == layers - 1 else hidden,
                     heads=1 if k == layers - 1 and layers > 1 else heads, **options)
            for k in range(layers))
        self.norms = nn.ModuleList(WeightSpaceBatchNorm(hidden, len(self.space)) if batch_norm else nn.Identity()
                                   for _ in range(layers - 1))
        self.dropout = dropout
        if self.editing:
            self.register_buffer("positions", parameter_positions(spec, self.space), persistent=False)
        else:
            self.head = InvariantHead(self.space, hidden, info.num_outputs, reduction, head_layers)

    def layers(self, xs: list[Tensor]) -> list[Tensor]:
        """The DWS layers on the weight-space tensors (:attr:`compiled_cores`)."""
        xs = self.dws[0](xs)
        for norm, dws in zip(self.norms, self.dws[1:]):
            xs = dws(self._activate(norm(xs)))
        return xs

    def _activate(self, xs: Sequence[Tensor]) -> list[Tensor]:
        xs = [F.relu(x) for x in xs]
        if self.dropout > 0:
            xs = [F.dropout(x, self.dropout, self.training) for x in xs]
        return xs

    def forward(self, batch: WeightBatch) -> Tensor | list[Tensor]:
        spec = batch.spec
        if spec.widths != self.widths:
            raise NnzooError(f"this dwsnet was built for MLPs {'-'.join(map(str, self.widths))}, "
                             f"got {spec.describe()}")
        xs = self.layers(weight_space_inputs(self.standardize(spec, batch.flat), spec, self.space))
        if self.editing:
            values = torch.cat([x.reshape(x.shape[0], -1) for x in xs], dim=1)
            keep = self.positions >= 0  # a layer without bias has no bias to change
            delta = values.new_zeros(values.shape[0], spec.num_params)
            return [delta.index_copy(1, self.positions[keep], values[:, keep])]
        return self.head(self._activate(xs))
