"""Probe features: a network's own activations at learned input points, as node features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnzoo.errors import NnzooError
from nnzoo.models.layers.precision import autocast_off
from nnzoo.nets.functional import mlp_forward
from nnzoo.nets.spec import NetworkSpec


class ProbeFeatures(nn.Module):
    """Run every network on ``K`` learned probe inputs; neuron ``v`` gets its ``K`` activations.

    This is the "probe features" idea of Kofinas et al. (2024): weights say how
    a network computes, activations say what it computes.  Activations are
    taken from the *raw* (possibly augmented) weights, so they describe the
    actual function.  Each neuron group (inputs, each layer's outputs) has its
    own ``Linear(K -> dim) + LayerNorm`` projection.  Permuting hidden neurons
    permutes their activations along with them, so equivariance is kept.
    """

    def __init__(self, num_probes: int, in_dim: int, dim: int, num_groups: int) -> None:
        super().__init__()
        self.points = nn.Parameter(torch.rand(num_probes, in_dim) * 2 - 1)  # U[-1, 1], like the inputs
        self.project = nn.ModuleList(nn.Sequential(nn.Linear(num_probes, dim), nn.LayerNorm(dim))
                                     for _ in range(num_groups))

    def activations(self, spec: NetworkSpec, params: Tensor) -> Tensor:
        """``(B * N, K)`` activations of every neuron of ``B`` networks, in graph node order."""
        if spec.is_conv:
            raise NnzooError("probe features are defined for coordinate networks (INRs) only; "
                             "set model.probes=0 for CNN datasets")
        with autocast_off(params.device):  # a SIREN's sin(30 x) needs float32 inputs to mean anything
            _, hidden = mlp_forward(params, spec, self.points, return_hidden=True)
        b = params.shape[0]
        groups = [self.points.t().unsqueeze(0).expand(b, -1, -1)] + [h.transpose(1, 2) for h in hidden]
        return torch.cat(groups, dim=1).reshape(-1, self.points.shape[0])

    def forward(self, specs: Sequence[NetworkSpec], raw_params: Sequence[Tensor], node_group: Tensor) -> Tensor:
        acts = torch.cat([self.activations(s, p) for s, p in zip(specs, raw_params)])
        out = acts.new_zeros(acts.shape[0], self.project[0][0].out_features)
        for g, proj in enumerate(self.project):
            mask = node_group == g
            if mask.any():  # under autocast the projection is bfloat16/float16: store it in out's dtype
                out[mask] = proj(acts[mask]).to(out.dtype)
        return out
