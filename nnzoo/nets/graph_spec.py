"""A network that is not a chain, as an explicit computation graph: :class:`GraphSpec`.

:class:`~nnzoo.nets.spec.NetworkSpec` describes chains of layers (MLPs, CNNs, the Wild Park's residual CNNs)
by their widths; a transformer or a torchvision-style ResNet is not a chain.  A :class:`GraphSpec` lists the
graph itself, neuron by neuron and weight by weight, as :func:`nnzoo.nets.trace.trace_module` records it on
an example input:

* nodes: one per neuron (channel), with a *kind* (input, hidden, output, the query/key/value neurons of
  attention, one node per attention head, LayerNorm neurons, learned tokens), a positional slot (neurons that
  a symmetry may exchange share one; input, output and token neurons have their own), the activation
  applied at the neuron, and up to five node features (bias and BatchNorm/LayerNorm tensors) as indices into
  the flat parameter vector;
* edges: ``src -> dst`` with a kind (weight, residual, norm, query, key, value, out, qk, head, token) and
  either the flat index of the first entry of its ``kh x kw`` kernel or ``-1`` for a constant one
  (identity/structural edges).

The flat parameter vector is the module's ``state_dict`` order (every floating-point tensor), so packing
``torch.save(net.state_dict())`` files needs no conversion.  The arrays are stored zlib-compressed in the
spec, so a spec stays one hashable, JSON-safe value (``to_dict``/``from_dict``) like a ``NetworkSpec``.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nnzoo.errors import NnzooError
from nnzoo.nets.spec import MAX_NETWORK_PARAMS, NORM_ROLES, LayerSpec, TensorSlot

GRAPH_FORMAT = "graph"
"""``to_dict()["format"]`` of a GraphSpec (a NetworkSpec's dict has no ``format``)."""

NODE_KINDS = ("input", "hidden", "output", "query", "key", "value", "head", "norm", "token")
EDGE_KINDS = ("weight", "residual", "norm", "query", "key", "value", "out", "qk", "head", "token")
FEATURE_ROLES = ("bias", *NORM_ROLES)
"""Node feature columns, in the order of :attr:`nnzoo.data.weights.DataInfo.node_roles`."""
NODE_COLUMNS = 3 + len(FEATURE_ROLES)  # kind, pos, activation, features
EDGE_COLUMNS = 6  # src, dst, kind, base (-1: constant one), kh, kw


def _pack(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(array, dtype="<i4").tobytes(), 6)).decode("ascii")


def _unpack(text: str, columns: int, what: str) -> np.ndarray:
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, zlib.error, UnicodeEncodeError) as exc:
        raise NnzooError(f"graph spec: its {what} array is not readable ({exc}); write the spec again with "
                         "spec_from_module(net, input_shape=...).to_dict()") from None
    if len(raw) % (4 * columns):
        raise NnzooError(f"graph spec: its {what} array has {len(raw)} bytes, not rows of {columns} int32; write "
                         "the spec again")
    return np.frombuffer(raw, dtype="<i4").reshape(-1, columns).astype(np.int64)


@dataclass(frozen=True)
class GraphTensor:
    """One ``state_dict`` entry: its key, shape, role (for standardisation and StatNN) and statistics index."""

    key: str
    shape: tuple[int, ...]
    role: str
    layer: int


@dataclass(frozen=True)
class GraphSpec:
    """An architecture as an explicit neuron graph (see the module docstring); duck-types the parts of
    :class:`NetworkSpec` that datasets, graph metanetworks and StatNN read."""

    tensors: tuple[GraphTensor, ...]
    nodes: str  # packed (N, NODE_COLUMNS) int32
    edges: str  # packed (E, EDGE_COLUMNS) int32
    num_inputs: int
    num_outputs: int
    hidden_slots: int  # positional slots of non-input/output neurons: pos in [num_inputs, num_inputs + hidden_slots)
    layers: tuple[LayerSpec, ...] = ()  # one summary per dense/conv weight, for readers that list activations
    input_shape: tuple[int, ...] = ()
    name: str = "module"

    w0 = 30.0
    output_offset = 0.0
    residuals = ()  # not a field: a graph spec's residual edges are in its edge list

    def __post_init__(self) -> None:
        object.__setattr__(self, "tensors", tuple(t if isinstance(t, GraphTensor) else
                                                  GraphTensor(str(t[0]), tuple(int(s) for s in t[1]), str(t[2]),
                                                              int(t[3])) for t in self.tensors))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        if not self.tensors:
            raise NnzooError("graph spec: no tensors")
        if self.num_params > MAX_NETWORK_PARAMS:
            raise NnzooError(f"a {self.describe()} network has {self.num_params:,} parameters, more than nnzoo's "
                             f"limit of {MAX_NETWORK_PARAMS:,} per network")
        nodes, edges = self.node_array, self.edge_array
        n, p = len(nodes), self.num_params
        if n < self.num_inputs + self.num_outputs or not len(edges):
            raise NnzooError(f"graph spec: {n} nodes and {len(edges)} edges cannot hold {self.num_inputs} inputs "
                             f"and {self.num_outputs} outputs")
        feats = nodes[:, 3:]
        bad = ((edges[:, :2] < 0) | (edges[:, :2] >= n)).any() or (edges[:, 2] < 0).any() \
            or (edges[:, 2] >= len(EDGE_KINDS)).any() or (edges[:, 4:] < 1).any() \
            or (edges[:, 3] + edges[:, 4] * edges[:, 5] > p).any() or (edges[:, 3] < -1).any() \
            or ((nodes[:, 0] < 0) | (nodes[:, 0] >= len(NODE_KINDS))).any() or (feats >= p).any() \
            or (feats < -1).any()
        if bad:
            raise NnzooError("graph spec: a node or edge points outside the graph or the flat parameters; write the "
                             "spec again with spec_from_module(net, input_shape=...).to_dict()")

    # ------------------------------------------------------------ arrays
    @cached_property
    def node_array(self) -> np.ndarray:
        """``(N, NODE_COLUMNS)``: kind, positional slot (outputs negative), activation index, feature indices."""
        return _unpack(self.nodes, NODE_COLUMNS, "node")

    @cached_property
    def edge_array(self) -> np.ndarray:
        """``(E, EDGE_COLUMNS)``: src, dst, kind, flat index of the kernel's first entry (-1: one), kh, kw."""
        return _unpack(self.edges, EDGE_COLUMNS, "edge")

    @classmethod
    def from_arrays(cls, tensors: tuple[GraphTensor, ...], nodes: np.ndarray, edges: np.ndarray,
                    **fields: Any) -> "GraphSpec":
        return cls(tensors, _pack(nodes), _pack(edges), **fields)

    # ------------------------------------------------------------ NetworkSpec's reading interface
    @cached_property
    def slots(self) -> tuple[TensorSlot, ...]:
        out, offset = [], 0
        for t in self.tensors:
            size = int(np.prod(t.shape)) if t.shape else 1
            out.append(TensorSlot(t.layer, t.role, t.shape, offset, offset + size))
            offset += size
        return tuple(out)

    @property
    def num_params(self) -> int:
        return self.slots[-1].end

    @property
    def num_nodes(self) -> int:
        return len(self.node_array)

    @property
    def num_layers(self) -> int:
        """Statistics indices (one per module holding tensors), as StatNN and Standardize count layers."""
        return max(t.layer for t in self.tensors) + 1

    @property
    def widths(self) -> tuple[int, ...]:
        """Inputs, all other neurons, outputs: sums to the node count (there are no layer widths)."""
        return (self.num_inputs, self.num_nodes - self.num_inputs - self.num_outputs, self.num_outputs)

    @property
    def max_kernel(self) -> tuple[int, int]:
        e = self.edge_array
        return (int(e[:, 4].max()), int(e[:, 5].max()))

    @property
    def is_conv(self) -> bool:
        return any(layer.kind == "conv" for layer in self.layers)

    @property
    def has_norm(self) -> bool:
        return any(t.role in NORM_ROLES for t in self.tensors)

    @property
    def input_kind(self) -> str:
        return "image" if len(self.input_shape) == 3 else "module"

    def describe(self) -> str:
        kinds = self.node_array[:, 0]
        heads = int((kinds == NODE_KINDS.index("head")).sum())
        text = f"{self.name} graph {self.num_nodes} neurons {len(self.edge_array)} edges"
        return text + (f" {heads} heads" if heads else "") + (" norm" if self.has_norm else "")

    def to_dict(self) -> dict[str, Any]:
        return {"format": GRAPH_FORMAT, "name": self.name, "num_inputs": self.num_inputs,
                "num_outputs": self.num_outputs, "hidden_slots": self.hidden_slots,
                "input_shape": list(self.input_shape),
                "tensors": [[t.key, list(t.shape), t.role, t.layer] for t in self.tensors],
                "layers": [dict(vars(layer), kernel_size=list(layer.kernel_size)) for layer in self.layers],
                "nodes": self.nodes, "edges": self.edges}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GraphSpec":
        d = {k: v for k, v in d.items() if k != "format"}
        d["layers"] = tuple(LayerSpec(**{**layer, "kernel_size": tuple(layer.get("kernel_size", (1, 1)))})
                            for layer in d.get("layers", ()))
        d["tensors"] = tuple(tuple(t) for t in d["tensors"])
        return cls(**d)


def spec_from_dict(d: Mapping[str, Any]):
    """A :class:`NetworkSpec` or a :class:`GraphSpec` from its ``to_dict()`` form."""
    from nnzoo.nets.spec import NetworkSpec
    if isinstance(d, Mapping) and d.get("format") == GRAPH_FORMAT:
        return GraphSpec.from_dict(d)
    return NetworkSpec.from_dict(dict(d))


def graph_state_dict_to_params(state_dict: Mapping[str, object], spec: GraphSpec,
                               source: str | Path = "state dict") -> Tensor:
    """Flat ``(P,)`` float32 vector of a state dict of the module ``spec`` was read from: by key when the keys
    are the spec's, else by position when the floating-point tensors have the spec's shapes in order."""
    from nnzoo.checks import check_plain_tensors
    check_plain_tensors(state_dict, source)
    floats = [(str(k), v) for k, v in state_dict.items() if isinstance(v, Tensor) and v.is_floating_point()]
    by_key = dict(floats)
    if all(t.key in by_key for t in spec.tensors):
        chosen = [(t.key, by_key[t.key]) for t in spec.tensors]
        extra = [k for k, _ in floats if k not in {t.key for t in spec.tensors}]
        if extra:
            raise NnzooError(f"{source}: tensor '{extra[0]}' has no place in {spec.describe()}; wrong architecture "
                             "for this dataset")
    elif len(floats) == len(spec.tensors):
        chosen = floats
    else:
        missing = next(t.key for t in spec.tensors if t.key not in by_key)
        raise NnzooError(f"{source} has no tensor '{missing}' and {len(floats)} floating-point tensors where "
                         f"{spec.describe()} has {len(spec.tensors)}; wrong architecture for this dataset")
    flat = torch.empty(spec.num_params)
    for slot, t, (key, value) in zip(spec.slots, spec.tensors, chosen):
        if tuple(value.shape) != t.shape:
            raise NnzooError(f"{source}: tensor '{key}' has shape {tuple(value.shape)} but '{t.key}' of "
                             f"{spec.describe()} needs {t.shape}; wrong architecture")
        flat[slot.start:slot.end] = value.detach().float().reshape(-1)
    if not torch.isfinite(flat).all():
        raise NnzooError(f"{source} contains NaN or Inf weights; re-train or replace this network")
    return flat
