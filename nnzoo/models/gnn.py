"""NG-GNN: a PNA graph network on the computation graph of each input network.

Kofinas et al., "Graph Neural Networks for Learning Equivariant
Representations of Neural Networks" (ICLR 2024).  Every operation is a graph
operation on nodes that carry no identity except their layer (and, for
input/output neurons, their position), so the prediction is invariant to
permutations of hidden neurons by construction.

The defaults are the reference INR-classification model (mkofinas/neural-graphs
``nn/gnn.py`` with ``scripts/mnist_cls_pna*.sh``): 4 PNA layers of 32 channels
with FiLM-modulated messages, graph LayerNorm + SiLU + dropout 0.2 between
layers and none after the last, edge updates that replace the edges after every
layer but the last, reversed edges with direction in the edge feature, and a
3-layer head on the concatenated output neurons.  92,010 parameters on MNIST
INRs without probes, 100,714 with 64.  The one deliberate difference: the graph
LayerNorm normalises each network on its own (see :class:`GraphLayerNorm`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.graphs import graph_template
from nnzoo.models.layers.edit_head import GraphDeltaHead
from nnzoo.models.layers.fused import RunLayout, fused_enabled, node_chunks, over_network_chunks, regular_layout
from nnzoo.models.layers.graph_input import GraphInput
from nnzoo.models.layers.norm import GraphLayerNorm
from nnzoo.models.layers.pna import EdgeUpdate, FiLMPNAConv, log_degree, mean_log_degree
from nnzoo.models.layers.readout import OutputNodeReadout
from nnzoo.models.registry import register_model


def forward_log_degree(info: DataInfo) -> float:
    """PNA's degree normaliser from the forward edges of the dataset's architectures (as the reference)."""
    return mean_log_degree([graph_template(spec, info.edge_kernel, info.node_roles).in_degree
                            for spec in info.specs])


@register_model("gnn", "NG-GNN: PNA message passing with FiLM edge modulation and edge updates on the "
                "network's computation graph (Kofinas et al. 2024)",
                tasks=("classification", "regression", "editing"), graphs=True)
class NeuralGraphGNN(nn.Module):
    """Graph network over neurons (nodes) and weights (edges).

    ``residual`` (off in the reference) adds each layer's output to its input,
    for nodes and edges alike.  On an editing dataset the readout is replaced by
    :class:`~nnzoo.models.layers.edit_head.GraphDeltaHead` (one change per weight
    and bias, the reference's ``GNNParams``) and ``forward`` returns the changes.
    """

    embedding_head = "readout.head"
    """The submodule whose input is a network's embedding (:func:`nnzoo.inference.embed_networks`): the final
    states of the output neurons, concatenated (the readout's pooling of :meth:`node_states`)."""
    compiled_cores = ("message_passing",)
    """What ``compile=true`` compiles (:func:`~nnzoo.models.compiling.compile_model`): the layers, once the front
    end has built and encoded the batch graph.  The edge encoder stays the chunked kernel: compiled, it keeps
    the ``(edges, 256)`` Fourier lift for backward (147 MB at batch 64) for no measured gain."""
    compiled = False
    """Set on the instance by :func:`~nnzoo.models.compiling.compile_model`: then the dense statistics replace
    the hand-written CPU kernels."""

    def __init__(self, info: DataInfo, hidden: int = 32, layers: int = 4, dropout: float = 0.2,
                 fourier_features: int = 128, fourier_sigma: float = 3.0, probes: int = 64,
                 reverse_edges: bool = True, aggregators: Sequence[str] = ("mean", "min", "max", "std"),
                 scalers: Sequence[str] = ("identity", "amplification"), edge_updates: bool = True,
                 residual: bool = False, head_hidden: int | None = None, head_layers: int = 2,
                 linear_as_conv: bool = True, activation_embedding: bool | str = "auto") -> None:
        super().__init__()
        self.input = GraphInput(info, hidden, hidden, fourier_features, fourier_sigma, probes, reverse_edges,
                                linear_as_conv, activation_embedding)
        delta = forward_log_degree(info)
        self.convs = nn.ModuleList(FiLMPNAConv(hidden, hidden, delta, aggregators, scalers)
                                   for _ in range(layers))
        # between layers only: the last layer's output goes to the readout untouched
        self.norms = nn.ModuleList(GraphLayerNorm(hidden) for _ in range(layers - 1))
        self.edge_updates = nn.ModuleList(EdgeUpdate(hidden, hidden, residual)
                                          for _ in range(layers - 1 if edge_updates else 0))
        self.residual = residual
        # one (edges x hidden) float32 tensor of a network: what over_network_chunks keeps off fresh pages
        self.edge_bytes = 4 * hidden * max(int(graph_template(spec, info.edge_kernel, info.node_roles,
                                                              reverse_edges).in_degree.sum()) for spec in info.specs)
        self.act = nn.SiLU()
        self.dropout = nn.Dropout(dropout)
        self.editing = info.task == "editing"
        if self.editing:
            self.delta_head = GraphDeltaHead(info, hidden, hidden, reverse_edges)
        else:
            self.readout = OutputNodeReadout(hidden, info.network_outputs, info.num_outputs,
                                             head_hidden or hidden, head_layers)

    def forward(self, batch: WeightBatch) -> Tensor | list[Tensor]:
        if self.editing:
            x, edge_attr, _ = self.encode(batch)
            return self.delta_head(x, edge_attr, batch.specs, [len(p) for p in batch.params])
        return over_network_chunks(self._predict, batch, self.edge_bytes)

    def _predict(self, batch: WeightBatch) -> Tensor:
        x, _, graph = self.encode(batch)
        return self.readout(x, graph.output_index)

    def node_states(self, batch: WeightBatch) -> Tensor:
        """Final ``(num_nodes, hidden)`` neuron states, in :func:`~nnzoo.graphs.batch_to_graph` node order.

        Equivariant to hidden-neuron permutations: permuting a network's neurons permutes its rows.
        """
        return self.encode(batch)[0]

    def encode(self, batch: WeightBatch) -> tuple[Tensor, Tensor, Data]:
        """Final node states, final edge states (batch-graph order) and the batched graph."""
        g = self.input(batch)
        x, edge_attr, in_degree = g.x, g.edge_attr, g.graph.in_degree
        nodes_per_graph = torch.bincount(g.graph.batch, minlength=g.graph.num_graphs)
        cpu = fused_enabled(x) and not self.compiled  # the hand-written CPU kernels (eager path only)
        chunks = node_chunks(in_degree) if cpu else None  # their edge chunks and the run layout, once a batch
        layout = regular_layout(in_degree, g.graph.num_graphs) if cpu or self.compiled else None
        x, edge_attr = self.message_passing(x, edge_attr, g.graph.edge_index, in_degree, log_degree(in_degree),
                                            nodes_per_graph, chunks, layout)
        return x, edge_attr, g.graph

    def message_passing(self, x: Tensor, edge_attr: Tensor, edge_index: Tensor, in_degree: Tensor,
                        log_deg: Tensor, nodes_per_graph: Tensor, chunks: list | None,
                        layout: RunLayout | None) -> tuple[Tensor, Tensor]:
        """The layers on encoded nodes and edges (:attr:`compiled_cores`).  With a ``layout`` (one
        architecture) the norms' statistics are dense."""
        per_graph = layout[1] if layout is not None else None
        for i, conv in enumerate(self.convs):
            update = conv(x, edge_index, edge_attr, in_degree, log_deg, chunks, layout)
            if i < len(self.norms):
                update = self.dropout(self.act(self.norms[i](update, nodes_per_graph, per_graph)))
            x = x + update if self.residual else update
            if i < len(self.edge_updates):
                edge_attr = self.edge_updates[i](x, edge_index, edge_attr, in_degree, chunks)
        return x, edge_attr
