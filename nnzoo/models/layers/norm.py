"""Normalisation over each network's whole graph."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnzoo.models.layers.precision import upcast


class GraphLayerNorm(nn.Module):
    """LayerNorm over all nodes *and* channels of each graph, then a per-channel affine map.

    The Neural Graphs GNN uses PyG's ``LayerNorm(mode="graph")`` without a batch
    vector: ``(x - mean) / (std + eps)`` over the whole mini-batch, so a network's
    prediction depends on the other networks in its batch.  Here that formula is
    applied to every network on its own (exactly the reference's output for a
    batch of one); its statistics are means over the network's nodes, so the map
    stays equivariant to permutations of its neurons.  ``num_nodes`` are the node
    counts of the consecutive graphs of the batch; ``nodes_per_graph``, when every graph has that many
    (a batch of one architecture), computes the same statistics densely, as the compiled path does.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, num_nodes: Tensor, nodes_per_graph: int | None = None) -> Tensor:
        x = upcast(x)  # statistics in float32 under autocast
        if nodes_per_graph is not None:
            grid = x.view(-1, nodes_per_graph, x.shape[-1])
            centred = grid - grid.mean((1, 2), keepdim=True)
            std = centred.pow(2).mean((1, 2), keepdim=True).sqrt()
            return (centred / (std + self.eps) * self.weight + self.bias).view_as(x)
        count = (num_nodes.clamp_min(1) * x.shape[-1]).to(x.dtype).unsqueeze(-1)
        mean = torch.segment_reduce(x.sum(-1), "sum", lengths=num_nodes, unsafe=True).unsqueeze(-1) / count
        centred = x - mean.repeat_interleave(num_nodes, dim=0, output_size=x.shape[0])
        var = torch.segment_reduce(centred.pow(2).sum(-1), "sum", lengths=num_nodes,
                                   unsafe=True).unsqueeze(-1) / count
        scale = (var.sqrt() + self.eps).reciprocal().repeat_interleave(num_nodes, dim=0, output_size=x.shape[0])
        return centred * scale * self.weight + self.bias
