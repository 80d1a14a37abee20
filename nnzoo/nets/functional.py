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

def tensor_entries(state_dict: Mapping[str, object]) -> list[tuple[str, Tensor]]:
    """The parameter tensors of a state dict in file order: ``*weight``, ``*bias`` and BatchNorm's
    ``*running_mean``/``*running_var`` (other keys, e.g. ``label`` or ``num_batches_tracked``, skipped)."""
    return [(k, v) for k, v in state_dict.items()
            if isinstance(v, Tensor) and k.endswith(("weight", "bias", "running_mean", "running_var"))]


def infer_mlp_widths(state_dict: Mapping[str, object], source: str | Path = "state dict") -> list[int]:
    """Widths ``[in, h1, ..., out]`` of the MLP stored in a state dict."""
    weights = [v for k, v in tensor_entries(state_dict) if k.endswith("weight")]
    if not weights or any(w.dim() != 2 for w in weights):
        raise NnzooError(f"{source} does not hold an MLP state dict (expected 2-D '*.weight' tensors); "
                         "check that the file is an INR checkpoint")
    return [weights[0].shape[1], *(w.shape[0] for w in weights)]


def state_dict_to_params(state_dict: Mapping[str, object], spec: NetworkSpec,
                         source: str | Path = "state dict") -> Tensor:
    """Flat ``(P,)`` float32 vector from a PyTorch-layout state dict, validated against ``spec``.

    Tensors are matched to slots in file order, which is how ``nn.Sequential``
    and the DWSNets/NFN INR classes store them.
    """
    entries = tensor_entries(state_dict)
    slots = list(spec.slots)
    if len(entries) != len(slots):
        raise NnzooError(f"{source} has {len(entries)} parameter tensors but {spec.describe()} needs "
                         f"{len(slots)}; wrong architecture for this dataset")
    flat = torch.empty(spec.num_params)
    for (key, value), slot in zip(entries, slots):
        if tuple(value.shape) != slot.shape or not key.endswith(slot.role.removeprefix("norm_")):
            raise NnzooError(f"{source}: tensor '{key}' has shape {tuple(value.shape)} but layer {slot.layer} "
                             f"{slot.role} of {spec.describe()} needs {slot.shape}; wrong architecture")
        flat[slot.start:slot.end] = value.detach().float().reshape(-1)
    if not torch.isfinite(flat).all():
        raise NnzooError(f"{source} contains NaN or Inf weights; re-fit or remove this network")
    return flat


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
