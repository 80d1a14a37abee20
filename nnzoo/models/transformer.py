"""NG-T: a relational transformer on the network's computation graph (Kofinas et al. 2024).

Every neuron attends to every neuron of its own network; the weight between
two neurons (or a learned "no edge" vector) enters the attention and is itself
updated after each layer.  The front end (standardisation, encoders,
positional embeddings, probe features) and the readout are those of the GNN.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import to_dense_batch

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.models.layers.graph_input import GraphInput
from nnzoo.models.layers.readout import OutputNodeReadout
from nnzoo.models.layers.relational_attention import RelationalAttention, RelationalEdgeUpdate, dense_edges
from nnzoo.models.registry import register_model


class RelationalTransformerBlock(nn.Module):
    """Pre-norm block: relational attention + feed-forward on nodes, then an edge update."""

    def __init__(self, d_node: int, d_edge: int, heads: int, d_attn: int | None, ffn_mult: int, dropout: float,
                 update_edges: bool) -> None:
        super().__init__()
        self.attn_norm, self.edge_norm = nn.LayerNorm(d_node), nn.LayerNorm(d_edge)
        # dropout acts on nodes only: masks over the (B, n, n, .) pair tensors cost more than the
        # attention itself on a CPU and did not help
        self.attention = RelationalAttention(d_node, d_edge, heads, d_attn)
        self.ffn_norm = nn.LayerNorm(d_node)
        self.ffn = nn.Sequential(nn.Linear(d_node, ffn_mult * d_node), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_mult * d_node, d_node))
        self.edge_update = RelationalEdgeUpdate(d_node, d_edge) if update_edges else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, edges: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        normed_edges = self.edge_norm(edges)
        x = x + self.dropout(self.attention(self.attn_norm(x), normed_edges, mask))
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        if self.edge_update is not None:
            edges = edges + self.edge_update(x, normed_edges)
        return x, edges


@register_model("transformer", "NG-T: relational transformer whose attention reads and updates the weights "
                "(edges) of the network's computation graph (Kofinas et al. 2024)")
class NeuralGraphTransformer(nn.Module):
    """Relational transformer over neurons.

    Defaults (``d_node=64, d_edge=32, heads=8, layers=4``) give ~382k parameters
    on MNIST INRs with 64 probes (the reference reports ~377k).
    """

    def __init__(self, info: DataInfo, d_node: int = 64, d_edge: int = 32, heads: int = 8, layers: int = 4,
                 d_attn: int | None = None, ffn_mult: int = 2, dropout: float = 0.2, fourier_features: int = 128,
                 fourier_sigma: float = 3.0, probes: int = 0, reverse_edges: bool = False,
                 edge_updates: bool = True, head_hidden: int | None = None) -> None:
        super().__init__()
        self.input = GraphInput(info, d_node, d_edge, fourier_features, fourier_sigma, probes, reverse_edges)
        self.no_edge = nn.Parameter(torch.zeros(d_edge))
        self.blocks = nn.ModuleList(
            RelationalTransformerBlock(d_node, d_edge, heads, d_attn, ffn_mult, dropout,
                                       update_edges=edge_updates and i < layers - 1)  # last edges go unused
            for i in range(layers))
        self.final_norm = nn.LayerNorm(d_node)
        self.readout = OutputNodeReadout(d_node, info.network_outputs, info.num_outputs, head_hidden or d_node)

    def forward(self, batch: WeightBatch) -> Tensor:
        x, graph = self.encode(batch)
        return self.readout(x, graph.output_index)

    def node_states(self, batch: WeightBatch) -> Tensor:
        """Final ``(num_nodes, d_node)`` neuron states, in :func:`~nnzoo.graphs.batch_to_graph` node order."""
        return self.encode(batch)[0]

    def encode(self, batch: WeightBatch) -> tuple[Tensor, Data]:
        g = self.input(batch)
        graph = g.graph
        x, mask = to_dense_batch(g.x, graph.batch, batch_size=graph.num_graphs)  # (B, n, d): nodes in order
        edges = dense_edges(g.edge_attr, graph.edge_index, graph.batch, graph.num_graphs, x.shape[1],
                            self.no_edge)
        for block in self.blocks:
            x, edges = block(x, edges, mask)
        return self.final_norm(x[mask]), graph
