"""StatNN: predict from simple statistics of every weight tensor (Unterthiner et al. 2020).

Per weight and bias tensor: mean, (unbiased) variance and the 0/25/50/75/100%
quantiles, then an MLP ``Linear -> ReLU -> Dropout`` x 2 of width 1000 and a
linear output: NFN's ``StatNet`` (as copied into Neural Graphs), 1,059,001
parameters on the Small CNN Zoo.  Statistics are invariant to any permutation of a tensor's
entries, hence to hidden-neuron permutations, and they are a strong baseline
for predicting a CNN's accuracy (e.g. 0.915 Kendall tau on CIFAR10-GS, NFN).
Tensors are addressed by (role, layer index), so networks of different depth
fit in one feature vector (missing layers are zeros).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.models.layers.encoders import mlp
from nnzoo.models.layers.standardize import Standardize
from nnzoo.models.registry import register_model
from nnzoo.nets.spec import NetworkSpec

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
STATS_PER_TENSOR = 2 + len(QUANTILES)
ROLES = ("weight", "bias")


def tensor_statistics(params: Tensor, spec: NetworkSpec, max_layers: int) -> Tensor:
    """``(B, len(ROLES) * max_layers * 7)`` statistics of every weight/bias tensor of ``B`` networks."""
    q = torch.tensor(QUANTILES, device=params.device, dtype=params.dtype)
    out = params.new_zeros(params.shape[0], len(ROLES), max_layers, STATS_PER_TENSOR)
    for s in spec.slots:
        if s.role not in ROLES or s.layer >= max_layers:
            continue
        block = params[:, s.start:s.end]
        # unbiased, as torch.Tensor.var in the reference featurizer; a one-entry tensor (an INR's output bias) has none
        var = block.var(dim=1) if block.shape[1] > 1 else block.new_zeros(block.shape[0])
        out[:, ROLES.index(s.role), s.layer] = torch.cat(
            [block.mean(dim=1, keepdim=True), var.unsqueeze(1), torch.quantile(block, q, dim=1).t()], dim=1)
    return out.flatten(1)


@register_model("statnn", "MLP on per-tensor weight statistics (mean, var, quantiles); CNN-zoo baseline",
                reads_norm=False, io_ordered=False,  # statistics of weights and biases only, pooled per tensor
                graphs=True)
class StatNN(nn.Module):
    """Statistics of the (standardised, if the dataset says so) tensors -> MLP (reference: two hidden layers of 1000)."""

    embedding_head = "head"
    """The submodule whose input is a network's embedding (:func:`nnzoo.inference.embed_networks`): the
    statistics of its tensors."""

    def __init__(self, info: DataInfo, hidden: int = 1000, layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.standardize = Standardize(info.stats)
        self.max_layers = max(s.num_layers for s in info.specs)
        features = len(ROLES) * self.max_layers * STATS_PER_TENSOR
        self.head = mlp([features] + [hidden] * layers + [info.num_outputs], dropout=dropout)

    def forward(self, batch: WeightBatch) -> Tensor:
        feats = torch.cat([tensor_statistics(self.standardize(s, p), s, self.max_layers)
                           for s, p in zip(batch.specs, batch.params)])
        return self.head(feats)
