"""Run, initialise and (de)serialise many networks of one spec at once.

All functions take a batch of flat parameter vectors ``(B, P)`` and work on the
whole batch with batched matrix products, so fitting 1,000 SIRENs or computing
probe features for a mini-batch costs one ``baddbmm`` per layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from nnzoo.errors import NnzooError
from nnzoo.nets.spec import NetworkSpec


def unflatten(params: Tensor, spec: NetworkSpec) -> list[dict[str, Tensor]]:
    """Views of ``params`` ``(B, P)`` as per-layer ``{role: (B, *shape)}`` dicts (no copy)."""
    if params.shape[-1] != spec.num_params:
        raise NnzooError(f"expected {spec.num_params} parameters for {spec.describe()}, "
                         f"got {params.shape[-1]}")
    batch = params.shape[:-1]
    layers: list[dict[str, Tensor]] = [{} for _ in spec.layers]
    for s in spec.slots:
        layers[s.layer][s.role] = params[..., s.start:s.end].reshape(*batch, *s.shape)
    return layers


def flatten(layers: list[dict[str, Tensor]], spec: NetworkSpec) -> Tensor:
    """Inverse of :func:`unflatten`: per-layer tensors ``(B, *shape)`` to ``(B, P)``."""
    parts = []
    for s in spec.slots:
        t = layers[s.layer][s.role]
        parts.append(t.reshape(*t.shape[: t.dim() - len(s.shape)], s.numel))
    return torch.cat(parts, dim=-1)


def activation(name: str, x: Tensor, w0: float = 30.0) -> Tensor:
    """Apply a named activation; ``sine`` is ``sin(w0 * x)``."""
    if name == "none":
        return x
    if name == "sine":
        return torch.sin(w0 * x)
    if name == "leaky_relu":
        return F.leaky_relu(x)
    fn = {"relu": torch.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh,
          "sigmoid": torch.sigmoid}.get(name)
    if fn is None:
        raise NnzooError(f"unknown activation '{name}'")
    return fn(x)


def mlp_forward(params: Tensor, spec: NetworkSpec, inputs: Tensor,
                return_hidden: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Evaluate ``B`` MLPs of ``spec`` on inputs ``(K, in)`` (shared) or ``(B, K, in)``.

    Returns outputs ``(B, K, out)`` (plus ``spec.output_offset``); with
    ``return_hidden`` also the post-activation output of every layer, the last
    one included, which is what probe features are made of.
    """
    if spec.is_conv:
        raise NnzooError("mlp_forward got a convolutional spec; use cnn_forward")
    layers = unflatten(params, spec)
    batch = params.shape[0]
    h = inputs if inputs.dim() == 3 else inputs.unsqueeze(0).expand(batch, -1, -1)
    hidden = []
    last = len(spec.layers) - 1
    for i, (layer, tensors) in enumerate(zip(spec.layers, layers)):
        weight_t = tensors["weight"].transpose(1, 2)  # (B, in, out)
        bias = tensors.get("bias")
        bias = bias.unsqueeze(1) if bias is not None else h.new_zeros(batch, 1, layer.out_features)
        if layer.activation == "sine":  # fold w0 into the fused multiply-add
            h = torch.sin(torch.baddbmm(bias, h, weight_t, beta=spec.w0, alpha=spec.w0))
        else:
            h = activation(layer.activation, torch.baddbmm(bias, h, weight_t), spec.w0)
        if i == last and spec.output_offset:
            h = h + spec.output_offset
        hidden.append(h)
    return (h, hidden) if return_hidden else h


def siren_init(num: int, spec: NetworkSpec, generator: torch.Generator | None = None,
               scheme: str = "siren") -> Tensor:
    """Initial flat parameters for ``num`` SIRENs.

    ``scheme="siren"`` (Sitzmann et al.): first layer ``U(+-1/fan_in)``, later
    layers ``U(+-sqrt(6/fan_in)/w0)``, zero biases.  The wide first layer is what
    lets a 2-32-32-1 SIREN reach 40 dB on a 28x28 digit in ~150 Adam steps.
    ``scheme="dws"`` reproduces the DWSNets INR class exactly: *every* sine layer
    uses ``U(+-sqrt(6/fan_in)/w0)`` (``is_first`` is never set there), zero sine
    biases, and the final ``nn.Linear`` keeps PyTorch's default init.  It fits
    far more slowly (about 29 dB after 1,000 steps).
    """
    if scheme not in ("siren", "dws"):
        raise NnzooError(f"unknown SIREN init '{scheme}'; use 'siren' or 'dws'")
    params = torch.zeros(num, spec.num_params)
    last = spec.num_layers - 1
    for s in spec.slots:
        fan_in = s.shape[1] * math.prod(s.shape[2:]) if s.role == "weight" else spec.layers[s.layer].in_features
        if scheme == "dws" and s.layer == last:  # nn.Linear default: U(+-1/sqrt(fan_in)) for W and b
            bound = 1.0 / math.sqrt(fan_in)
        elif s.role != "weight":
            continue
        elif scheme == "siren" and s.layer == 0:
            bound = 1.0 / fan_in
        else:
            bound = math.sqrt(6.0 / fan_in) / spec.w0
        params[:, s.start:s.end].uniform_(-bound, bound, generator=generator)
    return params


# ----------------------------------------------------------------- state dicts

_STAT_SUFFIXES = ("running_mean", "running_var")
_SUFFIXES = (*_STAT_SUFFIXES, "weight", "bias")


def _suffix(key: str) -> str | None:
    """Which of ``running_mean``/``running_var``/``weight``/``bias`` a key ends in (``None``: no role name)."""
    if key.endswith(_SUFFIXES):
        for suffix in _SUFFIXES:
            if key.endswith(suffix):
                return suffix
    return None


def _module(key: str, suffix: str) -> str:
    """The module a tensor belongs to: its key minus the role name (``seq.0.weight`` -> ``seq.0``)."""
    return key[: len(key) - len(suffix)].rstrip("._")


def tensor_entries(state_dict: Mapping[str, object]) -> list[tuple[str, Tensor]]:
    """The parameter tensors of a state dict in file order: ``*weight``, ``*bias`` and BatchNorm's
    ``*running_mean``/``*running_var`` (other keys, e.g. ``label`` or ``num_batches_tracked``, skipped)."""
    return [(k, v) for k, v in state_dict.items() if isinstance(v, Tensor) and _suffix(k) is not None]


def _unnamed_entries(state_dict: Mapping[str, object]) -> list[tuple[str, Tensor]]:
    """Floating-point tensors in file order, for state dicts whose keys name no role (position fallback)."""
    return [(str(k), v) for k, v in state_dict.items() if isinstance(v, Tensor) and v.is_floating_point()]


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def infer_mlp_widths(state_dict: Mapping[str, object], source: str | Path = "state dict") -> list[int]:
    """Widths ``[in, h1, ..., out]`` of the MLP stored in a state dict.

    Layer weights are the ``*weight`` entries in file order (any key style: ``seq.0.weight``,
    ``net.0.linear.weight``, all weights before all biases...); keys without role names are read
    by position (2-D tensors in file order).
    """
    from nnzoo.checks import check_plain_tensors
    check_plain_tensors(state_dict, source)
    entries = tensor_entries(state_dict)
    weights = ([(k, v) for k, v in entries if _suffix(k) == "weight"] if entries else
               [(k, v) for k, v in _unnamed_entries(state_dict) if v.dim() == 2])
    bad = next((k for k, v in weights if v.dim() != 2), None)
    if not weights or bad is not None:
        found = f"tensor '{bad}' has shape {_shape(dict(weights)[bad])}" if bad else "no '*weight' tensors found"
        raise NnzooError(f"{source} does not hold an MLP state dict ({found}; expected 2-D '*.weight' tensors "
                         "(out, in)); check that the file is an INR checkpoint")
    for (_, prev), (key, w) in zip(weights, weights[1:]):
        if w.shape[1] != prev.shape[0]:
            raise NnzooError(f"{source}: tensor '{key}' has shape {_shape(w)} but follows a layer with "
                             f"{prev.shape[0]} outputs, so it needs ({w.shape[0]}, {prev.shape[0]}); "
                             "the layers do not chain")
    return [weights[0][1].shape[1], *(w.shape[0] for _, w in weights)]


def _assign_by_name(entries: list[tuple[str, Tensor]], spec: NetworkSpec
                    ) -> tuple[dict[tuple[int, str], tuple[str, Tensor]], list[tuple[str, Tensor]]]:
    """Map ``(layer, role)`` slots of ``spec`` to named tensors, as the DWSNets/NFN loaders do.

    Layer weights (``*weight``, 2-D or more) go to layers 0, 1, ... in file order; a bias goes to the
    layer whose weight has the same module prefix (a bias of no known module goes, in file order,
    to the next layer still without one).  A module with running statistics or a 1-D ``weight``
    is a norm: its ``weight``, ``bias`` and statistics go to the layers with a norm, modules in
    order of first appearance.
    Returns the assignment and the tensors that found no slot.
    """
    parsed = [(key, value, suffix, _module(key, suffix)) for key, value in entries for suffix in [_suffix(key)]]
    norm_modules = {m for _, v, s, m in parsed if s in _STAT_SUFFIXES or (s == "weight" and v.dim() == 1)}
    weights = [(k, v, m) for k, v, s, m in parsed if s == "weight" and m not in norm_modules]
    layer_of = {m: i for i, (_, _, m) in enumerate(weights)}
    norm_order = list(dict.fromkeys(m for *_, m in parsed if m in norm_modules))
    norm_layers = [i for i, layer in enumerate(spec.layers) if layer.norm]
    bias_layers = [i for i, layer in enumerate(spec.layers) if layer.bias]
    assigned: dict[tuple[int, str], tuple[str, Tensor]] = {}
    extra: list[tuple[str, Tensor]] = []

    def put(slot: tuple[int, str] | None, key: str, value: Tensor) -> None:
        if slot is None or slot in assigned or slot[0] >= spec.num_layers:
            extra.append((key, value))
        else:
            assigned[slot] = (key, value)

    for i, (key, value, _) in enumerate(weights):
        put((i, "weight"), key, value)
    unmatched_biases = []
    for key, value, suffix, module in parsed:
        if module in norm_modules:
            k = norm_order.index(module)
            role = {"weight": "norm_weight", "bias": "norm_bias"}.get(suffix, suffix)
            put((norm_layers[k], role) if k < len(norm_layers) else None, key, value)
        elif suffix == "bias":
            if module in layer_of:  # the bias of a known layer (extra if that layer has none)
                put((layer_of[module], "bias") if layer_of[module] in bias_layers else None, key, value)
            else:
                unmatched_biases.append((key, value))
    free = [i for i in bias_layers if (i, "bias") not in assigned]
    for j, (key, value) in enumerate(unmatched_biases):
        put((free[j], "bias") if j < len(free) else None, key, value)
    return assigned, extra


def state_dict_to_params(state_dict: Mapping[str, object], spec: NetworkSpec,
                         source: str | Path = "state dict") -> Tensor:
    """Flat ``(P,)`` float32 vector from a PyTorch-layout state dict, validated against ``spec``.

    Tensors are read by name, as the reference DWSNets / Neural Graphs / NFN loaders do: ``*weight``
    entries in file order are the layers' weights, ``*bias`` entries their biases, so interleaved
    (``seq.0.weight, seq.0.bias, ...``), grouped-by-role (all weights, then all biases) and NFN
    (``net.0.linear.weight``) files all read the same.  BatchNorm modules are told apart by their
    running statistics and 1-D ``weight``.  Only when no key names a role are the tensors matched
    to the slots by position.  Every mismatch is one line naming the file, the key and both shapes.
    """
    from nnzoo.checks import check_plain_tensors, check_renders_finite
    from nnzoo.nets.graph_spec import GraphSpec, graph_state_dict_to_params
    if isinstance(spec, GraphSpec):
        return graph_state_dict_to_params(state_dict, spec, source)
    check_plain_tensors(state_dict, source)  # sparse, meta, nested, quantized, complex: one line, not torch's
    entries = tensor_entries(state_dict)
    if entries:
        assigned, extra = _assign_by_name(entries, spec)
        how = "by name"
    else:  # keys say nothing (e.g. '0', '1', ...): file order is all there is
        entries = _unnamed_entries(state_dict)
        assigned = {(s.layer, s.role): e for s, e in zip(spec.slots, entries)}
        extra = entries[len(spec.slots):]
        how = "by position (keys name no weight/bias)"
    layer_weights = sum(1 for layer, role in assigned if role == "weight") + sum(
        1 for k, v in extra if v.dim() >= 2)
    counts = (f" (the file has {layer_weights} layer weights, {spec.describe()} has {spec.num_layers} layers)"
              if layer_weights != spec.num_layers else "")
    flat = torch.empty(spec.num_params)
    for slot in spec.slots:
        found = assigned.get((slot.layer, slot.role))
        if found is None:
            raise NnzooError(f"{source} has no tensor for layer {slot.layer} {slot.role} of {spec.describe()} "
                             f"(shape {slot.shape} needed, tensors matched {how}){counts}; wrong architecture "
                             "for this dataset")
        key, value = found
        if _shape(value) != slot.shape:
            raise NnzooError(f"{source}: tensor '{key}' has shape {_shape(value)} but layer {slot.layer} "
                             f"{slot.role} of {spec.describe()} needs {slot.shape} (matched {how}){counts}; "
                             "wrong architecture")
        flat[slot.start:slot.end] = value.detach().float().reshape(-1)
    if extra:
        key, value = extra[0]
        raise NnzooError(f"{source}: tensor '{key}' (shape {_shape(value)}) has no place in {spec.describe()} "
                         f"(matched {how}){counts}; wrong architecture")
    if not torch.isfinite(flat).all():
        raise NnzooError(f"{source} contains NaN or Inf weights; re-fit or replace this network")
    check_renders_finite(flat, spec, source)  # finite weights that still overflow float32 (1e38)
    return flat


def params_into_state_dict(params: Tensor, spec: NetworkSpec, state_dict: Mapping[str, object],
                           source: str | Path = "state dict") -> dict[str, object]:
    """``state_dict`` with its parameter tensors replaced by flat ``params`` ``(P,)``: the same keys, order,
    shapes and dtypes, so an edited network is saved in the format it was read from.

    The inverse of :func:`state_dict_to_params`, found by running it on a state dict whose entries are
    their own positions (so every key style it reads, including position-only keys, maps back)."""
    floats = [k for k, v in state_dict.items() if isinstance(v, Tensor) and v.is_floating_point()]
    sizes = [state_dict[k].numel() for k in floats]  # type: ignore[union-attr]
    if sum(sizes) >= 2**24:
        raise NnzooError(f"{source} is too large to map back by position ({sum(sizes)} entries)")
    starts = torch.tensor([0, *sizes]).cumsum(0).tolist()
    index_state = {k: v for k, v in state_dict.items()}
    for k, start, n in zip(floats, starts, sizes):
        index_state[k] = torch.arange(start, start + n, dtype=torch.float32).reshape(state_dict[k].shape)  # type: ignore[union-attr]
    where = state_dict_to_params(index_state, spec, source=source).long()
    values = torch.cat([state_dict[k].detach().reshape(-1).double() for k in floats])  # type: ignore[union-attr]
    values[where] = params.detach().double().cpu()
    out = dict(state_dict)
    for k, start, n in zip(floats, starts, sizes):
        original = state_dict[k]
        out[k] = values[start:start + n].reshape(original.shape).to(original.dtype)  # type: ignore[union-attr]
    return out


def params_to_state_dict(params: Tensor, spec: NetworkSpec, prefix: str = "seq") -> dict[str, Tensor]:
    """State dict ``{prefix}.{layer}.{role}`` for one flat vector (the DWSNets INR key style)."""
    return {f"{prefix}.{s.layer}.{s.role}": params[s.start:s.end].reshape(s.shape).clone()
            for s in spec.slots}


def permute_neurons(params: Tensor, spec: NetworkSpec, group: int, perm: Tensor) -> Tensor:
    """Reorder the neurons (channels) of hidden ``group`` of every network in ``params`` ``(B, P)``.

    Outgoing weights of layer ``group - 1`` (rows), its bias and norm tensors,
    and incoming weights of layer ``group`` (columns) are permuted together, so
    the function each network computes is unchanged.  This is the symmetry
    metanetworks must respect.
    """
    if not 0 < group < spec.num_layers:
        raise NnzooError(f"group {group} is not a hidden layer of {spec.describe()} (1..{spec.num_layers - 1})")
    layers = unflatten(params, spec)
    out = [dict(t) for t in layers]
    for role, tensor in layers[group - 1].items():
        out[group - 1][role] = tensor[:, perm]
    out[group]["weight"] = layers[group]["weight"][:, :, perm]
    return flatten(out, spec)
