"""Read the computation graph of any ``nn.Module`` by running it once: :func:`trace_module` -> :class:`GraphSpec`.

``torch.fx`` reads a forward symbolically and stops at ``len(x)``, shapes and Python control flow; here the
module runs on an example input under a :class:`~torch.overrides.TorchFunctionMode` that sees every torch call
(the same calls ``nn.TransformerEncoderLayer``, torchvision blocks or hand-written code make) and follows
*which neuron every entry of every tensor belongs to*.  Each value the network computes carries an integer
tensor of its own shape: ``node id << 16 | version`` for activations, the flat parameter index for the
module's own tensors (parameters and buffers, in ``state_dict`` order).  Shape operations (view, reshape,
transpose, indexing, cat, ...) are applied to these id tensors as they are to the values, so after any
reshaping the tracer still knows that axis ``-1`` holds neuron ``i`` of some layer.

What it reads (everything else that touches a traced value is refused in one line naming the module):

* ``F.linear``/``F.conv2d`` (``groups=1``): new neurons; one edge per weight (per kernel), bias as node feature;
* ``F.batch_norm``: its tensors become node features of the neurons it normalises when they come straight from
  a dense/conv layer (the Neural Graphs encoding), else of new norm neurons; ``F.layer_norm`` always gets
  new norm neurons (its output mixes all features) with scale and shift as node features and one identity
  edge (kind ``norm``) from each normalised neuron;
* activations (ReLU, GELU, SiLU, tanh, sigmoid, LeakyReLU(0.01)) set the activation of their neurons;
* ``a + b`` of two traced values: identity edges (kind ``residual``) from one side's neurons into the other
  side's, when those come straight from a layer, else into new sum neurons;
* a parameter added to or concatenated with a traced value (class token, learned positions): one *token*
  node per position with edges (kind ``token``) carrying the parameter into the neurons it joins;
* attention: ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``),
  ``q @ k.transpose(-2, -1)`` then ``softmax(...) @ v``, or ``F.scaled_dot_product_attention``: per head,
  query, key and value neurons, one head node with edges from its query and key neurons and to its value
  neurons (kind ``head``), and an edge (kind ``qk``) from query neuron ``j`` to key neuron ``j`` of the head,
  whose dot product the logits are;
* reductions and pools over positions (mean over tokens, ``x[:, 0]``, average/max pooling), dropout,
  softmax, multiplication by a Python number.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from nnzoo.errors import NnzooError
from nnzoo.nets.graph_spec import EDGE_KINDS, FEATURE_ROLES, NODE_KINDS, GraphSpec, GraphTensor
from nnzoo.nets.spec import ACTIVATIONS, LayerSpec

READS = ("Linear, Conv2d (groups=1), BatchNorm, LayerNorm, MultiheadAttention/TransformerEncoderLayer, "
         "q @ k^T / softmax / @ v attention, scaled_dot_product_attention, ReLU/GELU/SiLU/Tanh/Sigmoid, residual "
         "additions, class tokens and learned positions, pooling over positions, reshapes")

_SHIFT = 16
_VERSION = (1 << _SHIFT) - 1

_SHAPE_OPS = {"view", "reshape", "flatten", "unflatten", "transpose", "permute", "t", "contiguous", "expand",
              "squeeze", "unsqueeze", "__getitem__", "select", "narrow", "repeat", "clone", "movedim", "swapaxes",
              "swapdims", "chunk", "split", "unbind", "tensor_split", "view_as", "reshape_as", "expand_as",
              "cat", "concat", "concatenate", "stack", "flip", "roll"}
_SAME = {"to", "float", "double", "half", "bfloat16", "type", "detach", "cpu", "cuda", "requires_grad_",
         "dropout", "dropout1d", "dropout2d", "alpha_dropout", "softmax", "log_softmax", "identity",
         "contiguous"}
_ACTS = {"relu": "relu", "relu_": "relu", "gelu": "gelu", "silu": "silu", "silu_": "silu", "tanh": "tanh",
         "tanh_": "tanh", "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "leaky_relu": "leaky_relu",
         "leaky_relu_": "leaky_relu"}
_ADD = {"add", "__add__", "__radd__", "__iadd__", "add_"}
_SCALE = {"mul", "__mul__", "__rmul__", "__imul__", "mul_", "div", "__truediv__", "__itruediv__", "div_"}
_REDUCE = {"mean", "sum", "amax", "amin"}
_POOLS = {"adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "_max_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool1d",
          "avg_pool1d", "max_pool1d"}
_CONSTANT = {"new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", "zeros_like", "ones_like",
             "empty_like", "full_like", "rand_like", "randn_like", "size", "dim", "numel", "__len__"}
_MASKS = {"masked_fill", "masked_fill_"}


@dataclass
class _Value:
    """What the tracer knows of one tensor: its id tensor and whether it holds neurons or parameters."""

    tensor: Tensor  # kept alive so that id() stays unique
    code: Tensor  # int64, the tensor's shape
    param: bool  # True: code holds flat parameter indices; False: node id << 16 | version


class _Tracer(TorchFunctionMode):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.values: dict[int, _Value] = {}
        self.kind: list[int] = []
        self.slot: list[tuple] = []
        self.act: list[str] = []
        self.feat: list[list[int]] = []
        self.fresh: list[bool] = []
        self.version: list[int] = []
        self.edges: list[np.ndarray] = []
        self.roles: dict[int, str] = {}  # flat index of a tensor's first entry -> role
        self.layers: list[dict[str, Any]] = []
        self.layer_of_node: dict[int, int] = {}
        self.heads: dict[tuple[int, ...], int] = {}
        self.ops = 0
        self.stack: list[tuple[str, str]] = [("", type(module).__name__)]

    # ------------------------------------------------------------ messages
    def where(self) -> str:
        path, name = self.stack[-1]
        return f"'{path}' ({name})" if path else name

    def refuse(self, text: str) -> NnzooError:
        return NnzooError(f"{self.where()}: {text}")

    # ------------------------------------------------------------ neurons and edges
    def new_neurons(self, count: int, kind: str = "hidden", slot: tuple | None = None) -> Tensor:
        self.ops += 1
        start = len(self.kind)
        for i in range(count):
            self.kind.append(NODE_KINDS.index(kind))
            self.slot.append(slot if slot is not None else (self.ops, kind))
            self.act.append("none")
            self.feat.append([-1] * len(FEATURE_ROLES))
            self.fresh.append(kind not in ("input", "token", "head"))
            self.version.append(0)
        return torch.arange(start, start + count)

    def add_edges(self, src: Tensor, dst: Tensor, kind: str, base: Tensor | None = None,
                  kernel: tuple[int, int] = (1, 1)) -> None:
        src, dst = torch.as_tensor(src).reshape(-1), torch.as_tensor(dst).reshape(-1)
        base = torch.full_like(src, -1) if base is None else torch.as_tensor(base).reshape(-1)
        rows = np.stack([src.numpy(), dst.numpy(), np.full(len(src), EDGE_KINDS.index(kind)), base.numpy(),
                         np.full(len(src), kernel[0]), np.full(len(src), kernel[1])], axis=1)
        self.edges.append(rows.astype(np.int64))

    def role(self, pid: Tensor, role: str) -> None:
        self.roles[int(pid.reshape(-1)[0])] = role

    # ------------------------------------------------------------ reading values
    def value(self, t: Any) -> _Value | None:
        return self.values.get(id(t)) if isinstance(t, Tensor) else None

    def neurons(self, v: _Value, axis: int, what: str) -> Tensor:
        """Node ids along ``axis`` of a neuron value (constant over the other axes, current version)."""
        if v.param:
            raise self.refuse(f"{what} reads a parameter directly as its input; nnzoo reads parameters only as "
                              "layer weights, class tokens or learned positions")
        code = v.code.movedim(axis, -1).reshape(-1, v.code.shape[axis])
        if not bool((code == code[:1]).all()):
            raise self.refuse(f"{what} mixes different neurons along one feature (e.g. a Linear on a feature map "
                              "flattened over positions); nnzoo reads features that are neurons: pool the positions "
                              "first")
        ids, versions = code[0] >> _SHIFT, code[0] & _VERSION
        current = torch.tensor([self.version[i] for i in ids.tolist()], dtype=torch.long)
        if not bool((versions == current).all()):
            stale = int(ids[versions != current][0])
            raise self.refuse(f"{what} reads neuron {stale}'s value from before its activation or normalisation, "
                              "which is then also used; nnzoo describes each neuron by one value")
        return ids

    def code_of(self, ids: Tensor) -> Tensor:
        return (ids << _SHIFT) | torch.tensor([self.version[i] for i in ids.reshape(-1).tolist()],
                                              dtype=torch.long).reshape(ids.shape)

    def along(self, ids: Tensor, shape: torch.Size, axis: int) -> Tensor:
        """Code of a value of ``shape`` whose ``axis`` holds neurons ``ids``."""
        view = [1] * len(shape)
        view[axis] = len(ids)
        return self.code_of(ids).reshape(view).expand(shape).clone()

    def params(self, t: Any, what: str) -> Tensor | None:
        if t is None:
            return None
        v = self.value(t)
        if v is None or not v.param:
            raise self.refuse(f"{what} is not one of the module's own parameters or buffers; nnzoo reads the "
                              "weights of the module's state_dict")
        return v.code

    def consume(self, ids: Tensor) -> None:
        for i in ids.tolist():
            self.fresh[i] = False

    # ------------------------------------------------------------ the mode
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        tracked = [v for v in _tensors(args, kwargs) if id(v) in self.values]
        if not tracked or name in _CONSTANT or name == "__get__":
            return out
        outputs = [o for o in _flat(out) if isinstance(o, Tensor)]
        if not outputs or all(not o.is_floating_point() for o in outputs):
            return out  # sizes, masks, comparisons: not values of the network
        try:
            self.handle(func, name, args, kwargs, out)
        except NnzooError:
            raise
        except Exception as exc:  # an id-tensor operation that does not follow the value's: say where
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise self.refuse(f"nnzoo cannot follow '{name}' here ({type(exc).__name__}: {first}); it reads "
                              f"{READS}") from None
        return out

    def record(self, out: Tensor, code: Tensor, param: bool = False) -> None:
        if tuple(code.shape) != tuple(out.shape):
            raise self.refuse(f"lost track of a tensor's neurons (shape {tuple(out.shape)} vs {tuple(code.shape)})")
        self.values[id(out)] = _Value(out, code, param)

    def handle(self, func, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        if name in _SHAPE_OPS or name in _SAME:
            return self.shape_op(func, name, args, kwargs, out)
        if name in _ACTS:
            return self.activation(name, args, kwargs, out)
        if name in _ADD:
            return self.add(args, kwargs, out)
        if name in _SCALE:
            other = args[1] if len(args) > 1 else kwargs.get("other")
            v = self.value(args[0])
            if v is None and not name.startswith(("div", "__truediv", "__itrue")):
                v, other = self.value(other), args[0]
            if v is None or v.param or not isinstance(other, (int, float)):
                raise self.refuse(f"'{name}' multiplies a traced value by a tensor; nnzoo reads multiplications by "
                                  "constant numbers only (e.g. the attention scale)")
            return self.record(out, v.code.expand(out.shape).clone())
        if name in _MASKS:
            v = self.value(args[0])
            return self.record(out, v.code.clone())
        if name in _REDUCE:
            return self.reduce(name, args, kwargs, out)
        if name in _POOLS:
            return self.pool(args, out)
        method = getattr(self, f"op_{name}", None)
        if method is None:
            raise self.refuse(f"calls {name} on a traced value; nnzoo reads {READS}")
        return method(args, kwargs, out)

    # ------------------------------------------------------------ shapes
    def shape_op(self, func, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        if name in _SAME:
            v = self.value(args[0])
            if v is not None and isinstance(out, Tensor):
                self.record(out, v.code.clone(), v.param)
            return
        if name in ("cat", "concat", "concatenate", "stack"):
            return self.cat(name, args, kwargs, out)
        first = self.value(args[0])
        if first is None:
            raise self.refuse(f"'{name}' with a traced value in a place nnzoo does not follow")

        def sub(a: Any) -> Any:
            return first.code if a is args[0] else a
        codes = func(*[sub(a) for a in args], **kwargs)
        for o, c in zip(_flat(out), _flat(codes)):
            if isinstance(o, Tensor):
                self.record(o, c.clone(), first.param)

    def cat(self, name: str, args: tuple, kwargs: dict, out: Tensor) -> None:
        tensors = list(args[0])
        dim = args[1] if len(args) > 1 else kwargs.get("dim", kwargs.get("axis", 0))
        values = [self.value(t) for t in tensors]
        if any(v is None for v in values):
            raise self.refuse(f"'{name}' joins a traced value with a tensor that is neither a layer's output nor a "
                              "parameter of the module")
        neurons = [v for v in values if not v.param]
        if name == "stack" or not neurons or len(neurons) == len(values):
            if neurons and len(neurons) != len(values):
                raise self.refuse("torch.stack of neurons and parameters is not read; use torch.cat")
            self.record(out, getattr(torch, name if name != "concatenate" else "cat")([v.code for v in values],
                                                                                      dim), not neurons)
            return
        dim = dim % out.dim()
        like = neurons[0].code
        template = like.narrow(dim, 0, 1)
        if not bool((like == template).all()):
            raise self.refuse("concatenates parameters (e.g. a class token) along the features of a value; nnzoo "
                              "reads tokens joined along the positions")
        codes = []
        for v, t in zip(values, tensors):
            if not v.param:
                codes.append(v.code)
                continue
            shape = list(template.shape)
            shape[dim] = t.shape[dim]
            block = template.expand(shape)
            ids = self.params_into(block >> _SHIFT, v.code.expand(shape), "a concatenated parameter")
            codes.append(self.code_of(ids.reshape(shape)))
        self.record(out, torch.cat(codes, dim))

    def params_into(self, ids: Tensor, pids: Tensor, what: str) -> Tensor:
        """Token edges carrying parameter entries ``pids`` into neurons ``ids`` (same shapes); returns the node
        ids of the result (``ids``, or new sum neurons when ``ids`` cannot absorb them)."""
        ids, pids = ids.reshape(-1), pids.reshape(-1)
        neurons = torch.unique(ids)
        per = [torch.unique(pids[ids == n]) for n in neurons.tolist()]
        count = len(per[0])
        if any(len(p) != count for p in per) or len(torch.unique(torch.cat(per))) != count * len(neurons):
            raise self.refuse(f"{what}: each neuron must receive its own entries of the parameter (e.g. a (1, T, d) "
                              "position table added to d neurons)")
        target = neurons
        if not all(self.fresh[n] for n in neurons.tolist()):
            target = self.new_neurons(len(neurons))
            self.add_edges(neurons, target, "residual")
            self.consume(neurons)
        tokens = self.new_neurons(count, "token", slot=None)
        for t in range(count):
            self.slot[int(tokens[t])] = (self.ops, "token", t)
        self.role(torch.stack([p[0] for p in per]).min(), "weight")
        for n, p in zip(target.tolist(), per):
            self.add_edges(tokens, torch.full((count,), n), "token", p)
        remap = dict(zip(neurons.tolist(), target.tolist()))
        return torch.tensor([remap[i] for i in ids.tolist()], dtype=torch.long)

    # ------------------------------------------------------------ elementwise
    def activation(self, name: str, args: tuple, kwargs: dict, out: Tensor) -> None:
        v = self.value(args[0])
        if v is None or v.param:
            raise self.refuse(f"'{name}' of a parameter is not read")
        if name.startswith("leaky_relu"):
            slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
            if slope != 0.01:
                raise self.refuse(f"LeakyReLU slope {slope:g}; nnzoo's leaky_relu is slope 0.01")
        ids = torch.unique(self.neurons_of(v, name))
        for i in ids.tolist():
            if self.act[i] != "none":
                raise self.refuse(f"applies {_ACTS[name]} to neurons that already have {self.act[i]}; nnzoo reads "
                                  "one activation per neuron")
            self.act[i] = _ACTS[name]
            self.version[i] += 1
            self.fresh[i] = False
            if i in self.layer_of_node:
                self.layers[self.layer_of_node[i]]["activation"] = _ACTS[name]
        self.record(out, ((v.code >> _SHIFT) << _SHIFT) | (v.code & _VERSION) + 1)

    def neurons_of(self, v: _Value, what: str) -> Tensor:
        """All node ids of a neuron value, checked against their current versions."""
        ids, versions = v.code >> _SHIFT, v.code & _VERSION
        flat = ids.reshape(-1)
        current = torch.tensor([self.version[i] for i in torch.unique(flat).tolist()])
        lookup = dict(zip(torch.unique(flat).tolist(), current.tolist()))
        now = torch.tensor([lookup[i] for i in flat.tolist()]).reshape(ids.shape)
        if not bool((now == versions).all()):
            raise self.refuse(f"{what} reads a value from before its neurons' activation or normalisation")
        return flat

    def add(self, args: tuple, kwargs: dict, out: Tensor) -> None:
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        if kwargs.get("alpha", 1) != 1:
            raise self.refuse("add with alpha is not read")
        va, vb = self.value(a), self.value(b)
        if va is None or vb is None:
            raise self.refuse("adds a constant or an untraced tensor to a traced value; nnzoo reads sums of layer "
                              "outputs (residuals) and of the module's own parameters (positions)")
        if va.param and vb.param:
            raise self.refuse("adds two parameters; nnzoo reads a parameter added to a layer's output")
        shape = out.shape
        if va.param or vb.param:
            n, p = (vb, va) if va.param else (va, vb)
            nc = n.code.expand(shape)
            self.neurons_of(n, "the addition")
            ids = self.params_into(nc >> _SHIFT, p.code.expand(shape), "an added parameter")
            return self.record(out, self.code_of(ids.reshape(shape)))
        ia, ib = self.neurons_of(va, "the addition"), self.neurons_of(vb, "the addition")
        ia, ib = (va.code.expand(shape) >> _SHIFT).reshape(-1), (vb.code.expand(shape) >> _SHIFT).reshape(-1)
        pairs = torch.unique(torch.stack([ia, ib], 1), dim=0)
        if len(torch.unique(pairs[:, 0])) != len(pairs) or len(torch.unique(pairs[:, 1])) != len(pairs) \
                or bool((pairs[:, 0] == pairs[:, 1]).any()):
            raise self.refuse("adds values whose neurons do not correspond one to one (e.g. x + x, or features "
                              "added across positions); nnzoo reads residual additions of equal-width values")
        src, dst, result = pairs[:, 0], pairs[:, 1], ib
        if not all(self.fresh[i] for i in dst.tolist()):
            if all(self.fresh[i] for i in src.tolist()):
                src, dst, result = dst, src, ia
            else:  # neither side comes straight from a layer: new sum neurons
                total = self.new_neurons(len(pairs))
                self.add_edges(src, total, "residual")
                self.add_edges(dst, total, "residual")
                self.consume(src)
                self.consume(dst)
                remap = {(int(s), int(d)): int(t) for s, d, t in zip(src, dst, total)}
                ids = torch.tensor([remap[(int(x), int(y))] for x, y in zip(ia, ib)]).reshape(shape)
                return self.record(out, self.code_of(ids))
        self.add_edges(src, dst, "residual")
        self.consume(src)
        return self.record(out, self.code_of(result.reshape(shape)))

    def reduce(self, name: str, args: tuple, kwargs: dict, out: Tensor) -> None:
        v = self.value(args[0])
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        if v is None or v.param or dims is None:
            raise self.refuse(f"'{name}' over all entries of a traced value is not read; reduce over positions")
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        high, low = torch.amax(v.code, dims, keep), torch.amin(v.code, dims, keep)
        if not bool((high == low).all()):
            raise self.refuse(f"'{name}' reduces over neurons (features); nnzoo reads reductions over positions")
        self.record(out, high)

    def pool(self, args: tuple, out: Tensor) -> None:
        v = self.value(args[0])
        if v is None or v.param:
            raise self.refuse("pooling of a parameter is not read")
        channel = 1 if v.code.dim() > 2 else 0
        ids = self.neurons(v, channel, "pooling")
        self.record(out, self.along(ids, out.shape, channel))

    # ------------------------------------------------------------ layers
    def layer(self, ids_in: Tensor, count: int, weight: Tensor, bias: Tensor | None, kind: str, what: str,
              kernel: tuple[int, int] = (1, 1)) -> Tensor:
        if len(torch.unique(ids_in)) != len(ids_in):
            raise self.refuse(f"{what} reads one neuron twice")
        self.consume(ids_in)
        ids = self.new_neurons(count)
        dst, src = torch.meshgrid(ids, ids_in, indexing="ij")
        self.add_edges(src, dst, "weight", weight.reshape(count, len(ids_in), -1)[:, :, 0], kernel)
        self.role(weight, "weight")
        if bias is not None:
            self.role(bias, "bias")
            for i, p in zip(ids.tolist(), bias.reshape(-1).tolist()):
                self.feat[i][0] = p
        self.layers.append(dict(kind=kind, in_features=len(ids_in), out_features=count,
                                kernel_size=kernel, bias=bias is not None))
        for i in ids.tolist():
            self.layer_of_node[i] = len(self.layers) - 1
        return ids

    def op_linear(self, args: tuple, kwargs: dict, out: Tensor) -> None:
        bound = _bind(args, kwargs, ("input", "weight", "bias"))
        v = self.value(bound["input"])
        if v is None:
            raise self.refuse("a Linear layer's input is not a traced value")
        weight = self.params(bound["weight"], "the Linear weight")
        bias = self.params(bound.get("bias"), "the Linear bias")
        ids_in = self.neurons(v, -1, "the Linear layer")
        ids = self.layer(ids_in, weight.shape[0], weight, bias, "linear", "the Linear layer")
        self.record(out, self.along(ids, out.shape, -1))

    def op_conv2d(self, args: tuple, kwargs: dict, out: Tensor) -> None:
        bound = _bind(args, kwargs, ("input", "weight", "bias", "stride", "padding", "dilation", "groups"))
        if bound.get("groups", 1) != 1:
            raise self.refuse(f"a convolution with groups={bound['groups']}; nnzoo reads groups=1")
        v = self.value(bound["input"])
        weight = self.params(bound["weight"], "the convolution weight")
        bias = self.params(bound.get("bias"), "the convolution bias")
        kh, kw = weight.shape[2:]
        expected = weight[:, :, :1, :1] + torch.arange(kh * kw).reshape(1, 1, kh, kw)
        if not bool((weight == expected).all()):
            raise self.refuse("a convolution kernel that is not a stored (out, in, kh, kw) parameter")
        ids_in = self.neurons(v, 1, "the convolution")
        ids = self.layer(ids_in, weight.shape[0], weight, bias, "conv", "the convolution", (int(kh), int(kw)))
        self.record(out, self.along(ids, out.shape, 1))

    def norm_features(self, ids: Tensor, tensors: dict[str, Tensor | None], separate: bool) -> Tensor:
        if separate or not all(self.fresh[i] and self.feat[i][1] == -1 for i in ids.tolist()):
            old = ids
            ids = self.new_neurons(len(old), "norm")
            self.add_edges(old, ids, "norm")
            self.consume(old)
        for role, pid in tensors.items():
            if pid is None:
                continue
            self.role(pid, role)
            column = FEATURE_ROLES.index(role)
            for i, p in zip(ids.tolist(), pid.reshape(-1).tolist()):
                self.feat[i][column] = p
        for i in ids.tolist():
            self.version[i] += 1
        return ids

    def op_batch_norm(self, args: tuple, kwargs: dict, out: Tensor) -> None:
        bound = _bind(args, kwargs, ("input", "running_mean", "running_var", "weight", "bias"))
        v = self.value(bound["input"])
        tensors = {"running_mean": self.params(bound.get("running_mean"), "the BatchNorm running mean"),
                   "running_var": self.params(bound.get("running_var"), "the BatchNorm running variance"),
                   "norm_weight": self.params(bound.get("weight"), "the BatchNorm weight"),
                   "norm_bias": self.params(bound.get("bias"), "the BatchNorm bias")}
        if tensors["running_mean"] is None:
            raise self.refuse("BatchNorm without running statistics (track_running_stats=False) is not read")
        ids = self.norm_features(self.neurons(v, 1, "BatchNorm"), tensors, separate=False)
        self.record(out, self.along(ids, out.shape, 1))

    def op_layer_norm(self, args: tuple, kwargs: dict, out: Tensor) -> None:
        bound = _bind(args, kwargs, ("input", "normalized_shape", "weight", "bias"))
        if len(tuple(bound["normalized_shape"])) != 1:
            raise self.refuse(f"LayerNorm over {tuple(bound['normalized_shape'])}; nnzoo reads LayerNorm over "
                              "the last dimension")
        v = self.value(bound["input"])
        tensors = {"norm_weight": self.params(bound.get("weight"), "the LayerNorm weight"),
                   "norm_bias": self.params(bound.get("bias"), "the LayerNorm bias")}
        ids = self.norm_features(self.neurons(v, -1, "LayerNorm"), tensors, separate=True)
        self.record(out, self.along(ids, out.shape, -1))

    # ------------------------------------------------------------ attention
    def attention(self, q: Tensor, k: Tensor, v: Tensor) -> int:
        """Mark one head: query ids ``q`` paired with key ids ``k`` (same length), value ids ``v``."""
        key = tuple(q.tolist())
        if key in self.heads:
            return self.heads[key]
        for ids, kind in ((q, "query"), (k, "key")):
            for i in ids.tolist():
                if NODE_KINDS[self.kind[i]] not in ("hidden", kind):
                    raise self.refuse(f"attention reads neuron {i} as a {kind} but it is a {NODE_KINDS[self.kind[i]]}")
                self.kind[i] = NODE_KINDS.index(kind)
                self.slot[i] = (self.slot[i][0], kind)
        head = int(self.new_neurons(1, "head", slot=(self.ops + 1, "head"))[0])
        self.slot[head] = ("head", self.slot[int(q[0])][0])
        self.heads[key] = head
        self.add_edges(q, k, "qk")
        self.add_edges(q, torch.full_like(q, head), "head")
        self.add_edges(k, torch.full_like(k, head), "head")
        self.consume(q)
        self.consume(k)
        return head

    def values_of(self, head: int, v: Tensor) -> None:
        for i in v.tolist():
            if NODE_KINDS[self.kind[i]] not in ("hidden", "value"):
                raise self.refuse(f"attention reads neuron {i} as a value but it is a {NODE_KINDS[self.kind[i]]}")
            self.kind[i] = NODE_KINDS.index("value")
            self.slot[i] = (self.slot[i][0], "value")
        self.add_edges(torch.full_like(v, head), v, "head")

    def scores(self, qv: _Value, kv: _Value, out_shape: torch.Size, transposed: bool) -> Tensor:
        """``q @ k^T``: code of the ``(..., L, S)`` scores (head node ids)."""
        kcode = kv.code if transposed else kv.code.transpose(-2, -1)  # (..., d, S)
        self.neurons_of(qv, "the attention logits")
        self.neurons_of(kv, "the attention logits")
        batch = torch.broadcast_shapes(qv.code.shape[:-2], kcode.shape[:-2])
        q = qv.code.expand(*batch, *qv.code.shape[-2:]) >> _SHIFT
        k = kcode.expand(*batch, *kcode.shape[-2:]) >> _SHIFT
        if not bool((q == q[..., :1, :]).all()) or not bool((k == k[..., :, :1]).all()):
            raise self.refuse("q @ k^T whose features are not the same neurons at every position")
        q, k = q[..., 0, :].reshape(-1, q.shape[-1]), k[..., :, 0].reshape(-1, k.shape[-2])
        heads = torch.tensor([self.attention(a, b, None) for a, b in zip(q, k)], dtype=torch.long)
        return (heads << _SHIFT).reshape(*batch, 1, 1).expand(out_shape).clone()

    def mix(self, scores: _Value, vv: _Value, out_shape: torch.Size) -> Tensor:
        """``softmax(scores) @ v``: code of the output (the value neurons)."""
        heads = scores.code >> _SHIFT
        if not all(NODE_KINDS[self.kind[h]] == "head" for h in torch.unique(heads).tolist()):
            raise self.refuse("a matrix product of two layer outputs that is not q @ k^T then scores @ v")
        self.neurons_of(vv, "the attention output")
        batch = torch.broadcast_shapes(heads.shape[:-2], vv.code.shape[:-2])
        h = heads.expand(*batch, *heads.shape[-2:])[..., 0, 0].reshape(-1)
        vcode = vv.code.expand(*batch, *vv.code.shape[-2:])
        if not bool((vcode == vcode[..., :1, :]).all()):
            raise self.refuse("scores @ v whose v features are not the same neurons at every position")
        values = (vcode[..., 0, :] >> _SHIFT).reshape(len(h), -1)
        for head, ids in zip(h.tolist(), values):
            self.values_of(head, ids)
        return vcode[..., :1, :].expand(out_shape).clone()

    def op_matmul(self, args: tuple, kwargs: dict, out: Tensor) -> None:
        a, b = self.value(args[0]), self.value(args[1] if len(args) > 1 else kwargs["other"])
        if a is None or b is None or a.param or b.param or a.code.dim() < 2 or b.code.dim() < 2:
            raise self.refuse("a matrix product that is not attention (q @ k^T, scores @ v); write layers as "
                              "nn.Linear")
        if NODE_KINDS[self.kind[int(a.code.reshape(-1)[0]) >> _SHIFT]] == "head":
            return self.record(out, self.mix(a, b, out.shape))
        self.record(out, self.scores(a, b, out.shape, transposed=True))

    op___matmul__ = op_matmul
    op_bmm = op_matmul

    def op_scaled_dot_product_attention(self, args: tuple, kwargs: dict, out: Tensor) -> None:
        q, k, v = (self.value(a) for a in args[:3])
        if q is None or k is None or v is None:
            raise self.refuse("scaled_dot_product_attention of untraced tensors")
        shape = (*torch.broadcast_shapes(q.code.shape[:-2], k.code.shape[:-2]), q.code.shape[-2], k.code.shape[-2])
        scores = _Value(out, self.scores(q, k, torch.Size(shape), transposed=False), False)
        self.record(out, self.mix(scores, v, out.shape))

    def op_multi_head_attention_forward(self, args: tuple, kwargs: dict, out: Any) -> None:
        b = inspect.signature(F.multi_head_attention_forward).bind(*args, **kwargs)
        b.apply_defaults()
        a = b.arguments
        q, k, v = (self.value(a[n]) for n in ("query", "key", "value"))
        if q is None or k is None or v is None or not (torch.equal(q.code, k.code) and torch.equal(k.code, v.code)):
            raise self.refuse("attention whose query, key and value are not the same tensor (cross-attention) is "
                              "not read")
        if a["bias_k"] is not None or a["add_zero_attn"] or a["use_separate_proj_weight"]:
            raise self.refuse("MultiheadAttention with add_bias_kv, add_zero_attn or kdim/vdim is not read")
        heads, e = int(a["num_heads"]), int(a["embed_dim_to_check"])
        w = self.params(a["in_proj_weight"], "in_proj_weight")
        bias = self.params(a["in_proj_bias"], "in_proj_bias")
        ids_in = self.neurons(q, -1, "the attention")
        qkv = self.layer(ids_in, 3 * e, w, bias, "linear", "the attention")
        dh = e // heads
        for h in range(heads):
            part = slice(h * dh, (h + 1) * dh)
            head = self.attention(qkv[:e][part], qkv[e:2 * e][part], None)
            self.values_of(head, qkv[2 * e:][part])
        self.consume(qkv[2 * e:])
        ow, ob = self.params(a["out_proj_weight"], "out_proj.weight"), self.params(a["out_proj_bias"], "out_proj.bias")
        ids = self.layer(qkv[2 * e:], e, ow, ob, "linear", "the attention output")
        self.record(out[0], self.along(ids, out[0].shape, -1))


def _flat(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (tuple, list)) else [x]


def _tensors(args: tuple, kwargs: dict) -> Iterator[Tensor]:
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, (tuple, list)):
            yield from (t for t in a if isinstance(t, Tensor))


def _bind(args: tuple, kwargs: dict, names: tuple[str, ...]) -> dict[str, Any]:
    """Arguments by name for the functional calls read here (their leading positional parameters)."""
    out = dict(zip(names, args))
    out.update({k: v for k, v in kwargs.items()})
    return out


def trace_module(module: nn.Module, input_shape: tuple[int, ...], name: str | None = None) -> GraphSpec:
    """The :class:`GraphSpec` of ``module`` run on a random input of ``(2, *input_shape)`` (see the module
    docstring for what it reads).  ``module`` itself is not changed: a copy runs, in eval mode."""
    import copy
    if not isinstance(module, nn.Module):
        raise NnzooError(f"spec_from_module needs an nn.Module instance, got {type(module).__name__}")
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise NnzooError(f"input_shape {shape} must be positive sizes without the batch dimension, e.g. (3, 32, 32)")
    net = copy.deepcopy(module).eval()
    state = net.state_dict(keep_vars=True)
    tensors, pid_of, offset = [], {}, 0
    owners: dict[str, int] = {}
    for key, t in state.items():
        if not isinstance(t, Tensor) or not t.is_floating_point():
            continue
        owner = key.rsplit(".", 1)[0] if "." in key else ""
        layer = owners.setdefault(owner, len(owners))
        n = t.numel()
        if id(t) not in pid_of:
            pid_of[id(t)] = torch.arange(offset, offset + n).reshape(t.shape)
        tensors.append((key, tuple(t.shape), offset, layer))
        offset += n
    tracer = _Tracer(net)
    for key, t in state.items():
        if id(t) in pid_of:
            tracer.values[id(t)] = _Value(t, pid_of[id(t)], True)
    for p in net.parameters():
        p.requires_grad_(True)  # keeps torch's fused inference paths (which skip the functions we read) off

    def pre(mod: nn.Module, _args: Any) -> None:
        tracer.stack.append((paths.get(mod, ""), type(mod).__name__))

    def post(mod: nn.Module, _args: Any, _out: Any) -> None:
        tracer.stack.pop()
    paths = {m: p for p, m in net.named_modules()}
    handles = [m.register_forward_pre_hook(pre) for m in net.modules()] + \
        [m.register_forward_hook(post) for m in net.modules()]
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    axis = 1 if len(shape) == 3 else -1
    inputs = tracer.new_neurons(shape[0] if len(shape) == 3 else shape[-1], "input")
    tracer.values[id(x)] = _Value(x, tracer.along(inputs, x.shape, axis), False)
    try:
        with torch.enable_grad(), tracer:
            y = net(x)
    except NnzooError:
        raise
    except Exception as exc:  # the module itself fails on this input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise NnzooError(f"{tracer.where()} fails on an input of shape (2, {', '.join(map(str, shape))}) "
                         f"({type(exc).__name__}: {first}); check input_shape") from None
    finally:
        for h in handles:
            h.remove()
    tracer.stack = [("", type(module).__name__)]
    out = tracer.value(y)
    if out is None or out.param or y.dim() < 2:
        raise tracer.refuse("forward does not return a traced (batch, outputs) tensor computed from its input")
    outputs = tracer.neurons(out, -1, "the output")
    if len(torch.unique(outputs)) != len(outputs) or bool(torch.isin(outputs, inputs).any()):
        raise tracer.refuse("its outputs are not distinct neurons computed by a layer")
    return _finish(tracer, tensors, inputs, outputs, shape, name or type(module).__name__)


def _finish(tracer: _Tracer, tensors: list, inputs: Tensor, outputs: Tensor, shape: tuple[int, ...],
            name: str) -> GraphSpec:
    """Keep the neurons the outputs depend on, number slots and kinds, and build the spec."""
    edges = np.concatenate(tracer.edges) if tracer.edges else np.zeros((0, 6), dtype=np.int64)
    n = len(tracer.kind)
    keep = np.zeros(n, dtype=bool)
    keep[outputs.numpy()] = True
    changed = True
    while changed:  # ancestors of the outputs
        src_needed = keep[edges[:, 1]] & ~keep[edges[:, 0]]
        changed = bool(src_needed.any())
        keep[edges[src_needed, 0]] = True
    keep[inputs.numpy()] = True
    edges = edges[keep[edges[:, 0]] & keep[edges[:, 1]]]
    new_id = np.cumsum(keep) - 1
    kind = np.array(tracer.kind)
    is_out = np.zeros(n, dtype=bool)
    is_out[outputs.numpy()] = True
    kind[is_out] = NODE_KINDS.index("output")
    # weight edges into query/key/value neurons and out of value neurons carry their attention role
    ek = edges[:, 2]
    weight = ek == EDGE_KINDS.index("weight")
    for node_kind in ("query", "key", "value"):
        ek[weight & (kind[edges[:, 1]] == NODE_KINDS.index(node_kind))] = EDGE_KINDS.index(node_kind)
    ek[weight & (kind[edges[:, 0]] == NODE_KINDS.index("value"))] = EDGE_KINDS.index("out")
    pos = np.zeros(n, dtype=np.int64)
    n_in, n_out = len(inputs), len(outputs)
    pos[inputs.numpy()] = np.arange(n_in)
    pos[outputs.numpy()] = np.arange(n_out) - n_out
    slots: dict[tuple, int] = {}
    for i in np.nonzero(keep & (kind != NODE_KINDS.index("input")) & ~is_out)[0]:
        pos[i] = n_in + slots.setdefault(tracer.slot[i], len(slots))
    nodes = np.concatenate([kind[:, None], pos[:, None],
                            np.array([ACTIVATIONS.index(a) for a in tracer.act])[:, None],
                            np.array(tracer.feat, dtype=np.int64).reshape(n, len(FEATURE_ROLES))], axis=1)[keep]
    edges[:, 0], edges[:, 1] = new_id[edges[:, 0]], new_id[edges[:, 1]]
    starts = sorted((offset, key, tshape, layer) for key, tshape, offset, layer in tensors)
    out_tensors = []
    for offset, key, tshape, layer in starts:
        role = tracer.roles.get(offset)
        if role is None:
            role = next((r for r in ("running_mean", "running_var", "bias") if key.endswith(r)), "weight")
        out_tensors.append(GraphTensor(key, tshape, role, layer))
    layers = tuple(LayerSpec(**{**layer, "activation": layer.get("activation", "none")}) for layer in tracer.layers)
    return GraphSpec.from_arrays(tuple(out_tensors), nodes, edges, num_inputs=n_in, num_outputs=n_out,
                                 hidden_slots=len(slots), layers=layers, input_shape=shape, name=name)
