"""NG-GNN: a PNA graph network on the computation graph of each input network.

Kofinas et al., "Graph Neural Networks for Learning Equivariant
Representations of Neural Networks" (ICLR 2024).  Every operation is a graph
operation on nodes that carry no identity except their layer (and, for
input/output neurons, their position), so the prediction is invariant to
permutations of hidden neurons by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.graphs import graph_template
from nnzoo.models.layers.graph_input import GraphInput
from nnzoo.models.layers.pna import EdgeUpdate, FiLMPNAConv, log_degree
from nnzoo.models.layers.readout import OutputNodeReadout
from nnzoo.models.registry import register_model


def average_log_degree(info: DataInfo, reverse_edges: bool) -> float:
    """Mean ``log(in_degree + 1)`` over the nodes of the dataset's architectures (PNA's delta)."""
    values = [log_degree(graph_template(spec, info.edge_kernel, info.node_roles, reverse_edges).in_degree).mean()
              for spec in info.specs]
    return float(torch.stack(values).mean())


@register_model("gnn", "NG-GNN: PNA message passing with FiLM edge modulation and edge updates on the "
                "network's computation graph (Kofinas et al. 2024)")
class NeuralGraphGNN(nn.Module):
    """Graph network over neurons (nodes) and weights (edges).

    Reference size (MNIST INRs): ``hidden=32``, 4 layers, ~92k parameters.
    """

    def __init__(self, info: DataInfo, hidden: int = 32, edge_hidden: int | None = None, layers: int = 4,
                 dropout: float = 0.2, fourier_features: int = 128, fourier_sigma: float = 3.0, probes: int = 0,
                 reverse_edges: bool = True, aggregators: Sequence[str] = ("mean", "min", "max", "std"),
                 scalers: Sequence[str] = ("identity", "amplification"), edge_updates: bool = True,
                 residual: bool = False, head_hidden: int | None = None) -> None:
        super().__init__()
        edge_hidden = edge_hidden or hidden
        self.input = GraphInput(info, hidden, edge_hidden, fourier_features, fourier_sigma, probes, reverse_edges)
        delta = average_log_degree(info, reverse_edges)
        self.convs = nn.ModuleList(FiLMPNAConv(hidden, edge_hidden, delta, aggregators, scalers)
                                   for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        # edges are updated between message-passing layers, not after the last one
        self.edge_updates = nn.ModuleList(EdgeUpdate(hidden, edge_hidden)
                                          for _ in range(layers - 1 if edge_updates else 0))
        self.residual = residual
        self.act = nn.SiLU()
        self.dropout = nn.Dropout(dropout)
        self.readout = OutputNodeReadout(hidden, info.network_outputs, info.num_outputs, head_hidden or hidden)

    def forward(self, batch: WeightBatch) -> Tensor:
        x, graph = self.encode(batch)
        return self.readout(x, graph.output_index)

    def node_states(self, batch: WeightBatch) -> Tensor:
        """Final ``(num_nodes, hidden)`` neuron states, in :func:`~nnzoo.graphs.batch_to_graph` node order.

        Equivariant to hidden-neuron permutations: permuting a network's neurons permutes its rows.
        """
        return self.encode(batch)[0]

    def encode(self, batch: WeightBatch) -> tuple[Tensor, Data]:
        g = self.input(batch)
        x, edge_attr, edge_index, in_degree = g.x, g.edge_attr, g.graph.edge_index, g.graph.in_degree
        log_deg = log_degree(in_degree)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            update = self.dropout(self.act(norm(conv(x, edge_index, edge_attr, in_degree, log_deg))))
            x = x + update if self.residual else update
            if i < len(self.edge_updates):
                edge_attr = self.edge_updates[i](x, edge_index, edge_attr)
        return x, g.graph
