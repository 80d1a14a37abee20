"""Networks as graphs: one node per neuron/channel, one edge per weight/kernel."""

from nnzoo.graphs.batch import batch_to_graph, network_to_data
from nnzoo.graphs.template import (EDGE_KIND_RESIDUAL, EDGE_KIND_WEIGHT, NODE_KIND_HIDDEN, NODE_KIND_INPUT,
                                   NODE_KIND_OUTPUT, GraphTemplate, graph_template)

__all__ = ["EDGE_KIND_RESIDUAL", "EDGE_KIND_WEIGHT", "NODE_KIND_HIDDEN", "NODE_KIND_INPUT", "NODE_KIND_OUTPUT",
           "GraphTemplate", "batch_to_graph", "graph_template", "network_to_data"]
