"""From a batch of raw weights to encoded graph features: the front end of every graph metanetwork."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch_geometric.data import Data

from nnzoo.data.weights import DataInfo, WeightBatch
from nnzoo.graphs import NODE_KIND_HIDDEN, batch_to_graph
from nnzoo.models.layers.encoders import FeatureEncoder, NodePositionEmbedding
from nnzoo.models.layers.probes import ProbeFeatures
from nnzoo.models.layers.standardize import Standardize
from nnzoo.nets.spec import ACTIVATIONS


@dataclass
class EncodedGraph:
    x: Tensor  # (N, node_dim) node features
    edge_attr: Tensor  # (E, edge_dim) encoded edge features
    graph: Data  # the batched graph: edge_index (sorted by target), batch, in_degree, output_index, ...


class GraphInput(nn.Module):
    """Standardise weights, build the batch graph and encode it.

    Node features: encoded bias (+ BatchNorm tensors) + positional embedding
    (+ probe features, for coordinate networks only) (+ a learned embedding of
    the neuron's activation function on hidden neurons, when the dataset mixes
    activations, e.g. ReLU and tanh CNNs).  Edge features: encoded weight/kernel; with
    ``reverse_edges`` each edge is duplicated backwards and tagged by a learned
    direction vector, so information flows both ways through the network.
    """

    def __init__(self, info: DataInfo, node_dim: int, edge_dim: int, fourier_features: int = 128,
                 fourier_sigma: float = 3.0, probes: int = 0, reverse_edges: bool = True) -> None:
        super().__init__()
        self.edge_kernel, self.node_roles, self.reverse_edges = info.edge_kernel, info.node_roles, reverse_edges
        self.standardize = Standardize(info.stats)
        self.node_encoder = FeatureEncoder(len(info.node_roles), node_dim, fourier_features, fourier_sigma)
        self.edge_encoder = FeatureEncoder(info.edge_dim, edge_dim, fourier_features, fourier_sigma)
        self.position = NodePositionEmbedding(info.num_pos_slots, node_dim)
        num_groups = max(s.num_layers for s in info.specs) + 1
        # probes need a coordinate input to evaluate the network at; CNN datasets have none
        self.probes = (ProbeFeatures(probes, info.network_inputs, node_dim, num_groups)
                       if probes > 0 and info.coordinate_networks else None)
        self.direction = nn.Embedding(2, edge_dim) if reverse_edges else None
        kinds = {layer.activation for spec in info.specs for layer in spec.layers[:-1]}
        self.activation = nn.Embedding(len(ACTIVATIONS), node_dim) if len(kinds) > 1 else None

    def forward(self, batch: WeightBatch) -> EncodedGraph:
        params = [self.standardize(s, p) for s, p in zip(batch.specs, batch.params)]
        graph = batch_to_graph(batch.specs, params, self.edge_kernel, self.node_roles, self.reverse_edges)
        x = self.node_encoder(graph.x) + self.position(graph.node_pos)
        if self.probes is not None:
            x = x + self.probes(batch.specs, batch.params, graph.node_group)
        if self.activation is not None:
            hidden = (graph.node_kind == NODE_KIND_HIDDEN).unsqueeze(-1)
            x = x + self.activation(graph.node_act) * hidden
        # encode each weight once, then copy to its edges (reversed edges share their weight)
        edge_attr = self.edge_encoder(graph.weight_attr).index_select(0, graph.edge_weight_row)
        if self.direction is not None:
            edge_attr = edge_attr + self.direction(graph.edge_dir)
        return EncodedGraph(x, edge_attr, graph)
