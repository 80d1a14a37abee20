"""The computation graph of an architecture, as index tensors into its flat parameters.

A network's graph has one node per neuron (channel, for convolutions), inputs
included, and one edge per weight (per kernel, for convolutions).  Its *shape*
depends only on the :class:`~nnzoo.nets.NetworkSpec`, so we build it once per
architecture and express every feature as an index into the flat parameter
vector.  Turning a batch of ``B`` networks into graphs is then one gather per
feature tensor plus offset arithmetic (see :mod:`nnzoo.graphs.batch`).

Node order is the layer order: input neurons, then layer 0's outputs, then
layer 1's outputs, ... so node ``j`` of group ``g`` has id ``offset[g] + j``.
Edges are sorted by target node.  Batching keeps that order, so aggregations
can use segment reductions (:mod:`nnzoo.models.layers.pna`) instead of
scatters, whose backward passes are several times slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from nnzoo.errors import NnzooError
from nnzoo.nets.graph_spec import EDGE_KINDS, FEATURE_ROLES, NODE_KINDS, GraphSpec
from nnzoo.nets.spec import ACTIVATIONS, NetworkSpec

NODE_KIND_INPUT, NODE_KIND_HIDDEN, NODE_KIND_OUTPUT = 0, 1, 2
EDGE_KIND_WEIGHT, EDGE_KIND_RESIDUAL = 0, 1
assert NODE_KINDS[:3] == ("input", "hidden", "output") and EDGE_KINDS[:2] == ("weight", "residual")
_WEIGHT_KINDS = torch.tensor([EDGE_KINDS.index(k) for k in ("weight", "query", "key", "value", "out")])


@dataclass(frozen=True)
class GraphTemplate:
    """Index form of one architecture's graph.

    Feature indices point into ``cat([params, 0, 1])``: index ``P`` reads a zero
    (input-neuron bias, kernel padding) and ``P + 1`` reads a one (the identity
    kernel of a residual edge).

    ``node_pos`` is the positional-embedding slot: input neuron ``i`` gets ``i``,
    hidden group ``g`` (1-based) gets ``num_inputs + g - 1`` (shared by all its
    neurons, so they stay permutable), and output neuron ``j`` gets the negative
    ``j - num_outputs``, i.e. it counts from the end of the embedding table so
    outputs share slots across networks of different depth.
    """

    num_nodes: int
    edge_index: Tensor  # (2, E) source -> target neuron
    node_feature_index: Tensor  # (N, node_dim)
    edge_feature_index: Tensor  # (E, edge_dim)
    node_group: Tensor  # (N,) 0 = inputs, g = outputs of layer g - 1
    node_kind: Tensor  # (N,) input / hidden / output
    node_pos: Tensor  # (N,) positional slot (negative = from the end)
    node_act: Tensor  # (N,) index into ACTIVATIONS of the activation applied at this neuron
    edge_layer: Tensor  # (E,) layer whose weight the edge carries (target group - 1)
    edge_kind: Tensor  # (E,) weight / residual
    edge_dir: Tensor  # (E,) 0 = along the network's data flow, 1 = reversed copy
    in_degree: Tensor  # (N,) incoming edges per node (segment lengths, edges sorted by target)
    output_nodes: Tensor  # (num_outputs,) node ids of the output neurons, in order
    edge_linear: Tensor  # (E,) True where the edge carries a dense (linear-layer) weight, not a kernel

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    def to(self, device: torch.device | str) -> "GraphTemplate":
        return GraphTemplate(self.num_nodes, *(getattr(self, f).to(device) for f in _TENSOR_FIELDS))


_TENSOR_FIELDS = ("edge_index", "node_feature_index", "edge_feature_index", "node_group", "node_kind",
                  "node_pos", "node_act", "edge_layer", "edge_kind", "edge_dir", "in_degree", "output_nodes",
                  "edge_linear")


def _edges_of_layer(spec: NetworkSpec, layer_index: int, src_offset: int, dst_offset: int,
                    edge_kernel: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Edges and their kernel-feature indices for one dense or conv layer."""
    layer = spec.layers[layer_index]
    slot = spec.slot(layer_index, "weight")
    assert slot is not None
    fan_in, fan_out = layer.in_features, layer.out_features
    kh, kw = layer.kernel_size
    big_h, big_w = edge_kernel
    if kh > big_h or kw > big_w:
        raise NnzooError(f"kernel {kh}x{kw} of {spec.describe()} exceeds the dataset's edge size "
                         f"{big_h}x{big_w}; raise the maximum kernel size")
    dst, src = torch.meshgrid(torch.arange(fan_out), torch.arange(fan_in), indexing="ij")
    edge_index = torch.stack([src.reshape(-1) + src_offset, dst.reshape(-1) + dst_offset])
    # weight[o, i, y, x] sits at start + ((o * fan_in + i) * kh + y) * kw + x
    base = slot.start + (dst.reshape(-1) * fan_in + src.reshape(-1)) * (kh * kw)  # (E,)
    feature = torch.full((base.numel(), big_h * big_w), spec.num_params, dtype=torch.long)
    top, left = (big_h - kh) // 2, (big_w - kw) // 2  # symmetric zero padding
    for y in range(kh):
        for x in range(kw):
            feature[:, (top + y) * big_w + left + x] = base + y * kw + x
    return edge_index, feature


@lru_cache(maxsize=256)
def graph_template(spec: NetworkSpec, edge_kernel: tuple[int, int] = (1, 1),
                   node_roles: tuple[str, ...] = ("bias",), reverse_edges: bool = False) -> GraphTemplate:
    """Build (and cache) the graph template of ``spec``.

    ``edge_kernel`` is the dataset-wide kernel size every edge feature is padded
    to (``(1, 1)`` for MLPs); ``node_roles`` are the per-neuron tensors used as
    node features, in order (``bias``, then BatchNorm tensors if any).  With
    ``reverse_edges`` every edge also appears reversed (same feature,
    ``edge_dir = 1``) so messages can flow from a layer to the one below it.
    A :class:`~nnzoo.nets.graph_spec.GraphSpec` lists its graph itself (:func:`_listed_template`).
    """
    if isinstance(spec, GraphSpec):
        return _listed_template(spec, edge_kernel, node_roles, reverse_edges)
    widths = spec.widths
    offsets = [0]
    for w in widths:
        offsets.append(offsets[-1] + w)
    num_nodes = offsets[-1]
    zero, one = spec.num_params, spec.num_params + 1

    node_feature = torch.full((num_nodes, len(node_roles)), zero, dtype=torch.long)
    node_group = torch.zeros(num_nodes, dtype=torch.long)
    node_act = torch.zeros(num_nodes, dtype=torch.long)
    for layer_index, layer in enumerate(spec.layers):
        group = layer_index + 1
        ids = torch.arange(offsets[group], offsets[group + 1])
        node_group[ids] = group
        node_act[ids] = ACTIVATIONS.index(layer.activation)
        for f, role in enumerate(node_roles):
            slot = spec.slot(layer_index, role)
            if slot is not None:
                node_feature[ids, f] = torch.arange(slot.start, slot.end)

    last = len(widths) - 1
    node_kind = torch.full((num_nodes,), NODE_KIND_HIDDEN, dtype=torch.long)
    node_kind[node_group == 0] = NODE_KIND_INPUT
    node_kind[node_group == last] = NODE_KIND_OUTPUT
    node_pos = torch.where(node_group == 0, torch.arange(num_nodes), spec.num_inputs + node_group - 1)
    output_nodes = torch.arange(offsets[last], offsets[last + 1])
    node_pos[output_nodes] = torch.arange(widths[-1]) - widths[-1]

    edges, features, layers, kinds, linear = [], [], [], [], []
    for layer_index in range(spec.num_layers):
        e, f = _edges_of_layer(spec, layer_index, offsets[layer_index], offsets[layer_index + 1], edge_kernel)
        edges.append(e)
        features.append(f)
        layers.append(torch.full((e.shape[1],), layer_index))
        kinds.append(torch.full((e.shape[1],), EDGE_KIND_WEIGHT))
        linear.append(torch.full((e.shape[1],), spec.layers[layer_index].kind == "linear"))
    centre = (edge_kernel[0] // 2) * edge_kernel[1] + edge_kernel[1] // 2
    for src_group, dst_group in spec.residuals:
        k = torch.arange(min(widths[src_group], widths[dst_group]))
        edges.append(torch.stack([k + offsets[src_group], k + offsets[dst_group]]))
        f = torch.full((len(k), edge_kernel[0] * edge_kernel[1]), zero, dtype=torch.long)
        f[:, centre] = one  # identity kernel
        features.append(f)
        layers.append(torch.full((len(k),), dst_group - 1))
        kinds.append(torch.full((len(k),), EDGE_KIND_RESIDUAL))
        linear.append(torch.zeros(len(k), dtype=torch.bool))

    edge_index, edge_feature = torch.cat(edges, dim=1), torch.cat(features)
    edge_layer, edge_kind, edge_linear = torch.cat(layers), torch.cat(kinds), torch.cat(linear)
    edge_dir = torch.zeros(edge_index.shape[1], dtype=torch.long)
    if reverse_edges:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
        edge_feature, edge_layer, edge_kind = edge_feature.repeat(2, 1), edge_layer.repeat(2), edge_kind.repeat(2)
        edge_linear = edge_linear.repeat(2)
        edge_dir = torch.cat([edge_dir, torch.ones_like(edge_dir)])
    order = torch.sort(edge_index[1], stable=True).indices  # sorted by target: segment reductions
    return GraphTemplate(
        num_nodes=num_nodes,
        edge_index=edge_index[:, order],
        node_feature_index=node_feature,
        edge_feature_index=edge_feature[order],
        node_group=node_group,
        node_kind=node_kind,
        node_pos=node_pos,
        node_act=node_act,
        edge_layer=edge_layer[order],
        edge_kind=edge_kind[order],
        edge_dir=edge_dir[order],
        in_degree=torch.bincount(edge_index[1], minlength=num_nodes),
        output_nodes=output_nodes,
        edge_linear=edge_linear[order],
    )


def _listed_template(spec: GraphSpec, edge_kernel: tuple[int, int], node_roles: tuple[str, ...],
                     reverse_edges: bool) -> GraphTemplate:
    """The template of a graph spec: its node and edge lists, kernels padded to ``edge_kernel`` as above."""
    nodes, edges = torch.from_numpy(spec.node_array), torch.from_numpy(spec.edge_array)
    num_nodes, zero, one = len(nodes), spec.num_params, spec.num_params + 1
    node_feature = torch.full((num_nodes, len(node_roles)), zero, dtype=torch.long)
    for f, role in enumerate(node_roles):
        column = nodes[:, 3 + FEATURE_ROLES.index(role)]
        node_feature[:, f] = torch.where(column >= 0, column, zero)
    kind, pos = nodes[:, 0], nodes[:, 1]
    node_group = torch.where(kind == NODE_KIND_INPUT, 0, pos - spec.num_inputs + 1)
    node_group[kind == NODE_KIND_OUTPUT] = spec.hidden_slots + 1
    src, dst, edge_kind, base, kh, kw = edges.t()
    big_h, big_w = edge_kernel
    if int(kh.max()) > big_h or int(kw.max()) > big_w:
        raise NnzooError(f"a {int(kh.max())}x{int(kw.max())} kernel of {spec.describe()} exceeds the dataset's edge "
                         f"size {big_h}x{big_w}; raise the maximum kernel size")
    feature = torch.full((len(edges), big_h * big_w), zero, dtype=torch.long)
    for y in range(big_h):
        for x in range(big_w):
            iy, ix = y - (big_h // 2 - kh // 2), x - (big_w // 2 - kw // 2)  # centred as GraphInput.linear_index
            inside = (iy >= 0) & (iy < kh) & (ix >= 0) & (ix < kw)
            value = torch.where(base >= 0, base + iy * kw + ix, one)
            feature[:, y * big_w + x] = torch.where(inside, value, zero)
    edge_index = torch.stack([src, dst])
    edge_layer = node_group[dst] - 1
    edge_linear = torch.isin(edge_kind, _WEIGHT_KINDS) & (kh * kw == 1)
    edge_dir = torch.zeros(len(edges), dtype=torch.long)
    if reverse_edges:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
        feature, edge_layer, edge_kind = feature.repeat(2, 1), edge_layer.repeat(2), edge_kind.repeat(2)
        edge_linear = edge_linear.repeat(2)
        edge_dir = torch.cat([edge_dir, torch.ones_like(edge_dir)])
    order = torch.sort(edge_index[1], stable=True).indices
    return GraphTemplate(
        num_nodes=num_nodes, edge_index=edge_index[:, order], node_feature_index=node_feature,
        edge_feature_index=feature[order], node_group=node_group, node_kind=kind.clone(), node_pos=pos.clone(),
        node_act=nodes[:, 2].clone(), edge_layer=edge_layer[order], edge_kind=edge_kind[order].clone(),
        edge_dir=edge_dir[order], in_degree=torch.bincount(edge_index[1], minlength=num_nodes),
        output_nodes=torch.nonzero(kind == NODE_KIND_OUTPUT).flatten()[torch.argsort(
            pos[kind == NODE_KIND_OUTPUT])],
        edge_linear=edge_linear[order])


@lru_cache(maxsize=256)
def _template_on(spec: NetworkSpec, edge_kernel: tuple[int, int], node_roles: tuple[str, ...],
                 reverse_edges: bool, device: str) -> GraphTemplate:
    return graph_template(spec, edge_kernel, node_roles, reverse_edges).to(device)


def template_on(spec: NetworkSpec, edge_kernel: tuple[int, int], node_roles: tuple[str, ...],
                reverse_edges: bool, device: torch.device) -> GraphTemplate:
    """:func:`graph_template` already moved to ``device`` (cached, so no copy per step)."""
    return _template_on(spec, edge_kernel, node_roles, reverse_edges, str(device))
