"""The :class:`NetworkSpec` of a network nnzoo did not build: from an ``nn.Module`` or from a state dict.

:func:`spec_from_module` reads the architecture off a module instance, so that the state dicts of your
own trained networks can be packed into a dataset (``nnzoo pack``) and scored by ``nnzoo predict``.
It accepts what a spec can describe, in forward order:

* ``nn.Linear`` and ``nn.Conv2d`` layers (``groups=1``, no dilation, zero padding, square stride),
  each optionally followed by ``nn.BatchNorm1d``/``nn.BatchNorm2d`` (affine, running statistics,
  ``eps=1e-5``) and then by one activation: ``ReLU``, ``GELU``, ``SiLU``, ``Tanh``, ``Sigmoid``,
  ``LeakyReLU(0.01)``, or a sine ``sin(w0 * x)`` (SIREN style, the same ``w0`` in every layer);
* global average pooling (``nn.AdaptiveAvgPool2d(1)``) then ``nn.Flatten`` between the
  convolutions and the dense layers (a flatten of a 1x1 feature map, when ``input_shape`` shows it);
* ``nn.Flatten`` before an MLP, and ``nn.Dropout``/``nn.Identity`` (no effect on the weights).

``nn.Sequential`` containers are walked module by module; any other module is traced with
``torch.fx`` to find the order its ``forward`` calls its layers in, and must be a plain chain (no
residual additions, no branches).  Given ``input_shape``, anything else is read by running the module once
(:mod:`nnzoo.nets.trace`: transformers, ResNets, attention, LayerNorm) into a
:class:`~nnzoo.nets.graph_spec.GraphSpec`; what that cannot read is refused in one line naming the module's
path and type.  :func:`spec_from_state_dict` infers a spec from a state dict alone (its tensors' shapes), given
the activation, which a state dict does not record.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnzoo.errors import NnzooError
from nnzoo.nets.cnn import BN_EPS
from nnzoo.nets.functional import _module, _suffix, tensor_entries
from nnzoo.nets.graph_spec import GraphSpec
from nnzoo.nets.spec import ACTIVATIONS, LayerSpec, NetworkSpec
from nnzoo.nets.trace import trace_module

SUPPORTED = ("Linear, Conv2d, BatchNorm1d/2d, ReLU, GELU, SiLU, Tanh, Sigmoid, LeakyReLU(0.01), sin(w0 * x), "
             "AdaptiveAvgPool2d(1), Flatten, Dropout, Identity")

_ACTIVATION_MODULES: dict[type, str] = {nn.ReLU: "relu", nn.GELU: "gelu", nn.SiLU: "silu", nn.Tanh: "tanh",
                                        nn.Sigmoid: "sigmoid", nn.LeakyReLU: "leaky_relu"}
_ACTIVATION_FUNCTIONS: dict[Any, str] = {torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", F.tanh: "tanh",
                                         torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.gelu: "gelu",
                                         F.silu: "silu", F.leaky_relu: "leaky_relu"}
_ACTIVATION_METHODS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
_SKIPPED = (nn.Dropout, nn.Identity)


@dataclass
class _Op:
    """One step of the forward chain: a module, or a traced function call turned into a token."""

    path: str
    kind: str  # "module" | "activation" | "flatten" | "sine" | "skip"
    module: nn.Module | None = None
    activation: str = ""
    w0: float = 1.0
    what: str = ""  # type name for messages

    def describe(self) -> str:
        return f"'{self.path or '(top)'}' ({self.what})"


@dataclass
class _Walk:
    """What the chain has built so far."""

    layers: list[dict[str, Any]] = field(default_factory=list)
    stage: str = "start"  # start | affine | norm | act
    pooled: bool = False  # a convolution's output was average-pooled (or flattened at 1x1)
    flattened: bool = False
    spatial: tuple[int, int] | None = None  # feature-map size after the last conv, when input_shape is known
    w0: float | None = None


def spec_from_module(module: nn.Module, input_shape: tuple[int, ...] | None = None,
                     graph: bool = False) -> NetworkSpec | GraphSpec:
    """The spec of ``module``: a :class:`NetworkSpec` for a chain (an MLP or a CNN, see the module docstring),
    else, given ``input_shape``, the :class:`~nnzoo.nets.graph_spec.GraphSpec` read by running it once
    (:func:`nnzoo.nets.trace.trace_module`: transformers, residual networks, LayerNorm, attention).

    ``input_shape`` (without the batch dimension, e.g. ``(1, 28, 28)`` or ``(2,)``) is optional for a chain: it
    is checked against the first layer and lets a CNN flatten a 1x1 feature map instead of pooling it.
    ``graph=True`` reads even a chain as a graph spec.  The flat parameter vector of a state dict of
    ``module`` in this spec is :func:`nnzoo.nets.state_dict_to_params` ``(module.state_dict(), spec)``.
    """
    if not isinstance(module, nn.Module):
        raise NnzooError(f"spec_from_module needs an nn.Module instance, got {type(module).__name__}")
    if graph:
        if input_shape is None:
            raise NnzooError(f"spec_from_module(..., graph=True) of {type(module).__name__} needs input_shape (the "
                             "shape of one input, without the batch dimension) to run it once")
        return trace_module(module, input_shape)
    try:
        return _chain_spec(module, input_shape)
    except NnzooError as exc:
        if input_shape is None:
            raise NnzooError(f"{exc} (or pass input_shape=... to read its graph by running it)") from None
        return trace_module(module, input_shape)


def _chain_spec(module: nn.Module, input_shape: tuple[int, ...] | None) -> NetworkSpec:
    """The chain reading of :func:`spec_from_module` (NetworkSpec)."""
    ops = _ops(module, "")
    walk = _Walk()
    if input_shape is not None:
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) == 3:
            walk.spatial = (input_shape[1], input_shape[2])
    for op in ops:
        _step(walk, op)
    if not walk.layers:
        raise NnzooError(f"{type(module).__name__} has no Linear or Conv2d layer; nothing to describe")
    conv = any(layer["kind"] == "conv" for layer in walk.layers)
    if input_shape is not None:
        first = walk.layers[0]
        wanted = input_shape[0] if conv else (input_shape[0] if len(input_shape) == 1 else _prod(input_shape))
        if wanted != first["in_features"]:
            raise NnzooError(f"input_shape {input_shape} gives {wanted} input {'channels' if conv else 'features'} "
                             f"but the first layer of {type(module).__name__} expects {first['in_features']}")
    layers = tuple(LayerSpec(**{k: v for k, v in layer.items() if k != "path"}) for layer in walk.layers)
    return NetworkSpec(layers, w0=walk.w0 if walk.w0 is not None else 30.0, input_kind="image" if conv else "coords")


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


# ------------------------------------------------------------------ forward order
def _ops(module: nn.Module, prefix: str) -> list[_Op]:
    """The chain of ``module``: Sequential children in order, a known leaf as itself, else an fx trace."""
    if isinstance(module, nn.Sequential):
        ops: list[_Op] = []
        for name, child in module.named_children():
            ops += _ops(child, f"{prefix}.{name}" if prefix else name)
        return ops
    if _known_leaf(module) or type(module).__module__.startswith("torch."):  # torch's own: refused by name
        return [_leaf(module, prefix)]
    return _traced(module, prefix)


def _known_leaf(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d,
                               nn.Flatten, *_SKIPPED, *_ACTIVATION_MODULES))


def _leaf(module: nn.Module, path: str) -> _Op:
    what = type(module).__name__
    if isinstance(module, _SKIPPED):
        return _Op(path, "skip", module, what=what)
    for cls, name in _ACTIVATION_MODULES.items():
        if isinstance(module, cls):
            if isinstance(module, nn.LeakyReLU) and module.negative_slope != 0.01:
                raise NnzooError(f"'{path}' (LeakyReLU) has negative_slope {module.negative_slope:g}; nnzoo's "
                                 "leaky_relu is F.leaky_relu's default slope 0.01")
            return _Op(path, "activation", module, activation=name, what=what)
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise NnzooError(f"'{path}' (Flatten) flattens dims {module.start_dim}..{module.end_dim}; only "
                             "Flatten(1, -1) (keep the batch dimension) is supported")
        return _Op(path, "flatten", module, what=what)
    return _Op(path, "module", module, what=what)


def _traced(module: nn.Module, prefix: str) -> list[_Op]:
    """Forward order of a custom module from its ``torch.fx`` graph, which must be one chain."""
    import torch.fx
    name = type(module).__name__
    where = f"'{prefix}' ({name})" if prefix else name
    if not any(True for _ in module.parameters()) and not list(module.children()):
        ops = _function_module(module, prefix)
        if ops is not None:
            return ops
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception as exc:  # fx raises many types for data-dependent control flow, unsupported ops...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise NnzooError(f"{where} is not an nn.Sequential and torch.fx cannot trace it ({first}); write the "
                         f"network as an nn.Sequential of {SUPPORTED}") from None
    ops: list[_Op] = []
    previous = None
    pending_scale: float | None = None
    sizes = {n for n in graph.nodes if n.op == "call_method" and n.target == "size"
             or n.op == "call_function" and n.target is getattr}  # x.size(0), x.shape: read, not computed on
    for node in graph.nodes:
        if node in sizes:
            continue
        if node.op == "placeholder":
            if previous is not None:
                raise NnzooError(f"{where}: forward takes more than one input; nnzoo networks take one tensor")
            previous = node
            continue
        inputs = [a for a in node.all_input_nodes if a not in sizes]
        text = f"{where}: {_node_text(node)}"
        if node.op == "output":
            if inputs != [previous]:
                raise NnzooError(f"{text} does not return the last layer's output; only chains are supported")
            break
        if inputs != [previous] or len([u for u in previous.users if u not in sizes]) != 1:
            raise NnzooError(f"{text} is not a plain chain (a residual connection, a branch or a reused "
                             f"value); only chains of {SUPPORTED} are supported")
        previous = node
        if node.op == "call_module":
            child = module.get_submodule(str(node.target))
            path = f"{prefix}.{node.target}" if prefix else str(node.target)
            ops += _ops(child, path)
            continue
        token = _function_token(node)
        if token is None:
            raise NnzooError(f"{text} is not supported; use {SUPPORTED}")
        if token[0] == "scale":
            if pending_scale is not None:
                raise NnzooError(f"{text}: two multiplications in a row; only sin(w0 * x) is supported")
            pending_scale = token[1]
            continue
        if token[0] == "sine":
            ops.append(_Op(prefix, "sine", w0=pending_scale if pending_scale is not None else 1.0, what="sin"))
            pending_scale = None
            continue
        if pending_scale is not None:
            raise NnzooError(f"{text}: a multiplication by {pending_scale:g} not followed by sin; only "
                             "sin(w0 * x) is supported")
        ops.append(_Op(prefix, token[0], activation=token[1], what=str(token[1] or token[0])))
    if pending_scale is not None:
        raise NnzooError(f"{where}: ends in a multiplication by {pending_scale:g}; only sin(w0 * x) is supported")
    return ops


def _function_module(module: nn.Module, prefix: str) -> list[_Op] | None:
    """A parameter-free custom module (e.g. ``Sine``) traced on its own; None if it is not an activation."""
    import torch.fx
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception:
        return None
    nodes = [n for n in graph.nodes if n.op not in ("placeholder", "output")]
    tokens = [_function_token(n) for n in nodes]
    if tokens and all(t is not None for t in tokens):
        if [t[0] for t in tokens] == ["scale", "sine"]:
            return [_Op(prefix, "sine", w0=tokens[0][1], what=type(module).__name__)]
        if [t[0] for t in tokens] == ["sine"]:
            return [_Op(prefix, "sine", w0=1.0, what=type(module).__name__)]
    return None


def _function_token(node) -> tuple[str, Any] | None:
    """``("activation", name)``, ``("flatten", None)``, ``("sine", None)``, ``("scale", c)``,
    ``("skip", None)`` for a traced call, or None when it is not one nnzoo can describe."""
    target = node.target
    constants = [a for a in node.args if not hasattr(a, "op")]
    if node.op == "call_function":
        if target in _ACTIVATION_FUNCTIONS:
            slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
            return None if target is F.leaky_relu and slope != 0.01 else ("activation", _ACTIVATION_FUNCTIONS[target])
        if target is torch.sin:
            return ("sine", None)
        if target is torch.flatten and list(node.args[1:2]) in ([1], []) and node.kwargs.get("start_dim", 1) == 1:
            return ("flatten", None) if node.args[1:2] else None  # torch.flatten(x) would flatten the batch
        if target in (operator.mul, torch.mul) and len(constants) == 1 and isinstance(constants[0], (int, float)):
            return ("scale", float(constants[0]))
        if target is F.dropout:
            return ("skip", None)
        if target is F.adaptive_avg_pool2d and list(node.args[1:]) in ([1], [(1, 1)]):
            return ("pool", None)
    if node.op == "call_method":
        if target in _ACTIVATION_METHODS and len(node.args) == 1:
            return ("activation", _ACTIVATION_METHODS[target])
        if target == "sin" and len(node.args) == 1:
            return ("sine", None)
        if target == "flatten" and list(node.args[1:]) == [1]:
            return ("flatten", None)
        if target in ("view", "reshape") and len(node.args) == 3:  # x.view(x.size(0), -1), x.view(-1, n)
            batch, rest = node.args[1], node.args[2]
            if hasattr(batch, "op") and rest == -1 or not hasattr(batch, "op") and batch == -1 and \
                    isinstance(rest, int) and rest > 0:
                return ("flatten", None)
        if target == "mean" and _dims(node) in ((2, 3), (-2, -1)):
            return ("poolflat", None)  # x.mean((2, 3)): global average pooling to (B, C)
        if target == "mul" and len(constants) == 1 and isinstance(constants[0], (int, float)):
            return ("scale", float(constants[0]))
    return None


# ------------------------------------------------------------------ chain -> layers
def _step(walk: _Walk, op: _Op) -> None:
    if op.kind == "skip":
        return
    if op.kind in ("activation", "sine"):
        _activation(walk, op)
        return
    if op.kind == "flatten":
        _flatten(walk, op)
        return
    if op.kind in ("pool", "poolflat"):
        _pool(walk, op)
        walk.flattened = op.kind == "poolflat"
        return
    module = op.module
    if isinstance(module, nn.Linear):
        _linear(walk, op, module)
    elif isinstance(module, nn.Conv2d):
        _conv(walk, op, module)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        _norm(walk, op, module)
    elif isinstance(module, nn.AdaptiveAvgPool2d):
        if module.output_size not in (1, (1, 1), [1, 1]):
            raise NnzooError(f"{op.describe()} has output_size {module.output_size}; only global average pooling "
                             "(AdaptiveAvgPool2d(1)) is supported")
        _pool(walk, op)
    else:
        raise NnzooError(f"{op.describe()} is not supported: nnzoo describes chains of {SUPPORTED} "
                         "(no other pooling, normalisation, attention or residual modules)")


def _pool(walk: _Walk, op: _Op) -> None:
    if not walk.layers or walk.layers[-1]["kind"] != "conv" or walk.pooled:
        raise NnzooError(f"{op.describe()}: global average pooling is supported once, right after the convolutions")
    walk.pooled = True


def _node_text(node) -> str:
    target = getattr(node.target, "__name__", str(node.target))
    return f"'{node.name}' ({node.op} {target})"


def _dims(node) -> tuple[int, ...] | None:
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return tuple(dims) if isinstance(dims, (tuple, list)) and not node.kwargs.get("keepdim") else None


def _previous_outputs(walk: _Walk, op: _Op, needed: int, what: str) -> None:
    if walk.layers and walk.layers[-1]["out_features"] != needed:
        raise NnzooError(f"{op.describe()} expects {needed} input {what} but the layer before it "
                         f"('{walk.layers[-1]['path']}') gives {walk.layers[-1]['out_features']}")


def _linear(walk: _Walk, op: _Op, m: nn.Linear) -> None:
    after_conv = bool(walk.layers) and walk.layers[-1]["kind"] == "conv"
    if after_conv and not walk.pooled:
        raise NnzooError(f"{op.describe()} follows a convolution without global average pooling: nnzoo's CNNs "
                         "average-pool the last feature map before the dense layers; add nn.AdaptiveAvgPool2d(1) "
                         "and nn.Flatten() (or pass input_shape if the feature map is already 1x1)")
    if after_conv and not walk.flattened:
        raise NnzooError(f"{op.describe()} follows the pooled feature map without nn.Flatten()")
    _previous_outputs(walk, op, m.in_features, "features")
    walk.layers.append(dict(path=op.path, kind="linear", in_features=m.in_features, out_features=m.out_features,
                            bias=m.bias is not None))
    walk.stage = "affine"


def _conv(walk: _Walk, op: _Op, m: nn.Conv2d) -> None:
    if walk.layers and (walk.layers[-1]["kind"] == "linear" or walk.pooled or walk.flattened):
        raise NnzooError(f"{op.describe()} comes after the dense part (or the pooling); nnzoo's CNNs are "
                         "convolutions, then pooling, then dense layers")
    if walk.flattened:
        raise NnzooError(f"{op.describe()} follows nn.Flatten; a convolution needs a feature map")
    if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros":
        raise NnzooError(f"{op.describe()} has groups={m.groups}, dilation={tuple(m.dilation)}, padding_mode="
                         f"'{m.padding_mode}'; only groups=1, dilation 1 and zero padding are supported")
    stride = tuple(m.stride)
    padding = m.padding if isinstance(m.padding, str) else tuple(m.padding)
    if stride[0] != stride[1] or (not isinstance(padding, str) and padding[0] != padding[1]):
        raise NnzooError(f"{op.describe()} has stride {stride} and padding {padding}; only equal values "
                         "for height and width are supported")
    pad: str | int = padding if isinstance(padding, str) else int(padding[0])
    if pad == "valid":
        pad = 0
    _previous_outputs(walk, op, m.in_channels, "channels")
    k = tuple(int(v) for v in m.kernel_size)
    if walk.spatial is not None:
        p = (k[0] // 2, k[1] // 2) if pad == "same" else (pad, pad)
        walk.spatial = tuple((walk.spatial[i] + 2 * p[i] - k[i]) // stride[0] + 1 for i in range(2))  # type: ignore[assignment]
    walk.layers.append(dict(path=op.path, kind="conv", in_features=m.in_channels, out_features=m.out_channels,
                            kernel_size=k, stride=int(stride[0]), padding=pad, bias=m.bias is not None))
    walk.stage = "affine"


def _norm(walk: _Walk, op: _Op, m: nn.Module) -> None:
    kind = "conv" if isinstance(m, nn.BatchNorm2d) else "linear"
    if walk.stage != "affine" or walk.layers[-1]["kind"] != kind:
        raise NnzooError(f"{op.describe()} must come right after a {'Conv2d' if kind == 'conv' else 'Linear'} "
                         "layer (nnzoo's layers are affine, then BatchNorm, then the activation)")
    if not m.affine or not m.track_running_stats or abs(m.eps - BN_EPS) > 1e-12:
        raise NnzooError(f"{op.describe()} has affine={m.affine}, track_running_stats={m.track_running_stats}, "
                         f"eps={m.eps:g}; only affine BatchNorm with running statistics and eps={BN_EPS:g}")
    _previous_outputs(walk, op, m.num_features, "features")
    walk.layers[-1]["norm"] = "batchnorm"
    walk.stage = "norm"


def _activation(walk: _Walk, op: _Op) -> None:
    if walk.stage not in ("affine", "norm") or walk.pooled and walk.layers[-1]["kind"] == "conv":
        where = "before the first layer" if not walk.layers else "after another activation or the pooling"
        raise NnzooError(f"{op.describe()} comes {where}; nnzoo's layers are affine, then BatchNorm, then one "
                         "activation")
    name = op.activation
    if op.kind == "sine":
        if walk.w0 is not None and walk.w0 != op.w0:
            raise NnzooError(f"{op.describe()} uses sin({op.w0:g} * x) but an earlier layer sin({walk.w0:g} * x); "
                             "nnzoo's sine networks share one w0")
        walk.w0, name = op.w0, "sine"
    assert name in ACTIVATIONS, name
    walk.layers[-1]["activation"] = name
    walk.stage = "act"


def _flatten(walk: _Walk, op: _Op) -> None:
    if not walk.layers:
        return  # an MLP on flattened inputs (e.g. images): the first Linear says how many
    if walk.layers[-1]["kind"] != "conv" or walk.flattened:
        raise NnzooError(f"{op.describe()} is supported before an MLP or after the convolutions only")
    if not walk.pooled:
        if walk.spatial != (1, 1):
            size = "unknown (pass input_shape)" if walk.spatial is None else f"{walk.spatial[0]}x{walk.spatial[1]}"
            raise NnzooError(f"{op.describe()} flattens a feature map of size {size}; nnzoo's CNNs average-pool "
                             "the last feature map: add nn.AdaptiveAvgPool2d(1) before the Flatten")
        walk.pooled = True  # flattening a 1x1 map is global average pooling
    walk.flattened = True


# ------------------------------------------------------------------ state dicts
def spec_from_state_dict(state_dict: Mapping[str, object], activation: str = "relu", *, w0: float = 30.0,
                         source: str | Path = "state dict") -> NetworkSpec:
    """A spec inferred from a state dict's tensors alone: ``*weight`` tensors in file order are the
    layers (2-D dense, 4-D convolution), ``*bias`` their biases, modules with running statistics
    BatchNorm.  ``activation`` goes after every hidden layer (a state dict does not record it), the last
    layer is linear; convolutions get stride 1 and no padding (not recorded either; they matter only to
    run the networks, not to learn from their weights).  For anything else, use :func:`spec_from_module`."""
    if activation not in ACTIVATIONS or activation == "none":
        raise NnzooError(f"activation must be one of {', '.join(a for a in ACTIVATIONS if a != 'none')}, "
                         f"got {activation!r}")
    from nnzoo.checks import check_plain_tensors
    check_plain_tensors(state_dict, source)  # a sparse or nested tensor has no usable shape
    entries = tensor_entries(state_dict)
    if not entries:
        raise NnzooError(f"{source}: no '*weight'/'*bias' tensors, so the architecture cannot be read off the keys; "
                         "describe it with a spec (nnzoo.nets.spec_from_module(...).to_dict() as JSON, --spec)")
    _refuse_non_chain(state_dict, source)
    modules: dict[str, dict[str, Tensor]] = {}
    for key, value in entries:
        suffix = _suffix(key)
        assert suffix is not None
        modules.setdefault(_module(key, suffix), {})[suffix] = value
    layers: list[dict[str, Any]] = []
    for name, tensors in modules.items():
        weight = tensors.get("weight")
        is_norm = "running_mean" in tensors or (weight is not None and weight.dim() == 1)
        if is_norm:
            if not layers or "norm" in layers[-1] or weight is None or "bias" not in tensors \
                    or "running_var" not in tensors or "running_mean" not in tensors:
                raise NnzooError(f"{source}: '{name}' is a normalisation without running statistics (a LayerNorm?) "
                                 "or not right after a layer, so the network is not a chain of layers and "
                                 f"BatchNorms; use --spec ({_SPEC_HINT})")
            layers[-1]["norm"] = "batchnorm"
            continue
        if weight is None or weight.dim() not in (2, 4):
            shape = tuple(weight.shape) if weight is not None else "none"
            raise NnzooError(f"{source}: module '{name}' has weight shape {shape}; only dense (out, in) and "
                             "convolution (out, in, kh, kw) weights are read; describe the network with --spec")
        kind = "linear" if weight.dim() == 2 else "conv"
        layers.append(dict(kind=kind, in_features=int(weight.shape[1]), out_features=int(weight.shape[0]),
                           kernel_size=tuple(weight.shape[2:]) if kind == "conv" else (1, 1),
                           bias="bias" in tensors))
    if not layers:
        raise NnzooError(f"{source} holds no layer weights")
    for i, layer in enumerate(layers):
        layer["activation"] = activation if i < len(layers) - 1 else "none"
    conv = any(layer["kind"] == "conv" for layer in layers)
    try:
        return NetworkSpec(tuple(LayerSpec(**layer) for layer in layers), w0=w0,
                           input_kind="image" if conv else "coords")
    except NnzooError as exc:
        raise NnzooError(f"{source}: {exc}: its tensors in file order are not a chain of layers; use --spec "
                         f"({_SPEC_HINT})") from None


_SPEC_HINT = "json.dump(nnzoo.nets.spec_from_module(net, input_shape=...).to_dict(), file)"
_NOT_CHAIN = {"downsample": "a residual shortcut", "shortcut": "a residual shortcut",
              "in_proj_weight": "attention (nn.MultiheadAttention)", "self_attn": "attention",
              "attn": "attention", "attention": "attention"}
"""Key parts that no chain of layers has: the state dict of a residual network or a transformer."""


def _refuse_non_chain(state_dict: Mapping[str, object], source: str | Path) -> None:
    """Refuse, in one line saying ``use --spec``, a state dict whose keys show it is not a chain (a residual
    shortcut, attention, a class token or position table), instead of guessing a chain from its shapes.  A
    residual addition without a shortcut layer leaves no trace in a state dict: only a spec read off the module
    describes it."""
    for key, value in state_dict.items():
        parts = str(key).split(".")
        hit = next((p for p in parts if p in _NOT_CHAIN), None)
        if hit is not None:
            raise NnzooError(f"{source}: tensor '{key}' belongs to {_NOT_CHAIN[hit]}, so the network is not a chain "
                             f"of layers and cannot be read off its state dict; use --spec ({_SPEC_HINT})")
        if isinstance(value, Tensor) and value.is_floating_point() and value.dim() >= 2 \
                and _suffix(str(key)) is None:
            raise NnzooError(f"{source}: tensor '{key}' {tuple(value.shape)} is not a layer's weight or bias (a class "
                             f"token or position table?), so the network is not a chain of layers; use --spec "
                             f"({_SPEC_HINT})")
