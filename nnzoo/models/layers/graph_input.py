"""From a batch of raw weights to encoded graph features: the front end of every graph metanetwork.

It follows the graph constructor of Neural Graphs (Kofinas et al. 2024):

* node feature: ``Linear(Fourier(bias))`` (+ probe features) -> ``Linear`` -> + positional
  embedding (+ activation embedding on hidden neurons);
* edge feature: ``Linear(Fourier(raw edge))`` -> ``Linear``;
* graphs read off modules (:class:`~nnzoo.nets.graph_spec.GraphSpec`): + a learned embedding of the node
  type and of the edge type (attention's query/key/value/out weights, head and norm edges, tokens).  With ``reverse_edges`` the raw
  feature of an edge is ``[w, 0, w]`` along the data flow and ``[0, w, w]`` on its reversed
  copy (the reference's ``[W, W^T, W + W^T]``), so direction is encoded before the lift.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.errors import NnzooError
from nnzoo.graphs import NODE_KIND_HIDDEN, batch_to_graph
from nnzoo.models.layers.encoders import FeatureEncoder, NodePositionEmbedding
from nnzoo.models.layers.probes import ProbeFeatures
from nnzoo.models.layers.standardize import Standardize
from nnzoo.nets.graph_spec import EDGE_KINDS, NODE_KINDS, GraphSpec
from nnzoo.nets.spec import ACTIVATIONS


@dataclass
class EncodedGraph:
    x: Tensor  # (N, node_dim) node features
    edge_attr: Tensor  # (E, edge_dim) encoded edge features
    graph: Data  # the batched graph: edge_index (sorted by target), batch, in_degree, output_index, ...


def with_direction(edge_attr: Tensor, edge_dir: Tensor) -> Tensor:
    """``[w, 0, w]`` for edges along the data flow, ``[0, w, w]`` for their reversed copies."""
    backward = edge_dir.unsqueeze(-1).to(edge_attr.dtype)
    return torch.cat([edge_attr * (1 - backward), edge_attr * backward, edge_attr], dim=-1)


class GraphInput(nn.Module):
    """Standardise weights, build the batch graph and encode its nodes and edges.

    ``linear_as_conv=False`` gives the dense layers of a CNN their own edge
    encoder (the reference's ``proj_mlp_weight``), which reads the scalar weight
    instead of a kernel padded around it.  ``activation_embedding``
    (``"auto"``: when the dataset mixes activation functions) adds a learned
    vector per activation type to hidden neurons, as the reference does for the
    CNN Wild Park.
    """

    def __init__(self, info: DataInfo, node_dim: int, edge_dim: int, fourier_features: int = 128,
                 fourier_sigma: float = 3.0, probes: int = 0, reverse_edges: bool = False,
                 linear_as_conv: bool = True, activation_embedding: bool | str = "auto",
                 input_layers: int = 1) -> None:
        super().__init__()
        self.edge_kernel, self.node_roles, self.reverse_edges = info.edge_kernel, info.node_roles, reverse_edges
        self.standardize = Standardize(info.stats)
        edge_in = info.edge_dim * (3 if reverse_edges else 1)
        self.edge_in_dim = edge_in
        self.node_encoder = FeatureEncoder(len(info.node_roles), node_dim, fourier_features, fourier_sigma,
                                           input_layers)
        self.edge_encoder = FeatureEncoder(edge_in, edge_dim, fourier_features, fourier_sigma, input_layers)
        self.node_in = nn.Linear(node_dim, node_dim)
        self.edge_in = nn.Linear(edge_dim, edge_dim)
        has_linear = any(layer.kind == "linear" for s in info.specs for layer in s.layers)
        self.separate_linear = not linear_as_conv and has_linear and any(s.is_conv for s in info.specs)
        if self.separate_linear:  # dense layers of a CNN read their scalar weight (3 with reverse features)
            self.linear_edge_encoder = FeatureEncoder(3 if reverse_edges else 1, edge_dim, fourier_features,
                                                      fourier_sigma, input_layers)
            self.linear_edge_in = nn.Linear(edge_dim, edge_dim)
            kh, kw = info.edge_kernel
            centre = (kh // 2) * kw + kw // 2
            self.register_buffer("linear_index", torch.tensor([centre + i * kh * kw
                                                               for i in range(3 if reverse_edges else 1)]),
                                 persistent=False)
        self.position = NodePositionEmbedding(info.num_pos_slots, node_dim)
        num_groups = max(s.num_layers for s in info.specs) + 1
        # probes need a coordinate input to evaluate the network at; CNN datasets have none
        self.probes = (ProbeFeatures(probes, info.network_inputs, node_dim, num_groups)
                       if probes > 0 and info.coordinate_networks else None)
        kinds = {layer.activation for spec in info.specs for layer in spec.layers[:-1]}
        if activation_embedding not in (True, False, "auto"):
            raise NnzooError(f"activation_embedding must be true, false or auto, got {activation_embedding!r}")
        use_act = len(kinds) > 1 if activation_embedding == "auto" else bool(activation_embedding)
        self.activation = nn.Embedding(len(ACTIVATIONS), node_dim) if use_act else None
        # graphs read off modules (GraphSpec) type their neurons (query, key, value, head, norm, token...) and
        # weights (query, key, value, out, qk, head, token...): a learned vector per type, shared by every
        # element of that type, so the types stay permutation-invariant; absent for layer-chain datasets
        typed = any(isinstance(s, GraphSpec) for s in info.specs)
        self.node_type = nn.Embedding(len(NODE_KINDS), node_dim) if typed else None
        self.edge_type = nn.Embedding(len(EDGE_KINDS), edge_dim) if typed else None

    def encode_edges(self, raw: Tensor, linear: Tensor | None = None) -> Tensor:
        """Raw edge features ``(E, edge_in)`` -> ``(E, edge_dim)``; ``linear`` flags dense-layer edges."""
        out = self.edge_in(self.edge_encoder(raw))
        if self.separate_linear and linear is not None and bool(linear.any()):
            dense = self.linear_edge_in(self.linear_edge_encoder(raw[linear][:, self.linear_index]))
            out = out.index_put((linear.nonzero().squeeze(-1),), dense)
        return out

    def no_edge(self, like: Tensor) -> Tensor:
        """Encoding of a zero raw feature: what a pair of neurons without a weight carries (NG-T)."""
        return self.encode_edges(like.new_zeros(1, self.edge_in_dim))[0]

    def forward(self, batch: WeightBatch) -> EncodedGraph:
        params = [self.standardize(s, p) for s, p in zip(batch.specs, batch.params)]
        graph = batch_to_graph(batch.specs, params, self.edge_kernel, self.node_roles, self.reverse_edges)
        x = self.node_encoder(graph.x)
        if self.probes is not None:
            x = x + self.probes(batch.specs, batch.params, graph.node_group)
        x = self.node_in(x) + self.position(graph.node_pos)
        if self.activation is not None:
            hidden = (graph.node_kind == NODE_KIND_HIDDEN).unsqueeze(-1)
            x = x + self.activation(graph.node_act) * hidden
        if self.node_type is not None:
            x = x + self.node_type(graph.node_kind)
        raw = with_direction(graph.edge_attr, graph.edge_dir) if self.reverse_edges else graph.edge_attr
        edges = self.encode_edges(raw, graph.edge_linear)
        if self.edge_type is not None:
            edges = edges + self.edge_type(graph.edge_kind)
        return EncodedGraph(x, edges, graph)
