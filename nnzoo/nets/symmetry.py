"""Hidden-neuron symmetries: reorderings of a network's neurons that leave its function unchanged.

Metanetworks claim invariance (or equivariance) to exactly these reorderings,
so tests and augmentations need to draw them, for MLPs and CNNs alike.
Reordering the neurons (channels) of a hidden group keeps the function when
the rows of the layer that produces them (weight, bias and BatchNorm tensors)
and the columns of the layer that reads them move together; that is
:func:`~nnzoo.nets.functional.permute_neurons`.  Two things restrict which
reorderings are symmetries:

* input and output neurons are ordered (pixel x vs. y, class 3 vs. 7);
* a residual ``(src, dst)`` adds channel ``c`` of group ``src`` to channel
  ``c`` of group ``dst`` for ``c < min(C_src, C_dst)``.  Such partner channels
  must move together, and the shared prefix must stay the prefix (a channel
  outside it must not move into it, or it would gain or lose the skip).  A
  channel tied to an input or output neuron through residuals is fixed.

A reordering is one index tensor per neuron group, ``perms[g]`` (group 0 =
inputs, group ``l + 1`` = outputs of layer ``l``), with the ``tensor[perm]``
convention of ``permute_neurons``: new neuron ``j`` is old neuron
``perms[g][j]``.  The matching node permutation of the network's graph
(:mod:`nnzoo.graphs` order: inputs, then each layer's outputs) has the same
convention: node states of the reordered network are ``states[node_perm]``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor

from nnzoo.errors import NnzooError
from nnzoo.nets.functional import permute_neurons
from nnzoo.nets.spec import NetworkSpec

Neuron = tuple[int, int]
"""``(group, index)`` of one neuron (channel)."""


def _residual_links(spec: NetworkSpec) -> list[tuple[int, int, int]]:
    """``(src, dst, shared)`` per residual: the first ``shared`` channels of both groups are partners."""
    widths = spec.widths
    return [(src, dst, min(widths[src], widths[dst])) for src, dst in spec.residuals]


def permutable_blocks(spec: NetworkSpec) -> list[list[tuple[Neuron, ...]]]:
    """The symmetry group of ``spec``, as blocks of interchangeable *tied neuron sets*.

    Residual partners are tied: a tied set holds the neurons (one per group,
    all with the same index) that must move as one.  Tied sets of one block
    cover the same groups and sit on the same side of every residual's shared
    prefix, so any reordering of a block is a symmetry, and every symmetry is a
    product of such reorderings.  Sets tied to an input or output neuron are
    left out (they are fixed), as are blocks of one set.  Each set lists its
    neurons by ascending group.
    """
    widths, last = spec.widths, len(spec.widths) - 1
    links = _residual_links(spec)
    parent: dict[Neuron, Neuron] = {}

    def find(n: Neuron) -> Neuron:
        while parent.get(n, n) != n:
            n = parent[n]
        return n

    for src, dst, shared in links:
        for c in range(shared):
            a, b = find((src, c)), find((dst, c))
            if a != b:
                parent[max(a, b)] = min(a, b)
    tied: dict[Neuron, list[Neuron]] = defaultdict(list)
    for g, width in enumerate(widths):
        for c in range(width):
            tied[find((g, c))].append((g, c))
    blocks: dict[tuple, list[tuple[Neuron, ...]]] = defaultdict(list)
    for members in tied.values():
        groups = frozenset(g for g, _ in members)
        if 0 in groups or last in groups:
            continue
        index = members[0][1]
        sides = tuple(index < shared for src, dst, shared in links if src in groups or dst in groups)
        blocks[(groups, sides)].append(tuple(sorted(members)))
    return sorted((sorted(block) for block in blocks.values() if len(block) > 1), key=lambda b: b[0])


def identity_permutation(spec: NetworkSpec) -> list[Tensor]:
    """``perms`` that move nothing."""
    return [torch.arange(w) for w in spec.widths]


def random_neuron_permutation(spec: NetworkSpec, generator: torch.Generator | None = None) -> list[Tensor]:
    """A uniformly random symmetry of ``spec``: one random reordering of every :func:`permutable_blocks` block."""
    perms = identity_permutation(spec)
    for block in permutable_blocks(spec):
        order = torch.randperm(len(block), generator=generator).tolist()
        for target, source in zip(block, (block[i] for i in order)):
            for (g, new), (_, old) in zip(target, source):
                perms[g][new] = old
    return perms


def is_symmetry(spec: NetworkSpec, perms: Sequence[Tensor]) -> bool:
    """Whether reordering the neurons by ``perms`` keeps the function of every network of ``spec``.

    Needs: one permutation per group, inputs and outputs unmoved, and for every
    residual the shared prefix mapped identically in both groups (the narrower
    group's values are below ``shared``, so the prefix then stays in place).
    """
    widths = spec.widths
    if len(perms) != len(widths):
        return False
    perms = [torch.as_tensor(p).cpu() for p in perms]
    for p, w in zip(perms, widths):
        if p.shape != (w,) or not torch.equal(torch.sort(p).values, torch.arange(w)):
            return False
    if not (torch.equal(perms[0], torch.arange(widths[0])) and torch.equal(perms[-1], torch.arange(widths[-1]))):
        return False
    for src, dst, shared in _residual_links(spec):
        if not torch.equal(perms[src][:shared], perms[dst][:shared]):
            return False
    return True


def permute_network(params: Tensor, spec: NetworkSpec, perms: Sequence[Tensor], check: bool = True) -> Tensor:
    """Reorder the hidden neurons of every network in ``params`` ``(B, P)`` by ``perms``.

    Rows of the producing layer (weight, bias, BatchNorm tensors) and columns
    of the reading layer move together, so with ``check`` (the default, which
    raises on a non-symmetry) every network computes the same function after.
    """
    if check and not is_symmetry(spec, perms):
        raise NnzooError(f"the neuron reordering is not a symmetry of {spec.describe()}: inputs/outputs moved "
                         "or residual partner channels reordered apart")
    for group in range(1, spec.num_layers):
        perm = torch.as_tensor(perms[group]).to(params.device)
        if not torch.equal(perm.cpu(), torch.arange(spec.widths[group])):
            params = permute_neurons(params, spec, group, perm)
    return params


def node_permutation(spec: NetworkSpec, perms: Sequence[Tensor]) -> Tensor:
    """``(num_nodes,)`` graph-node form of ``perms``: node states of the reordered network are ``states[result]``."""
    offsets = [0]
    for w in spec.widths[:-1]:
        offsets.append(offsets[-1] + w)
    return torch.cat([torch.as_tensor(p).cpu() + o for p, o in zip(perms, offsets)])


def random_symmetry(params: Tensor, spec: NetworkSpec,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Reorder each network of ``params`` ``(B, P)`` by its own random symmetry.

    Returns the reordered parameters and the ``(B * num_nodes,)`` node
    permutation of their graphs in :func:`~nnzoo.graphs.batch_to_graph` order
    (graph after graph), so equivariant node states satisfy
    ``states(reordered) == states(params)[node_perm]``.
    """
    rows, nodes = [], []
    for i in range(params.shape[0]):
        perms = random_neuron_permutation(spec, generator)
        rows.append(permute_network(params[i:i + 1], spec, perms, check=False))
        nodes.append(node_permutation(spec, perms) + i * spec.num_nodes)
    if not rows:
        return params, torch.zeros(0, dtype=torch.long, device=params.device)
    return torch.cat(rows), torch.cat(nodes).to(params.device)


def random_batch_symmetry(specs: Sequence[NetworkSpec], params: Sequence[Tensor],
                          generator: torch.Generator | None = None) -> tuple[list[Tensor], Tensor]:
    """:func:`random_symmetry` for a mixed-architecture batch (``params[g]`` of ``specs[g]``).

    The node permutation covers the whole batch graph, group after group as
    :func:`~nnzoo.graphs.batch_to_graph` numbers it.
    """
    out, nodes, offset = [], [], 0
    for spec, p in zip(specs, params):
        permuted, node_perm = random_symmetry(p, spec, generator)
        out.append(permuted)
        nodes.append(node_perm + offset)
        offset += p.shape[0] * spec.num_nodes
    return out, torch.cat(nodes) if nodes else torch.zeros(0, dtype=torch.long)
