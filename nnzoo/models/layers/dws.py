"""The DWS layer: every linear map on MLP weight spaces that commutes with hidden-neuron permutations.

Navon et al., "Equivariant Architectures for Learning in Deep Weight Spaces"
(ICML 2023).  An MLP with widths ``n_0, ..., n_L`` has ``2L`` tensors: weight
``W_l`` with axes (neurons of group ``l``, neurons of group ``l + 1``) and
bias ``b_l`` with axis (neurons of group ``l + 1``).  Reordering the neurons of
a *hidden* group ``1..L-1`` (rows of ``W_{l-1}`` and ``b_{l-1}``, columns of
``W_l``) leaves the function unchanged; input and output neurons are ordered.

Representation.  Every tensor is held as ``(B, *permutable axes, channels)``
with its axes in ascending group order (``W_l`` is the transpose of PyTorch's
``(out, in)``) and its fixed input/output axes folded into the channels, since
nothing permutes them.

The basis.  Each group is permuted independently and no tensor has two axes on
one group, so an equivariant linear map ``X -> Y`` is a product of per-group
maps: on a group shared by ``X`` and ``Y`` it is identity or mean-then-
broadcast, on any other group pooling or broadcasting.  Hence one dense channel
map per subset ``K`` of the shared groups: mean-pool ``X`` over its groups not
in ``K``, mix channels, broadcast over ``Y``'s groups not in ``K``.  Summed over
all ``(X, Y)`` pairs this yields the paper's weight-to-weight, bias-to-weight,
bias-to-bias and weight-to-bias blocks; same-layer, successive-layer and
non-neighbour sub-blocks differ only in which groups are shared.

Deviations from the paper: no DeepSets/Set-Transformer sub-blocks (fixed axes
are folded into channels and mixed densely), mean pooling only, and no
down-sampling layer for wide inputs; the sum over input tensors is not divided
by their number (see :class:`DWSLayer`).  ``X -> Y`` pairs with the same ``K`` share
one ``nn.Linear`` over the concatenated channels: the same set of maps and the
same parameter count as one map per pair, but one matrix product per ``K``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, combinations

import torch
from torch import Tensor, nn

from nnzoo.errors import NnzooError


@dataclass(frozen=True)
class WeightSpaceTensor:
    """How one weight or bias tensor of an MLP sits in the weight space.

    ``groups`` are the neuron groups of its axes, ascending; ``sets`` the
    permutable ones among them (with their sizes in ``set_sizes``); ``fold`` is
    the product of the sizes of the fixed axes, which live in the channels.
    """

    role: str  # "weight" | "bias"
    layer: int
    groups: tuple[int, ...]
    sets: tuple[int, ...]
    set_sizes: tuple[int, ...]
    fold: int

    def fold_fixed_axes(self, x: Tensor) -> Tensor:
        """``(B, *axes in group order, C)`` -> ``(B, *permutable axes, fold * C)``."""
        fixed = [1 + i for i, g in enumerate(self.groups) if g not in self.sets]
        if not fixed:
            return x
        last = x.dim() - 1
        x = x.movedim(fixed, list(range(last - len(fixed), last)))
        return x.flatten(last - len(fixed))


def weight_space(widths: Sequence[int]) -> tuple[WeightSpaceTensor, ...]:
    """The ``2L`` tensors ``W_0, b_0, W_1, b_1, ...`` of an MLP with neuron ``widths``."""
    if len(widths) < 2 or min(widths) < 1:
        raise NnzooError(f"an MLP weight space needs at least two positive widths, got {list(widths)}")
    last = len(widths) - 1

    def describe(role: str, layer: int, groups: tuple[int, ...]) -> WeightSpaceTensor:
        sets = tuple(g for g in groups if 0 < g < last)
        fold = 1
        for g in groups:
            fold *= 1 if g in sets else widths[g]
        return WeightSpaceTensor(role, layer, groups, sets, tuple(widths[g] for g in sets), fold)

    tensors = []
    for layer in range(last):
        tensors += [describe("weight", layer, (layer, layer + 1)), describe("bias", layer, (layer + 1,))]
    return tuple(tensors)


def _subsets(items: tuple[int, ...]) -> list[tuple[int, ...]]:
    return list(chain.from_iterable(combinations(items, r) for r in range(len(items) + 1)))


class DWSLayer(nn.Module):
    """Equivariant linear map between weight spaces with ``in_channels`` -> ``out_channels`` per entry.

    ``in_channels`` may differ per tensor (e.g. the first layer reads one
    channel per weight but several per-neuron tensors per bias).

    Normalisation: the paper divides the sum over the ``2M`` input tensors by
    ``2M``.  Here each ``nn.Linear`` reads all its input tensors at once, so its
    fan-in initialisation (``1 / sqrt(total channels)``) already averages them;
    dividing once more shrank activations about 7x per layer at initialisation
    (an untrained 5-layer model gave the same output for every network).
    """

    def __init__(self, space: Sequence[WeightSpaceTensor], in_channels: int | Sequence[int],
                 out_channels: int) -> None:
        super().__init__()
        self.space = tuple(space)
        ins = [in_channels] * len(self.space) if isinstance(in_channels, int) else list(in_channels)
        if len(ins) != len(self.space):
            raise NnzooError(f"DWSLayer got {len(ins)} input channel counts for {len(self.space)} tensors")
        self.in_sizes = [t.fold * c for t, c in zip(self.space, ins)]
        self.out_sizes = [t.fold * out_channels for t in self.space]
        subsets = sorted({k for t in self.space for k in _subsets(t.sets)}, key=lambda k: (len(k), k))
        # tensors reading from / writing to subset K are the same: those whose permutable groups contain K
        self.subsets = subsets
        self.members = [[i for i, t in enumerate(self.space) if set(k) <= set(t.sets)] for k in subsets]
        # one shared bias per output entry comes from the fully pooled map (K = ())
        self.maps = nn.ModuleList(
            nn.Linear(sum(self.in_sizes[i] for i in members), sum(self.out_sizes[i] for i in members),
                      bias=len(k) == 0)
            for k, members in zip(subsets, self.members))

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        """``xs[i]``: ``(B, *space[i].set_sizes, in_size_i)`` -> same layout with ``out_size_i`` channels."""
        outs: list[Tensor | None] = [None] * len(self.space)
        pools: dict[tuple[int, tuple[int, ...]], Tensor] = {}
        for k, members, linear in zip(self.subsets, self.members, self.maps):
            inputs = [self._pool(xs, pools, i, k) for i in members]
            mixed = linear(inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1))
            for i, part in zip(members, mixed.split([self.out_sizes[i] for i in members], dim=-1)):
                part = self._unsqueeze(part, self.space[i], k)
                outs[i] = part if outs[i] is None else outs[i] + part
        return outs  # type: ignore[return-value]  (every tensor receives at least its K = sets map)

    def _pool(self, xs: Sequence[Tensor], pools: dict[tuple[int, tuple[int, ...]], Tensor], index: int,
              keep: tuple[int, ...]) -> Tensor:
        """Mean of ``xs[index]`` over its permutable axes not in ``keep`` (the others stay in group order).

        One axis at a time from the cached pool that keeps one group more, so a
        wide tensor is read once however many subsets pool it; ``sum * 1/n``
        rather than ``mean`` because its backward is a broadcast, not a full-size division.
        """
        tensor = self.space[index]
        if keep == tensor.sets:
            return xs[index]
        if (index, keep) not in pools:
            group = next(g for g in tensor.sets if g not in keep)
            parent = tuple(sorted((*keep, group)))
            pooled = self._pool(xs, pools, index, parent).sum(dim=1 + parent.index(group))
            pools[index, keep] = pooled * (1.0 / tensor.set_sizes[tensor.sets.index(group)])
        return pools[index, keep]

    @staticmethod
    def _unsqueeze(x: Tensor, tensor: WeightSpaceTensor, kept: tuple[int, ...]) -> Tensor:
        """Singleton axes where ``tensor`` has groups outside ``kept`` (broadcast by the sum)."""
        shape = [x.shape[0], *(n if g in kept else 1 for g, n in zip(tensor.sets, tensor.set_sizes)), x.shape[-1]]
        return x.reshape(shape)
