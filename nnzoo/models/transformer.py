"""NG-T: a relational transformer on the network's computation graph (Kofinas et al. 2024).

Every neuron attends to every neuron of its own network; the weight between
two neurons (or the encoding of "no weight") enters the attention and is itself
updated after each layer but the last.  The front end (standardisation,
encoders, positional embeddings, probe features) is the GNN's, with the
reference's NG-T settings: Fourier sigma 1 and no reversed edge features.

Defaults are the reference INR-classification model (mkofinas/neural-graphs
``nn/relational_transformer.py`` with ``scripts/mnist_cls_rt*.sh``): d_node 64,
d_edge 32, d_attn 128, node/edge MLP widths 128/64, 8 heads, 4 layers,
dropout 0.2, value modulation, a 2-layer head of width 128: 376,586 parameters
on MNIST INRs without probes, 393,866 with 64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import to_dense_batch

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.errors import IncompatibleError
from nnzoo.models.layers.edit_head import GraphDeltaHead
from nnzoo.models.layers.fused import over_network_chunks
from nnzoo.models.layers.graph_input import GraphInput
from nnzoo.models.layers.readout import OutputNodeReadout
from nnzoo.models.layers.relational_attention import RelationalTransformerLayer
from nnzoo.models.registry import register_model


def local_edge_index(edge_index: Tensor, batch: Tensor, num_graphs: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(graph, local source, local target)`` of every edge of a batched graph: its place in a dense
    ``(B, n, n)`` edge tensor."""
    counts = torch.bincount(batch, minlength=num_graphs)
    first = torch.cumsum(counts, 0) - counts  # first node id of each graph
    src, dst = edge_index
    graph = batch.index_select(0, src)
    return graph, src - first.index_select(0, graph), dst - first.index_select(0, graph)


def dense_edges(edge_attr: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int, max_nodes: int,
                no_edge: Tensor) -> Tensor:
    """Scatter sparse edge features into ``(B, n, n, d)`` indexed [source, target], ``no_edge`` elsewhere."""
    dense = no_edge.to(edge_attr.dtype).expand(num_graphs, max_nodes, max_nodes, -1).clone()
    return dense.index_put(local_edge_index(edge_index, batch, num_graphs), edge_attr)


PAIR_MEMORY_BUDGET = 2 * 2 ** 30
"""Bytes of ``n x n`` pair tensors (float32) one network may keep for backward in a training step: 2 GiB, so
that a batch of 8 networks stays within 16 GiB.  NG-T is dense in neurons; beyond :func:`max_nodes` it is
refused (``gnn`` grows with edges, not with pairs of neurons)."""


def pair_floats(d_edge: int, d_attn: int, d_edge_hidden: int, heads: int, layers: int, edge_updates: bool,
                editing: bool = False) -> int:
    """Floats kept for backward per ordered pair of neurons of one network in a training step.

    Counted off :class:`~nnzoo.models.layers.relational_attention.RelationalTransformerLayer` (and checked
    against the saved tensors of a real step, ``tests/test_arch_zoo.py``): per layer, the attention's
    query/key/value-modulation edge projections and their products (``4 d_attn``), the layer's input edges
    and logits (``d_edge + 3 heads``); per edge update, its MLPs and norms (``4 d_edge_hidden + 5 d_edge + 4``);
    and the dense input edges (``d_edge``)."""
    updating = (layers if editing else layers - 1) if edge_updates else 0
    return layers * (4 * d_attn + d_edge + 3 * heads) + updating * (4 * d_edge_hidden + 5 * d_edge + 4) + d_edge


def max_nodes(budget: int = PAIR_MEMORY_BUDGET, **dims) -> int:
    """Most neurons per network whose pair tensors (:func:`pair_floats`) fit ``budget`` bytes."""
    return math.isqrt(budget // (4 * pair_floats(**dims)))


@register_model("transformer", "NG-T: relational transformer whose attention reads and updates the weights "
                "(edges) of the network's computation graph (Kofinas et al. 2024)",
                tasks=("classification", "regression", "editing"), graphs=True)
class NeuralGraphTransformer(nn.Module):
    """Relational transformer over neurons.

    On an editing dataset every layer updates the edges (the last one's are read out), and
    :class:`~nnzoo.models.layers.edit_head.GraphDeltaHead` replaces the readout (the reference's
    ``RelationalTransformerParams``); ``forward`` then returns one change per weight and bias.
    """

    embedding_head = "readout.head"
    """The submodule whose input is a network's embedding (:func:`nnzoo.inference.embed_networks`): the final
    states of the output neurons, concatenated (the readout's pooling of :meth:`node_states`)."""
    compiled_cores = ("attend",)
    """What ``compile=true`` compiles (:func:`~nnzoo.models.compiling.compile_model`): the layers on the dense
    neuron and pair tensors, once the front end has built them."""

    def __init__(self, info: DataInfo, d_node: int = 64, d_edge: int = 32, d_attn: int = 128,
                 d_node_hidden: int = 128, d_edge_hidden: int = 64, heads: int = 8, layers: int = 4,
                 dropout: float = 0.2, fourier_features: int = 128, fourier_sigma: float = 1.0, probes: int = 64,
                 reverse_edges: bool = False, edge_updates: bool = True, modulate_v: bool = True,
                 head_hidden: int = 128, head_layers: int = 1, linear_as_conv: bool = True,
                 activation_embedding: bool | str = "auto") -> None:
        super().__init__()
        self.input = GraphInput(info, d_node, d_edge, fourier_features, fourier_sigma, probes, reverse_edges,
                                linear_as_conv, activation_embedding)
        self.editing = info.task == "editing"
        dims = dict(d_edge=d_edge, d_attn=d_attn, d_edge_hidden=d_edge_hidden, heads=heads, layers=layers,
                    edge_updates=edge_updates, editing=self.editing)
        largest = max(info.specs, key=lambda spec: spec.num_nodes)
        if largest.num_nodes > max_nodes(**dims):
            need = 4 * pair_floats(**dims) * largest.num_nodes ** 2 / 2 ** 30
            raise IncompatibleError(
                f"dataset '{info.name}': network '{getattr(largest, 'name', None) or largest.describe()}' has "
                f"{largest.num_nodes} neurons; NG-T keeps "
                f"{need:.1f} GiB of neuron-pair tensors per network for backward at these widths (limit "
                f"{PAIR_MEMORY_BUDGET / 2 ** 30:g} GiB: {max_nodes(**dims)} neurons); use gnn, whose memory grows "
                "with edges, or narrower model.d_attn/d_edge_hidden/layers")
        # the attention's (n x n x d_attn) float32 tensor of one network: what over_network_chunks keeps off
        # fresh pages
        self.pair_bytes = 4 * d_attn * largest.num_nodes ** 2
        # memory chunks are sized by the largest training network, so no larger architecture is read at
        # prediction time (nnzoo.inference.unseen_architecture_problem)
        self.max_neurons = largest.num_nodes
        self.layers = nn.ModuleList(
            RelationalTransformerLayer(d_node, d_edge, d_attn, d_node_hidden, d_edge_hidden, heads, dropout,
                                       # a classifier never reads the last layer's edges; an editor does
                                       update_edges=edge_updates and (i < layers - 1 or self.editing),
                                       modulate_v=modulate_v)
            for i in range(layers))
        if self.editing:
            self.delta_head = GraphDeltaHead(info, d_node, d_edge, reverse_edges)
        else:
            self.readout = OutputNodeReadout(d_node, info.network_outputs, info.num_outputs, head_hidden,
                                             head_layers)

    def forward(self, batch: WeightBatch) -> Tensor | list[Tensor]:
        if self.editing:
            x, edges, _ = self.encode(batch)
            return self.delta_head(x, edges, batch.specs, [len(p) for p in batch.params])
        return over_network_chunks(self._predict, batch, self.pair_bytes)

    def _predict(self, batch: WeightBatch) -> Tensor:
        x, _, graph = self.encode(batch)
        return self.readout(x, graph.output_index)

    def node_states(self, batch: WeightBatch) -> Tensor:
        """Final ``(num_nodes, d_node)`` neuron states, in :func:`~nnzoo.graphs.batch_to_graph` node order."""
        return self.encode(batch)[0]

    def encode(self, batch: WeightBatch) -> tuple[Tensor, Tensor, Data]:
        """Final node states, final edge states (batch-graph edge order; empty unless editing) and the graph."""
        g = self.input(batch)
        graph = g.graph
        x, mask = to_dense_batch(g.x, graph.batch, batch_size=graph.num_graphs)  # (B, n, d): nodes in order
        edges = dense_edges(g.edge_attr, graph.edge_index, graph.batch, graph.num_graphs, x.shape[1],
                            self.input.no_edge(g.x))
        key_mask = None if bool(mask.all()) else mask  # one architecture per batch: nothing to mask
        x, edges = self.attend(x, edges, key_mask)
        # only an editor reads the final edges: a classifier skips the gather on its training path
        edge_states = (edges[local_edge_index(graph.edge_index, graph.batch, graph.num_graphs)] if self.editing
                       else edges.new_empty(0))
        return x[mask], edge_states, graph

    def attend(self, x: Tensor, edges: Tensor, key_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The layers on dense ``(B, n, d_node)`` neurons and ``(B, n, n, d_edge)`` pairs
        (:attr:`compiled_cores`)."""
        for layer in self.layers:
            x, edges = layer(x, edges, key_mask)
        return x, edges
