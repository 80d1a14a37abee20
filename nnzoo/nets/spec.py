"""Architecture descriptions of the networks that live in a weight dataset.

A :class:`NetworkSpec` says which tensors a network has and in which order they
are laid out in one flat parameter vector.  Every other part of nnzoo works on
``(spec, flat_params)`` pairs:

* datasets store a ``(num_networks, num_params)`` tensor per architecture,
* :mod:`nnzoo.graphs` turns a spec into a graph template (index arithmetic only),
* baselines reshape the flat vector into per-layer tensors.

The flat layout is PyTorch's own: for each layer ``weight`` (``(out, in)`` or
``(out, in, kh, kw)``), then ``bias`` (``(out,)``), then optional BatchNorm
tensors.  Foreign formats (TensorFlow kernels, DWSNets ``.pth``) are converted
into it by their loaders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

from nnzoo.errors import NnzooError

ACTIVATIONS = ("none", "relu", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "sine")
"""Activation names known to the functional forward and to activation embeddings."""

NORM_ROLES = ("norm_weight", "norm_bias", "running_mean", "running_var")

MAX_NETWORK_PARAMS = 10_000_000
"""Most parameters one network of a dataset may have (the zoos' networks have 1-100 thousand): every dataset
holds a ``(num_networks, num_params)`` tensor, so ``data.widths=[2,100000,100000,1]`` or a crafted spec file
would ask for terabytes before anything is read."""


@dataclass(frozen=True)
class LayerSpec:
    """One affine layer (dense or convolutional) followed by optional norm and activation.

    ``in_features``/``out_features`` are channels for convolutions.  ``stride`` and
    ``padding`` only matter when the network itself is run (probe features,
    re-evaluation of a CNN zoo), not for its graph.
    """

    kind: Literal["linear", "conv"]
    in_features: int
    out_features: int
    kernel_size: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: str | int = 0
    bias: bool = True
    norm: str | None = None
    activation: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "conv"):
            raise NnzooError(f"layer kind must be 'linear' or 'conv', got '{self.kind}'")
        if self.in_features < 1 or self.out_features < 1:
            raise NnzooError(f"layer sizes must be positive, got {self.in_features}->{self.out_features}")
        if self.activation not in ACTIVATIONS:
            raise NnzooError(f"unknown activation '{self.activation}'; known: {', '.join(ACTIVATIONS)}")
        if self.norm not in (None, "batchnorm"):
            raise NnzooError(f"unknown norm '{self.norm}'; only 'batchnorm' is supported")
        object.__setattr__(self, "kernel_size", tuple(int(k) for k in self.kernel_size))

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.kind == "linear":
            return (self.out_features, self.in_features)
        return (self.out_features, self.in_features, *self.kernel_size)


@dataclass(frozen=True)
class TensorSlot:
    """Where one tensor of a network sits in the flat parameter vector."""

    layer: int
    role: str  # "weight" | "bias" | one of NORM_ROLES
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class NetworkSpec:
    """An architecture: its layers, skip connections and how to run it.

    ``residuals`` are pairs ``(src_group, dst_group)`` of *neuron groups*
    (group 0 = inputs, group ``l + 1`` = outputs of layer ``l``): the first
    ``min(C_src, C_dst)`` channels of ``src`` are added to those of ``dst``.
    ``w0`` is the SIREN frequency used by ``sine`` activations and
    ``output_offset`` is added to the network output (DWSNets INRs use ``+0.5``).
    """

    layers: tuple[LayerSpec, ...]
    residuals: tuple[tuple[int, int], ...] = ()
    w0: float = 30.0
    output_offset: float = 0.0
    input_kind: Literal["coords", "image"] = "coords"
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "residuals", tuple(tuple(int(v) for v in r) for r in self.residuals))
        if not layers:
            raise NnzooError("a network needs at least one layer")
        for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
            if a.out_features != b.in_features:
                raise NnzooError(f"layer {i} outputs {a.out_features} features but layer {i + 1} "
                                 f"expects {b.in_features}")
        for src, dst in self.residuals:
            if not 0 <= src < dst <= len(layers):
                raise NnzooError(f"bad residual ({src}, {dst}) for a {len(layers)}-layer network")
        if self.num_params > MAX_NETWORK_PARAMS:  # before anything allocates (num_networks, num_params)
            raise NnzooError(f"a {self.describe()} network has {self.num_params:,} parameters, more than nnzoo's "
                             f"limit of {MAX_NETWORK_PARAMS:,} per network; check the layer widths")

    # ----------------------------------------------------------------- sizes
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def widths(self) -> tuple[int, ...]:
        """Neurons (or channels) per group: inputs, then each layer's outputs."""
        return (self.layers[0].in_features, *(layer.out_features for layer in self.layers))

    @property
    def num_inputs(self) -> int:
        return self.widths[0]

    @property
    def num_outputs(self) -> int:
        return self.widths[-1]

    @property
    def num_nodes(self) -> int:
        return sum(self.widths)

    @property
    def max_kernel(self) -> tuple[int, int]:
        return (max(layer.kernel_size[0] for layer in self.layers),
                max(layer.kernel_size[1] for layer in self.layers))

    @property
    def is_conv(self) -> bool:
        return any(layer.kind == "conv" for layer in self.layers)

    @property
    def has_norm(self) -> bool:
        return any(layer.norm for layer in self.layers)

    @property
    def hidden_slots(self) -> int:
        """Positional-embedding slots of hidden neurons: one per hidden layer (see :mod:`nnzoo.graphs`)."""
        return self.num_layers - 1

    @cached_property
    def slots(self) -> tuple[TensorSlot, ...]:
        """Flat-vector layout: per layer weight, bias, then BatchNorm tensors."""
        slots, offset = [], 0
        for index, layer in enumerate(self.layers):
            shapes: list[tuple[str, tuple[int, ...]]] = [("weight", layer.weight_shape)]
            if layer.bias:
                shapes.append(("bias", (layer.out_features,)))
            if layer.norm:
                shapes += [(role, (layer.out_features,)) for role in NORM_ROLES]
            for role, shape in shapes:
                size = 1
                for s in shape:
                    size *= s
                slots.append(TensorSlot(index, role, shape, offset, offset + size))
                offset += size
        return tuple(slots)

    @property
    def num_params(self) -> int:
        return self.slots[-1].end

    def slot(self, layer: int, role: str) -> TensorSlot | None:
        for s in self.slots:
            if s.layer == layer and s.role == role:
                return s
        return None

    # ------------------------------------------------------------ describing
    def describe(self) -> str:
        """Short human-readable name, e.g. ``mlp 2-32-32-1 sine``."""
        kind = "cnn" if self.is_conv else "mlp"
        acts = sorted({layer.activation for layer in self.layers[:-1]}) or ["none"]
        text = f"{kind} {'-'.join(map(str, self.widths))} {'/'.join(acts)}"
        kernels = sorted({layer.kernel_size for layer in self.layers if layer.kind == "conv"})
        if kernels:
            text += " k" + "/".join(f"{k[0]}" if k[0] == k[1] else f"{k[0]}x{k[1]}" for k in kernels)
        if self.residuals:
            text += f" +{len(self.residuals)}res"
        if any(layer.norm for layer in self.layers):
            text += " bn"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (YAML/JSON safe) used in checkpoints and caches."""
        d = asdict(self)
        d["layers"] = [dict(layer, kernel_size=list(layer["kernel_size"])) for layer in d["layers"]]
        d["residuals"] = [list(r) for r in self.residuals]
        d["extra"] = [list(kv) for kv in self.extra]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NetworkSpec":
        d = dict(d)
        d["layers"] = tuple(LayerSpec(**{**layer, "kernel_size": tuple(layer.get("kernel_size", (1, 1)))})
                            for layer in d["layers"])
        d["residuals"] = tuple(tuple(r) for r in d.get("residuals", ()))
        d["extra"] = tuple(tuple(kv) for kv in d.get("extra", ()))
        return cls(**d)


def mlp_spec(widths: list[int] | tuple[int, ...], activation: str = "relu", *, w0: float = 30.0,
             output_offset: float = 0.0) -> NetworkSpec:
    """Spec of a plain MLP ``widths[0] -> ... -> widths[-1]`` with a linear last layer."""
    if len(widths) < 2:
        raise NnzooError(f"an MLP needs at least input and output widths, got {list(widths)}")
    layers = tuple(
        LayerSpec("linear", widths[i], widths[i + 1],
                  activation=activation if i < len(widths) - 2 else "none")
        for i in range(len(widths) - 1))
    return NetworkSpec(layers, w0=w0, output_offset=output_offset)


def siren_spec(widths: list[int] | tuple[int, ...] = (2, 32, 32, 1), w0: float = 30.0,
               output_offset: float = 0.5) -> NetworkSpec:
    """The DWSNets SIREN variant: sine hidden layers (``sin(w0 * x)``), linear output, ``+0.5``."""
    return mlp_spec(widths, "sine", w0=w0, output_offset=output_offset)
