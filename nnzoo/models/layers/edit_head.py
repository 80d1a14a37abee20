"""Equivariant outputs: one change per weight and per bias of the input network (network editing).

The graph has one edge per weight and one node per neuron, so a graph model's final edge states can
each predict the change of their own weight, and node states the change of their own bias: the
predicted change is permuted exactly as the input network's neurons are.  This is the editing head of
Neural Graphs (``GNNParams`` / ``RelationalTransformerParams``): a 2-layer MLP per edge and per node,
times a learned scale per layer (initialised at 0.01, so training starts close to the identity edit).
The change is added to the input network by the task (:class:`~nnzoo.tasks.EditingTask`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnzoo.data.weights import DataInfo
from nnzoo.graphs import EDGE_KIND_WEIGHT
from nnzoo.graphs.template import template_on
from nnzoo.nets.spec import NetworkSpec


class LayerScale(nn.Module):
    """A learned scalar per layer for weight changes and one for bias changes (NFN's ``LearnedScale``)."""

    def __init__(self, num_layers: int, init: float = 0.01) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((num_layers,), float(init)))
        self.bias = nn.Parameter(torch.full((num_layers,), float(init)))

    def per_parameter(self, spec: NetworkSpec) -> Tensor:
        """``(P,)`` scale of every parameter of ``spec`` (weights by ``weight[layer]``, the rest by ``bias[layer]``)."""
        parts = [(self.weight if s.role == "weight" else self.bias)[s.layer].expand(s.numel) for s in spec.slots]
        return torch.cat(parts)


class GraphDeltaHead(nn.Module):
    """Final node and edge states -> ``(B_g, P_g)`` parameter changes per architecture group.

    Every weight is read from its forward edge (reversed copies and residual edges carry no weight of
    their own), every bias (and BatchNorm tensor) from its neuron; positions come from the graph
    template, so there is no loop over networks.
    """

    def __init__(self, info: DataInfo, node_dim: int, edge_dim: int, reverse_edges: bool,
                 scale_init: float = 0.01) -> None:
        super().__init__()
        self.edge_kernel, self.node_roles, self.reverse_edges = info.edge_kernel, info.node_roles, reverse_edges
        self.edge_mlp = nn.Sequential(nn.Linear(edge_dim, edge_dim), nn.ReLU(),
                                      nn.Linear(edge_dim, info.edge_dim))
        self.node_mlp = nn.Sequential(nn.Linear(node_dim, node_dim), nn.ReLU(),
                                      nn.Linear(node_dim, len(info.node_roles)))
        self.scale = LayerScale(max(s.num_layers for s in info.specs), scale_init)
        self._plans: dict[tuple[NetworkSpec, str], tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = {}

    def _plan(self, spec: NetworkSpec, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Which template edges/nodes carry parameters, which of their output channels, and where they go."""
        key = (spec, str(device))
        if key not in self._plans:
            t = template_on(spec, self.edge_kernel, self.node_roles, self.reverse_edges, torch.device("cpu"))
            edges = torch.nonzero((t.edge_dir == 0) & (t.edge_kind == EDGE_KIND_WEIGHT)).flatten()
            edge_index = t.edge_feature_index[edges]  # (E_w, kernel): parameter positions, P = padding
            edge_valid = edge_index < spec.num_params
            node_valid = t.node_feature_index < spec.num_params  # (N, roles)
            positions = torch.cat([edge_index[edge_valid], t.node_feature_index[node_valid]])
            self._plans[key] = tuple(x.to(device) for x in (edges, edge_valid, node_valid, positions,
                                                             torch.tensor([t.num_nodes, t.num_edges])))
        return self._plans[key]

    def forward(self, x: Tensor, edge_states: Tensor, specs: Sequence[NetworkSpec],
                counts: Sequence[int]) -> list[Tensor]:
        """``x`` ``(N, node_dim)`` and ``edge_states`` ``(E, edge_dim)`` in batch-graph order, for groups
        of ``counts[g]`` networks of ``specs[g]``; returns one ``(counts[g], P_g)`` change per group."""
        out, node_start, edge_start = [], 0, 0
        for spec, b in zip(specs, counts):
            edges, edge_valid, node_valid, positions, sizes = self._plan(spec, x.device)
            n, e = int(sizes[0]), int(sizes[1])
            nodes = x[node_start:node_start + b * n].view(b, n, -1)
            graph_edges = edge_states[edge_start:edge_start + b * e].view(b, e, -1)
            edge_out = self.edge_mlp(graph_edges.index_select(1, edges))  # (b, E_w, kernel)
            node_out = self.node_mlp(nodes)  # (b, n, roles)
            values = torch.cat([edge_out[:, edge_valid], node_out[:, node_valid]], dim=1)
            delta = values.new_zeros(b, spec.num_params).index_copy(1, positions, values)
            out.append(delta * self.scale.per_parameter(spec))
            node_start, edge_start = node_start + b * n, edge_start + b * e
        return out
