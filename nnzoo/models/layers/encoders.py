"""Lifting scalar weights and biases into feature vectors."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nnzoo.models.layers.fused import fourier_linear, fused_enabled
from nnzoo.models.layers.precision import autocast_off


class FourierFeatures(nn.Module):
    """Random Gaussian Fourier features ``[cos(2 pi B x), sin(2 pi B x)]`` (Tancik et al. 2020).

    Raw weights are tiny scalars whose exact values matter; a fixed random
    sinusoidal lift lets a linear layer separate nearby values.  ``B ~ N(0, sigma^2)``
    is a buffer, so it is saved with the model (the ``rff`` GaussianEncoding of
    the reference).
    """

    def __init__(self, in_dim: int, num_frequencies: int = 128, sigma: float = 3.0) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.randn(num_frequencies, in_dim) * sigma)
        self.out_dim = 2 * num_frequencies

    def forward(self, x: Tensor) -> Tensor:
        with autocast_off(x.device):  # in float32 even under autocast: a bfloat16 x 2 pi B x is off by ~0.1 rad
            proj = 2 * math.pi * x @ self.frequencies.t().to(x.dtype)
        return torch.cat([proj.cos(), proj.sin()], dim=-1)


class FeatureEncoder(nn.Module):
    """Raw feature -> ``out_dim``: optional Fourier lift, then ``Linear`` (+ ``(layers - 1)`` x SiLU, Linear).

    ``layers=1`` is the Neural Graphs default (``input_layers: 1``); the second
    linear map of the reference (``proj_{node,edge}_in``) belongs to the caller,
    because probe features are added between the two.
    """

    def __init__(self, in_dim: int, out_dim: int, fourier_features: int = 0, sigma: float = 3.0,
                 layers: int = 1) -> None:
        super().__init__()
        self.fourier = FourierFeatures(in_dim, fourier_features, sigma) if fourier_features > 0 else None
        lifted = self.fourier.out_dim if self.fourier is not None else in_dim
        modules: list[nn.Module] = [nn.Linear(lifted, out_dim)]
        for _ in range(layers - 1):
            modules += [nn.SiLU(), nn.Linear(out_dim, out_dim)]
        self.mlp = nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        if self.fourier is not None and not x.requires_grad and fused_enabled(x):
            first = self.mlp[0]  # the lift exists a chunk of rows at a time (fused.FourierLinear)
            out = fourier_linear(x, self.fourier.frequencies, first.weight, first.bias)
            return self.mlp[1:](out)
        return self.mlp(self.fourier(x) if self.fourier is not None else x)


class NodePositionEmbedding(nn.Module):
    """Learned embedding per input neuron, per hidden layer and per output neuron.

    Input and output neurons are not interchangeable (pixel x vs. y, class 3
    vs. 7) so each gets its own vector; neurons of one hidden layer share one,
    which keeps hidden-neuron permutation symmetry.  Slots come from
    :class:`~nnzoo.graphs.GraphTemplate` (``node_pos``; negative = outputs).
    """

    def __init__(self, num_slots: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(num_slots, dim)  # N(0, 1) init, as the reference's torch.randn table

    def forward(self, node_pos: Tensor) -> Tensor:
        return self.table(torch.where(node_pos < 0, node_pos + self.table.num_embeddings, node_pos))


def mlp(dims: list[int], act: type[nn.Module] = nn.ReLU, dropout: float = 0.0) -> nn.Sequential:
    """``Linear -> act (-> dropout)`` stack with a plain last ``Linear``."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(act())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
