"""Containers for datasets of network weights.

* :class:`WeightDataset` keeps one ``(N_spec, P_spec)`` tensor per architecture
  and returns whole mini-batches through ``__getitems__`` (one gather, no
  per-sample Python collate).
* :class:`WeightBatch` is a mini-batch grouped by architecture; Lightning moves
  it to the device through its ``to`` method.
* :class:`DataInfo` is what a model must know about the data to be built
  (architectures, number of outputs, normalisation statistics).  It is plain
  data, stored in every checkpoint, so a trained model can be rebuilt without
  the dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from nnzoo.errors import NnzooError, check_choice
from nnzoo.nets.spec import NORM_ROLES, NetworkSpec


class WeightBatch:
    """A mini-batch of networks grouped by architecture.

    ``params[g]`` is ``(B_g, P_g)`` for ``specs[g]``; ``y`` holds the targets in
    group order (class ids, or accuracies for regression).
    """

    def __init__(self, specs: Sequence[NetworkSpec], params: Sequence[Tensor], y: Tensor) -> None:
        self.specs = tuple(specs)
        self.params = tuple(params)
        self.y = y

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def homogeneous(self) -> bool:
        """All networks share one parameter layout (they may differ in activation functions)."""
        return same_layout(self.specs)

    @property
    def spec(self) -> NetworkSpec:
        """The (first) architecture of a homogeneous batch."""
        if not self.homogeneous:
            raise NnzooError(f"this batch mixes {len(self.specs)} parameter layouts; the model needs one")
        return self.specs[0]

    @property
    def flat(self) -> Tensor:
        """``(B, P)`` parameters of a homogeneous batch, in the order of ``y``."""
        _ = self.spec
        return self.params[0] if len(self.params) == 1 else torch.cat(self.params)

    def replace(self, params: Sequence[Tensor] | None = None, y: Tensor | None = None) -> "WeightBatch":
        return WeightBatch(self.specs, self.params if params is None else params, self.y if y is None else y)

    def split(self, size: int) -> list["WeightBatch"]:
        """Consecutive sub-batches of at most ``size`` networks, in the order of ``y``; a sub-batch keeps its
        architecture groups apart, and the tail of one group shares a sub-batch with the next when both fit."""
        if size < 1:
            raise ValueError(f"sub-batch size must be >= 1, got {size}")
        parts, start = [], 0
        for spec, params in zip(self.specs, self.params):
            for i in range(0, len(params), size):
                rows = params[i:i + size]
                parts.append(([spec], [rows], self.y[start + i:start + i + len(rows)]))
            start += len(params)
        merged: list[WeightBatch] = []  # fill each sub-batch up to ``size`` across group boundaries
        for specs, params, y in parts:
            last = merged[-1] if merged else None
            if last is not None and len(last) + len(y) <= size:
                merged[-1] = WeightBatch(last.specs + tuple(specs), last.params + tuple(params),
                                         torch.cat([last.y, y]))
            else:
                merged.append(WeightBatch(specs, params, y))
        return merged

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "WeightBatch":
        return WeightBatch(self.specs, [p.to(device, non_blocking=non_blocking) for p in self.params],
                           self.y.to(device, non_blocking=non_blocking))

    def __repr__(self) -> str:
        groups = ", ".join(f"{len(p)}x[{s.describe()}]" for s, p in zip(self.specs, self.params))
        return f"WeightBatch({groups})"


BatchTransform = Callable[[WeightBatch], WeightBatch]


def same_layout(specs: Sequence[NetworkSpec]) -> bool:
    """True when every spec has the same tensors in the same order (flat vectors can be stacked).

    E.g. the Small CNN Zoo mixes ReLU and tanh networks of one layout: two specs, one layout.
    """
    return len({tuple((s.role, s.shape) for s in spec.slots) for spec in specs}) == 1


class WeightDataset(Dataset):
    """Networks of one or more architectures with one target each.

    ``params[s]`` is ``(N_s, P_s)``; sample ``i`` is row ``row[i]`` of group
    ``group[i]``.  ``transform`` (e.g. augmentation) is applied per mini-batch.
    """

    def __init__(self, specs: Sequence[NetworkSpec], params: Sequence[Tensor], group: Tensor, row: Tensor,
                 targets: Tensor, transform: BatchTransform | None = None) -> None:
        if not (len(group) == len(row) == len(targets)):
            raise NnzooError("group, row and targets must have one entry per network")
        self.specs, self.params = tuple(specs), tuple(params)
        self.group, self.row, self.targets = group.long(), row.long(), targets
        self.transform = transform

    @classmethod
    def homogeneous(cls, spec: NetworkSpec, params: Tensor, targets: Tensor,
                    transform: BatchTransform | None = None) -> "WeightDataset":
        n = params.shape[0]
        return cls([spec], [params], torch.zeros(n, dtype=torch.long), torch.arange(n), targets, transform)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> WeightBatch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> WeightBatch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        groups = self.group[idx]
        specs, params, ys = [], [], []
        for g in torch.unique(groups).tolist():  # sorted group order
            sel = idx[groups == g]
            specs.append(self.specs[g])
            params.append(self.params[g][self.row[sel]])
            ys.append(self.targets[sel])
        batch = WeightBatch(specs, params, torch.cat(ys))
        return self.transform(batch) if self.transform is not None else batch

    def subset(self, indices: Tensor) -> "WeightDataset":
        """A view on some networks (the parameter tensors are shared, not copied)."""
        return WeightDataset(self.specs, self.params, self.group[indices], self.row[indices],
                             self.targets[indices], self.transform)

    def with_transform(self, transform: BatchTransform | None) -> "WeightDataset":
        """The same networks, served through ``transform`` (e.g. augmentation for training)."""
        return WeightDataset(self.specs, self.params, self.group, self.row, self.targets, transform)


def collate_weight_batch(batch: WeightBatch) -> WeightBatch:
    """DataLoader ``collate_fn``: ``__getitems__`` already returns a collated batch."""
    return batch


# ------------------------------------------------------------------ statistics
def layer_statistics(specs: Sequence[NetworkSpec], params: Sequence[Tensor]) -> dict[str, list[list[float]]]:
    """Mean and std of every ``(role, layer)`` tensor pooled over networks and entries.

    Pooling over all entries of a layer (not per entry) keeps the
    normalisation permutation-invariant, unlike DWSNets' per-entry statistics.
    Returns ``{role: [[mean, std] for each layer index]}``.
    """
    sums: dict[tuple[str, int], list[float]] = {}
    for spec, p in zip(specs, params):
        p64 = p.double()
        for s in spec.slots:
            block = p64[:, s.start:s.end]
            acc = sums.setdefault((s.role, s.layer), [0.0, 0.0, 0.0])
            acc[0] += block.numel()
            acc[1] += block.sum().item()
            acc[2] += block.pow(2).sum().item()
    max_layer = max(layer for _, layer in sums) + 1
    stats: dict[str, list[list[float]]] = {}
    for (role, layer), (count, total, squares) in sorted(sums.items()):
        mean = total / count
        std = max((squares / count - mean * mean), 0.0) ** 0.5
        table = stats.setdefault(role, [[0.0, 1.0] for _ in range(max_layer)])
        table[layer] = [mean, std if std > 1e-8 else 1.0]
    return stats


def _activations(spec: NetworkSpec) -> set[str]:
    """The activation functions of ``spec``'s hidden neurons."""
    from nnzoo.nets.graph_spec import GraphSpec, NODE_KINDS
    from nnzoo.nets.spec import ACTIVATIONS
    if isinstance(spec, GraphSpec):
        nodes = spec.node_array
        return {ACTIVATIONS[a] for a in set(nodes[nodes[:, 0] != NODE_KINDS.index("input"), 2].tolist())}
    return {layer.activation for layer in spec.layers[:-1]}


def _node_kinds(spec: NetworkSpec) -> set[str]:
    from nnzoo.nets.graph_spec import GraphSpec, NODE_KINDS
    return {NODE_KINDS[k] for k in set(spec.node_array[:, 0].tolist())} if isinstance(spec, GraphSpec) else set()


def _edge_kinds(spec: NetworkSpec) -> set[str]:
    from nnzoo.nets.graph_spec import EDGE_KINDS, GraphSpec
    return {EDGE_KINDS[k] for k in set(spec.edge_array[:, 2].tolist())} if isinstance(spec, GraphSpec) else set()


NORMALIZATIONS = ("layer", "entry", "none")
"""``data.normalize``: per (role, layer) statistics (equivariant), per entry (the DWSNets trainer), or raw weights."""


def check_normalize(normalize: str, allowed: Sequence[str] = NORMALIZATIONS) -> str:
    """Validate a ``data.normalize`` value up front, with a one-line error."""
    check_choice("data.normalize", normalize, allowed)
    return normalize


TASK_NAMES = ("classification", "regression", "editing")
"""What a dataset asks of a model: a class per network, a number per network, or a new network per network
(``editing``: the target is an image the edited INR should render, see :mod:`nnzoo.data.editing`)."""


@dataclass
class DataInfo:
    """What a model needs to know about a dataset; plain data, saved in checkpoints."""

    name: str
    task: str  # one of TASK_NAMES
    num_outputs: int  # classes for classification, 1 for regression and editing
    specs: tuple[NetworkSpec, ...]
    stats: dict[str, list[list[float]]] = field(default_factory=dict)
    class_names: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from nnzoo.nets.graph_spec import spec_from_dict
        self.specs = tuple(spec_from_dict(s) if isinstance(s, dict) else s for s in self.specs)
        if self.task not in TASK_NAMES:
            raise NnzooError(f"unknown task '{self.task}' (known: {', '.join(TASK_NAMES)})")
        if not self.specs:
            raise NnzooError(f"dataset '{self.name}' has no architectures")
        if len({(s.num_inputs, s.num_outputs) for s in self.specs}) > 1:
            raise NnzooError(f"dataset '{self.name}' mixes networks with different numbers of inputs/outputs; "
                             "positional embeddings and the readout need them equal")

    @property
    def homogeneous(self) -> bool:
        """One parameter layout for every network (flat-vector models can run)."""
        return same_layout(self.specs)

    @property
    def edge_kernel(self) -> tuple[int, int]:
        """Kernel size every edge feature is padded to (largest kernel in the dataset)."""
        return (max(s.max_kernel[0] for s in self.specs), max(s.max_kernel[1] for s in self.specs))

    @property
    def edge_dim(self) -> int:
        return self.edge_kernel[0] * self.edge_kernel[1]

    @property
    def node_roles(self) -> tuple[str, ...]:
        """Per-neuron tensors used as node features."""
        if any(s.has_norm for s in self.specs):
            return ("bias", *NORM_ROLES)
        return ("bias",)

    @property
    def coordinate_networks(self) -> bool:
        """True for MLPs on coordinates (INRs): they can be evaluated at probe points."""
        return all(not s.is_conv and s.input_kind == "coords" for s in self.specs)

    @property
    def network_inputs(self) -> int:
        return self.specs[0].num_inputs

    @property
    def network_outputs(self) -> int:
        return self.specs[0].num_outputs

    @property
    def max_hidden_groups(self) -> int:
        """Positional slots between inputs and outputs (hidden layers; a graph spec's shared neuron slots)."""
        return max(s.hidden_slots for s in self.specs)

    @property
    def num_pos_slots(self) -> int:
        """Rows of a positional-embedding table: inputs, one per hidden layer, outputs."""
        return self.network_inputs + self.max_hidden_groups + self.network_outputs

    def unseen_problem(self, spec: NetworkSpec) -> str | None:
        """Why a model trained on this dataset has learned nothing for some element of ``spec``, an
        architecture outside :attr:`specs`, or None when every element has a trained counterpart.

        A graph metanetwork reads any graph, but only what training gave it is learned: the input and output
        neurons' embeddings, the positional slots of hidden neurons, the edge features' kernel size, the
        per-(role, layer) standardisation and StatNN's per-layer features, the activations and the node and
        edge types.  Beyond those, a prediction would rest on untrained vectors or silently dropped tensors, so
        such an architecture is refused rather than extrapolated to."""
        from nnzoo.nets.graph_spec import GraphSpec
        graph = isinstance(spec, GraphSpec)
        if any(isinstance(s, GraphSpec) != graph for s in self.specs):
            return (f"it is a {'module graph' if graph else 'layer chain'}, the checkpoint's networks are "
                    f"{'layer chains' if graph else 'module graphs'}")
        first = self.specs[0]
        if (spec.num_inputs, spec.num_outputs) != (first.num_inputs, first.num_outputs) or \
                getattr(spec, "input_shape", ()) != getattr(first, "input_shape", ()) or \
                spec.input_kind != first.input_kind:
            shape = f" on inputs {tuple(first.input_shape)}" if graph else f" ({first.input_kind})"
            return (f"it has {spec.num_inputs} input and {spec.num_outputs} output neurons, the checkpoint's "
                    f"networks {first.num_inputs} and {first.num_outputs}{shape}")
        limits = [("hidden positional slots", spec.hidden_slots, self.max_hidden_groups),
                  ("layers (tensor groups)", spec.num_layers, max(s.num_layers for s in self.specs)),
                  ("kernel rows", spec.max_kernel[0], self.edge_kernel[0]),
                  ("kernel columns", spec.max_kernel[1], self.edge_kernel[1])]
        for what, theirs, ours in limits:
            if theirs > ours:
                return f"it has {theirs} {what}, the checkpoint's networks at most {ours}"
        if "entry" in self.stats and not any(s.num_params == spec.num_params for s in self.specs):
            return "the checkpoint standardises each weight entry of its own layout (data.normalize=entry)"
        for name, kinds in (("activation", _activations), ("neuron type", _node_kinds),
                            ("weight type", _edge_kinds)):
            new = kinds(spec) - set().union(*(kinds(s) for s in self.specs))
            if new:
                return f"its {name} {', '.join(sorted(new))} never occurs in the checkpoint's networks"
        if spec.has_norm and not any(s.has_norm for s in self.specs):
            return "it has normalisation layers, the checkpoint's networks none"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "num_outputs": self.num_outputs,
                "specs": [s.to_dict() for s in self.specs], "stats": self.stats,
                "class_names": self.class_names, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataInfo":
        return cls(**{**d, "specs": tuple(d["specs"])})
