"""DWS layers: the equivariant linear-plus-set layers of DWSNets, on MLP weight spaces.

Navon et al., "Equivariant Architectures for Learning in Deep Weight Spaces"
(ICML 2023), as implemented in the authors' code (github AvivNavon/DWSNets,
``nn/layers``): same sub-blocks, same widths, same initialisation, so the same
parameter count (552,650 for the MNIST-INR model of :mod:`nnzoo.models.dwsnet`)
and, with its weights copied over, the same outputs (checked to float32
round-off against the reference code).

Weight space.  An MLP with widths ``d_0, ..., d_M`` has weights ``W_0..W_{M-1}``
(axes: neuron groups ``i`` and ``i + 1``) and biases ``b_0..b_{M-1}`` (axis:
group ``i + 1``).  Hidden groups ``1..M-1`` can be permuted independently
without changing the function; the input and output groups are fixed.

Layout.  Every tensor is held as ``(B, *hidden axes in group order, fold * C)``:
its fixed input/output axis (``d_0`` of ``W_0``, ``d_M`` of ``W_{M-1}`` and
``b_{M-1}``) is folded into the channels, axis-major, since nothing permutes
it.  ``W_l`` is thus the transpose of PyTorch's ``(out, in)``.

A DWS layer maps every tensor to every tensor; the maps are grouped into four
blocks (weight->weight, bias->weight, bias->bias, weight->bias), one sub-block
per (source layer, target layer) pair.  What a sub-block does depends on the
hidden groups its two tensors share:

* two (an internal ``W_l`` to itself): :class:`KroneckerMap`, the Hartford et
  al. exchangeable-matrix layer: four channel MLPs on the entries, the
  column-pooled, the row-pooled and the fully pooled matrix, averaged;
* one (same-layer and successive-layer sub-blocks): :class:`SharedAxisMap`,
  the source pooled over its other hidden axis, then a set layer along the
  shared axis, Set-Transformer SAB (:class:`SelfAttentionSet`) or DeepSets
  (:class:`DeepSetsSet`), broadcast over the target's other hidden axis;
* none (non-neighbour sub-blocks, and ``b_{M-1}`` / ``W_{M-1}`` -> ``b_{M-1}``,
  which meet only on the fixed output group): :class:`PooledMap`, an MLP on
  the source pooled over all its hidden axes, broadcast over the target.

Fixed axes travel as channels: a sub-block reads all of its source's and
writes all of its target's, except two cases where the reference broadcasts
over ``d_M`` instead (:func:`writes_fixed_axes`).  The four blocks are summed
and divided by the number of tensors ``2M``.  Pooling is max (or mean / sum)
everywhere: inside sub-blocks, inside DeepSets and in the model's head.

Efficiency (the reference code takes ~26 s per step at batch 512 on 8 CPU
threads): every pool of a tensor is computed once per layer and shared by the
sub-blocks that read it; contributions are summed at their pooled shapes and
broadcast once into the target (no ``repeat``), the ``1/2M`` applied once per
target and broadcast pattern; the only full-size map, the entry-wise channel
map of an internal weight, is one GEMM with its scaling folded into the
weights; max pooling is ``amax`` with a one-pass backward (:class:`_MaxOver`);
the SAB's q/k/v projections are one matrix product and its attention is
PyTorch's fused ``scaled_dot_product_attention``.  What remains is mostly that
attention (about half of a CPU step) and the internal weights' full-size maps.

Deviations from the reference code: input MLPs with fewer than three layers
are refused (the reference asserts the same); the down-sampling layer for wide
inputs (``input_dim_downsample``), skip connections (``add_skip``) and
attention pooling are not implemented (all off in its MNIST configuration);
an SAB width that is not a multiple of ``heads`` is refused (the reference
fails inside the attention); at exact ties, the max-pooling gradient goes to
every tied entry rather than to one (ties only arise among ReLU zeros, whose
gradient the ReLU zeroes anyway, so training is unaffected).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnzoo.errors import NnzooError, check_choice

REDUCTIONS = ("max", "mean", "sum")
SET_LAYERS = ("sab", "ds")
BLOCKS = ("weight_to_weight", "bias_to_weight", "bias_to_bias", "weight_to_bias")
"""The paper's four blocks, each a ``ModuleDict`` of sub-blocks keyed ``"<source layer>_to_<target layer>"``."""
RELATIONS = ("same", "successive", "non_neighbour")


# ------------------------------------------------------------------ weight space
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

    def size(self, group: int) -> int:
        return self.set_sizes[self.sets.index(group)]


def weight_space(widths: Sequence[int]) -> tuple[WeightSpaceTensor, ...]:
    """The ``2M`` tensors ``W_0, b_0, W_1, b_1, ...`` of an MLP with neuron ``widths``."""
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


def relation(source: WeightSpaceTensor, target: WeightSpaceTensor) -> str:
    """``same`` layer, ``successive`` layers (tensors sharing a neuron group) or ``non_neighbour``."""
    if source.layer == target.layer:
        return "same"
    return "successive" if set(source.groups) & set(target.groups) else "non_neighbour"


def writes_fixed_axes(source: WeightSpaceTensor, target: WeightSpaceTensor, layers: int) -> bool:
    """Whether a sub-block writes its target's fixed output axis ``d_M`` (True) or broadcasts over it.

    The reference broadcasts over ``d_M`` in two sub-blocks into the last
    weight ``W_{M-1}``: from ``W_{M-2}`` (successive) and from biases
    ``b_l``, ``l <= M-3`` (non-neighbour).  Both are reproduced; with
    ``d_M = 1`` (INRs) there is no difference.
    """
    if target.role != "weight" or target.layer != layers - 1:
        return True
    if source.role == "weight":
        return source.layer != layers - 2
    return source.layer >= layers - 2


# ------------------------------------------------------------------ building blocks
class _MaxOver(torch.autograd.Function):
    """``amax`` over ``dims`` whose backward is one masked copy of the gradient.

    PyTorch's ``max(dim)`` computes indices (slow on middle axes) and ``amax``'s
    backward divides by the number of ties (several full-size passes).  Here
    the gradient goes to every entry equal to the maximum: the same as both
    except at exact ties, which in a DWSNet only occur among ReLU zeros, whose
    gradient the ReLU zeroes anyway.  No index tensor is stored.
    """

    @staticmethod
    def forward(ctx, x: Tensor, dims: tuple[int, ...], keepdim: bool) -> Tensor:  # type: ignore[override]
        y = x.amax(dim=dims, keepdim=True)
        ctx.save_for_backward(x, y)
        ctx.dims = dims
        return y if keepdim else y.squeeze(dims)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, y = ctx.saved_tensors
        if grad.dim() < x.dim():
            for d in sorted(ctx.dims):
                grad = grad.unsqueeze(d)
        return torch.where(x == y, grad, 0.0), None, None


def reduce(x: Tensor, dims: Sequence[int], how: str, keepdim: bool = False) -> Tensor:
    """Pool ``x`` over ``dims`` with ``how`` in :data:`REDUCTIONS`."""
    dims = tuple(d % x.dim() for d in dims)
    if how == "max":
        return _MaxOver.apply(x, dims, keepdim) if torch.is_grad_enabled() and x.requires_grad \
            else x.amax(dim=dims, keepdim=keepdim)
    if how == "mean":
        return x.mean(dim=dims, keepdim=keepdim)
    return x.sum(dim=dims, keepdim=keepdim)


def channel_mlp(in_features: int, out_features: int, depth: int = 1, bias: bool = True) -> nn.Sequential:
    """``depth`` linear maps ``in -> out -> ... -> out`` with ReLU between them."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features, bias=bias)]
    for _ in range(depth - 1):
        layers += [nn.ReLU(), nn.Linear(out_features, out_features, bias=bias)]
    return nn.Sequential(*layers)


def run_mlp(mlp: nn.Sequential, x: Tensor, scale: float = 1.0) -> Tensor:
    """``scale * mlp(x)`` with the scale folded into the last linear map (no extra pass over the output)."""
    if scale == 1.0:
        return mlp(x)
    for layer in mlp[:-1]:
        x = layer(x)
    last = mlp[-1]
    return F.linear(x, last.weight * scale, None if last.bias is None else last.bias * scale)


def dws_init_(weight: Tensor, bias: Tensor | None, scale: float = 1.0) -> None:
    """The reference initialisation of a ``(fan_out, fan_in)`` linear map inside a DWS layer.

    Xavier-normal scaled by ``sqrt(2 fan_in / fan_out)``, i.e. a normal of std
    ``2 sqrt(fan_in / (fan_out (fan_in + fan_out)))``, times ``scale``;
    biases uniform in ``±1e-4``.
    """
    fan_out, fan_in = weight.shape
    with torch.no_grad():
        weight.normal_(0.0, scale * 2.0 * math.sqrt(fan_in / (fan_out * (fan_in + fan_out))))
        if bias is not None:
            bias.uniform_(-1e-4, 1e-4)


class SelfAttentionSet(nn.Module):
    """Set-Transformer SAB without layer norm, ``(B, n, in) -> (B, n, out)``, equivariant in ``n``.

    ``O = Q + softmax(Q K^T / sqrt(out)) V`` per head (``Q, K, V`` linear in
    the input; the scale uses the full width ``out``, as the Set Transformer
    code does), then ``O + relu(W O + c)``.
    """

    def __init__(self, in_features: int, out_features: int, heads: int) -> None:
        super().__init__()
        if heads < 1 or out_features % heads:
            raise NnzooError(f"a set-attention map of width {out_features} cannot be split into {heads} heads; "
                             "make the DWSNet width (hidden) a multiple of heads")
        self.heads = heads
        self.out_features = out_features
        self.qkv = nn.Linear(in_features, 3 * out_features)  # q, k, v stacked
        self.feedforward = nn.Linear(out_features, out_features)

    def reset_parameters(self, scale: float = 1.0) -> None:
        for part in range(3):
            rows = slice(part * self.out_features, (part + 1) * self.out_features)
            dws_init_(self.qkv.weight[rows], self.qkv.bias[rows], scale)
        dws_init_(self.feedforward.weight, self.feedforward.bias, scale)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)

        def split(t: Tensor) -> Tensor:  # (B, n, out) -> (B, heads, n, out / heads)
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        attended = F.scaled_dot_product_attention(split(q), split(k), split(v),
                                                  scale=1.0 / math.sqrt(self.out_features))
        o = q + attended.transpose(1, 2).reshape(b, n, self.out_features)
        return o + F.relu(self.feedforward(o))


class DeepSetsSet(nn.Module):
    """DeepSets layer ``(B, n, in) -> (B, n, out)``: ``f(x_i) - g(pool_j x_j)`` with channel MLPs ``f``, ``g``."""

    def __init__(self, in_features: int, out_features: int, reduction: str, depth: int = 1) -> None:
        super().__init__()
        self.reduction = reduction
        self.each = channel_mlp(in_features, out_features, depth, bias=True)
        self.pooled = channel_mlp(in_features, out_features, depth, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.each(x) - self.pooled(reduce(x, (1,), self.reduction, keepdim=True))


def set_layer(kind: str, in_features: int, out_features: int, heads: int, reduction: str,
              depth: int) -> nn.Module:
    if kind == "sab":
        return SelfAttentionSet(in_features, out_features, heads)
    return DeepSetsSet(in_features, out_features, reduction, depth)


# ------------------------------------------------------------------ sub-blocks
Pooled = Callable[[int, tuple[int, ...]], Tensor]
"""``pooled(tensor index, kept hidden groups)``: a layer input pooled over its other hidden axes."""
Contribution = tuple[tuple[int, ...], Tensor, bool]
"""``(hidden groups kept, tensor in the target's layout with singleton axes elsewhere, already scaled)``."""


class SubBlock(nn.Module):
    """One map ``source tensor -> target tensor`` of a DWS layer.

    ``contributions`` returns ``(kept groups, tensor, scaled)`` triples, each
    tensor shaped like the target with singleton axes where it is broadcast;
    the layer sums them and multiplies by ``scale`` those not ``scaled`` yet
    (once per target and broadcast pattern, not once per sub-block).
    """

    def __init__(self, space: Sequence[WeightSpaceTensor], source: int, target: int) -> None:
        super().__init__()
        self.source, self.target = source, target
        self.relation = relation(space[source], space[target])
        self._target = space[target]

    def _place(self, y: Tensor, kept: tuple[int, ...]) -> Tensor:
        """``(B, *kept axes, F)`` -> target layout with singleton axes for the hidden groups not kept."""
        t = self._target
        return y.reshape(y.shape[0], *(n if g in kept else 1 for g, n in zip(t.sets, t.set_sizes)), y.shape[-1])

    def contributions(self, pooled: Pooled, scale: float) -> list[Contribution]:
        raise NotImplementedError


class SharedAxisMap(SubBlock):
    """Tensors sharing one hidden group: a set layer along it (same-layer and successive sub-blocks)."""

    def __init__(self, space: Sequence[WeightSpaceTensor], source: int, target: int, group: int,
                 in_channels: int, out_channels: int, kind: str, heads: int, reduction: str, depth: int,
                 write_fixed: bool) -> None:
        super().__init__(space, source, target)
        self.kept = (group,)
        self.spread = 1 if write_fixed else space[target].fold  # copies over the target's fixed axis
        out_fold = space[target].fold if write_fixed else 1
        self.set = set_layer(kind, space[source].fold * in_channels, out_fold * out_channels, heads, reduction,
                             depth)

    def contributions(self, pooled: Pooled, scale: float) -> list[Contribution]:
        y = self.set(pooled(self.source, self.kept))
        if self.spread > 1:
            y = y.unsqueeze(-2).expand(*y.shape[:-1], self.spread, y.shape[-1]).flatten(-2)
        return [(self.kept, self._place(y, self.kept), False)]


class PooledMap(SubBlock):
    """Tensors sharing no hidden group: an MLP on the source pooled over its hidden axes, broadcast."""

    def __init__(self, space: Sequence[WeightSpaceTensor], source: int, target: int, in_channels: int,
                 out_channels: int, depth: int, write_fixed: bool) -> None:
        super().__init__(space, source, target)
        self.spread = 1 if write_fixed else space[target].fold
        out_fold = space[target].fold if write_fixed else 1
        self.map = channel_mlp(space[source].fold * in_channels, out_fold * out_channels, depth)

    def contributions(self, pooled: Pooled, scale: float) -> list[Contribution]:
        y = self.map(pooled(self.source, ()))
        if self.spread > 1:
            y = y.unsqueeze(-2).expand(*y.shape[:-1], self.spread, y.shape[-1]).flatten(-2)
        return [((), self._place(y, ()), False)]


class KroneckerMap(SubBlock):
    """An internal weight to itself: channel MLPs on its entries, its column and row pools and its total pool.

    ``(entries + columns + rows + total) / 4``, each pooled term broadcast back
    over the axes it pooled (Hartford et al. 2018).  ``columns`` reads the
    matrix pooled over its rows (one value per column), ``rows`` the converse.
    """

    def __init__(self, space: Sequence[WeightSpaceTensor], index: int, in_channels: int, out_channels: int,
                 depth: int) -> None:
        super().__init__(space, index, index)
        self.entries = channel_mlp(in_channels, out_channels, depth)
        self.columns = channel_mlp(in_channels, out_channels, depth)
        self.rows = channel_mlp(in_channels, out_channels, depth)
        self.total = channel_mlp(in_channels, out_channels, depth)

    def contributions(self, pooled: Pooled, scale: float) -> list[Contribution]:
        """The entry-wise map, the only full-size one, comes scaled (``scale / 4`` folded into its weights)."""
        row_group, column_group = self._target.sets
        x = pooled(self.source, (row_group, column_group))
        out: list[Contribution] = []
        if len(self.entries) == 1:  # one GEMM without bias; the constant bias joins the fully pooled term
            linear = self.entries[0]
            out.append(((row_group, column_group), F.linear(x, linear.weight * (scale / 4)), True))
            out.append(((), (linear.bias * 0.25).view(1, 1, 1, -1), False))
        else:
            out.append(((row_group, column_group), run_mlp(self.entries, x, scale / 4), True))
        for kept, mlp in (((column_group,), self.columns), ((row_group,), self.rows), ((), self.total)):
            out.append((kept, self._place(mlp(pooled(self.source, kept)) * 0.25, kept), False))
        return out


# ------------------------------------------------------------------ the layer
class DWSLayer(nn.Module):
    """Equivariant map between MLP weight spaces, ``in_channels`` -> ``out_channels`` per entry.

    ``xs[i]`` is ``(B, *space[i].set_sizes, space[i].fold * channels_i)``;
    ``in_channels`` may differ per tensor (e.g. several per-neuron tensors
    stacked as bias channels).  Options as in the reference: ``set_layer``
    (``sab`` | ``ds``), ``heads`` (SAB), ``reduction`` (``max`` | ``mean`` |
    ``sum``), ``fc_layers`` (linear maps per MLP; the reference keeps one in
    the non-neighbour bias<->weight sub-blocks whatever it is),
    ``adjacent_only`` (drop the non-neighbour sub-blocks: the reference's
    ``diagonal``), ``init_scale``.
    """

    def __init__(self, space: Sequence[WeightSpaceTensor], in_channels: int | Sequence[int], out_channels: int,
                 *, set_layer: str = "sab", heads: int = 8, reduction: str = "max", fc_layers: int = 1,
                 adjacent_only: bool = False, init_scale: float = 1.0) -> None:
        super().__init__()
        self.space = tuple(space)
        layers = len(self.space) // 2
        if layers < 3 or any(t.role != ("weight", "bias")[i % 2] for i, t in enumerate(self.space)):
            raise NnzooError(f"a DWS layer needs the weight space of an MLP with at least 3 layers "
                             f"(as the reference), got {layers}")
        check_choice("set_layer", set_layer, SET_LAYERS)
        check_choice("reduction", reduction, REDUCTIONS)
        if fc_layers < 1:
            raise NnzooError(f"fc_layers must be >= 1, got {fc_layers}")
        ins = [in_channels] * len(self.space) if isinstance(in_channels, int) else list(in_channels)
        if len(ins) != len(self.space):
            raise NnzooError(f"DWSLayer got {len(ins)} input channel counts for {len(self.space)} tensors")
        self.reduction = reduction
        self.out_channels = out_channels
        for block in BLOCKS:
            source_role, target_role = block.split("_to_")
            subs = nn.ModuleDict()
            for i in range(layers):
                for j in range(layers):
                    s = 2 * i + (source_role == "bias")
                    t = 2 * j + (target_role == "bias")
                    source, target = self.space[s], self.space[t]
                    kind = relation(source, target)
                    if adjacent_only and kind == "non_neighbour":
                        continue
                    shared = [g for g in source.sets if g in target.sets]
                    write = writes_fixed_axes(source, target, layers)
                    if len(shared) == 2:
                        sub: SubBlock = KroneckerMap(self.space, s, ins[s], out_channels, fc_layers)
                    elif shared:
                        sub = SharedAxisMap(self.space, s, t, shared[0], ins[s], out_channels, set_layer, heads,
                                            reduction, fc_layers, write)
                    else:
                        depth = 1 if kind == "non_neighbour" and source_role != target_role else fc_layers
                        sub = PooledMap(self.space, s, t, ins[s], out_channels, depth, write)
                    subs[f"{i}_to_{j}"] = sub
            self.add_module(block, subs)
        self.reset_parameters(init_scale)

    def blocks(self) -> dict[str, nn.ModuleDict]:
        return {name: getattr(self, name) for name in BLOCKS}

    def sub_blocks(self) -> list[SubBlock]:
        return [sub for block in self.blocks().values() for sub in block.values()]  # type: ignore[misc]

    def reset_parameters(self, scale: float = 1.0) -> None:
        """Every linear map gets :func:`dws_init_` (q, k and v separately, as three maps)."""
        attention = [m for m in self.modules() if isinstance(m, SelfAttentionSet)]
        done = {id(linear) for m in attention for linear in (m.qkv, m.feedforward)}
        for m in attention:
            m.reset_parameters(scale)
        for module in self.modules():
            if isinstance(module, nn.Linear) and id(module) not in done:
                dws_init_(module.weight, module.bias, scale)

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        """``xs[i]``: ``(B, *space[i].set_sizes, in_size_i)`` -> same layout with ``out_channels``."""
        cache: dict[tuple[int, tuple[int, ...]], Tensor] = {}

        def pooled(index: int, kept: tuple[int, ...]) -> Tensor:
            tensor = self.space[index]
            if kept == tensor.sets:
                return xs[index]
            if (index, kept) not in cache:  # one axis at a time, from the pool that keeps one group more
                dropped = [g for g in tensor.sets if g not in kept]
                parents = [tuple(sorted((*kept, g))) for g in dropped]
                parent = next((p for p in parents if (index, p) in cache), parents[0])
                group = next(g for g in parent if g not in kept)
                cache[index, kept] = reduce(pooled(index, parent), (1 + parent.index(group),), self.reduction)
            return cache[index, kept]

        scale = 1.0 / len(self.space)
        sums: list[tuple[dict[tuple[int, ...], Tensor], dict[tuple[int, ...], Tensor]]] = [({}, {}) for _ in self.space]
        for sub in self.sub_blocks():
            for kept, y, scaled in sub.contributions(pooled, scale):
                bucket = sums[sub.target][scaled]
                bucket[kept] = y if kept not in bucket else bucket[kept] + y
        return [self._combine(unscaled, scaled, tensor, scale) for (unscaled, scaled), tensor in zip(sums, self.space)]

    @staticmethod
    def _combine(unscaled: dict[tuple[int, ...], Tensor], scaled: dict[tuple[int, ...], Tensor],
                 tensor: WeightSpaceTensor, scale: float) -> Tensor:
        """``scale * sum(unscaled) + sum(scaled)`` for one tensor, with as few full-size passes as possible.

        The broadcast (pooled-shape) terms are scaled and summed first, the
        constant one folded into a one-axis one; then one or two adds reach
        the full size.
        """
        full = tensor.sets
        small: dict[tuple[int, ...], Tensor] = {k: v * scale for k, v in unscaled.items() if k != full}
        for k, v in scaled.items():
            if k != full:
                small[k] = small[k] + v if k in small else v
        partial = [k for k in small if k]
        if () in small and partial:
            small[partial[0]] = small[partial[0]] + small.pop(())
        rest = list(small.values())
        big_unscaled, big_scaled = unscaled.get(full), scaled.get(full)
        if big_unscaled is None and big_scaled is None:  # no whole-tensor term (adjacent_only keeps same-layer ones)
            raise NnzooError(f"no DWS sub-block writes the whole {tensor.role} {tensor.layer}")
        if big_unscaled is not None and big_scaled is None:
            # one pass: scale the full-size sum while adding the first broadcast term
            out = torch.add(rest.pop(0), big_unscaled, alpha=scale) if rest else big_unscaled * scale
        else:
            out = big_scaled if big_unscaled is None else torch.add(big_scaled, big_unscaled, alpha=scale)
            if rest:
                out = out + rest.pop(0)  # a fresh tensor (not a view: in-place adds on views are costly) ...
        for part in rest:
            out += part  # ... that the next adds may update in place
        shape = (out.shape[0], *tensor.set_sizes, out.shape[-1])
        return out if tuple(out.shape) == shape else out.expand(shape)
