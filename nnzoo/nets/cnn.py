"""Run and initialise many small CNNs of one architecture at once.

A CNN zoo is built and re-evaluated by running hundreds of networks over the
same images.  Looping over networks is dominated by Python overhead, so
:func:`cnn_forward` runs ``B`` networks of one :class:`NetworkSpec` as a single
*grouped* convolution: the batch of images becomes ``(N, B * C, H, W)`` and
the ``B`` kernels are stacked along the output channels with ``groups=B``.

Semantics (shared with :mod:`nnzoo.graphs`): each layer is conv/linear, then
BatchNorm (if any), then the activation; a convolution followed by a linear
layer is global-average-pooled; a residual ``(src, dst)`` adds the first
``min(C_src, C_dst)`` channels of group ``src``'s output to group ``dst``'s
output (after its activation), so both must have the same spatial size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nnzoo.errors import NnzooError
from nnzoo.nets.functional import activation, unflatten
from nnzoo.nets.spec import LayerSpec, NetworkSpec

BN_EPS = 1e-5
INITS = ("he_normal", "glorot_normal", "orthogonal", "random_normal", "truncated_normal")
"""Weight initialisers of the Unterthiner et al. (2020) grid."""


def cnn_forward(params: Tensor, spec: NetworkSpec, images: Tensor, *, train: bool = False,
                dropout: Tensor | None = None, batch_stats: list[tuple[int, Tensor, Tensor]] | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Logits ``(B, N, outputs)`` of ``B`` networks with flat ``params`` ``(B, P)``.

    ``images`` is ``(N, C, H, W)`` (the same images for every network) or
    ``(B, N, C, H, W)``.  With ``train=True`` BatchNorm uses batch statistics
    (appended to ``batch_stats`` as ``(layer, mean, var)`` for the caller to
    update running averages) and ``dropout`` ``(B,)`` drops pooled features
    before the first linear layer; in eval mode BatchNorm uses the stored
    running statistics.
    """
    b = params.shape[0]
    layers = unflatten(params, spec)
    if images.dim() == 4:
        images = images.unsqueeze(0).expand(b, *images.shape)
    n = images.shape[1]
    x = images.transpose(0, 1).reshape(n, b * images.shape[2], *images.shape[3:])  # (N, B*C, H, W)
    outputs: list[Tensor] = [x]  # per group, for residuals
    for index, (layer, tensors) in enumerate(zip(spec.layers, layers)):
        if layer.kind == "conv":
            if x.dim() != 4:
                raise NnzooError(f"{spec.describe()}: conv layer {index} follows a linear layer")
            weight = tensors["weight"].reshape(b * layer.out_features, layer.in_features, *layer.kernel_size)
            bias = tensors["bias"].reshape(-1) if "bias" in tensors else None
            x = F.conv2d(x, weight, bias, stride=layer.stride, padding=layer.padding, groups=b)
        else:
            if x.dim() == 4:  # global average pooling between the conv and the dense part
                x = x.mean(dim=(2, 3))
                if dropout is not None and train:
                    keep = 1.0 - dropout.to(x.dtype).repeat_interleave(layer.in_features)
                    mask = torch.rand(x.shape, generator=generator, device=x.device) < keep
                    x = x * mask / keep.clamp_min(1e-6)
            x = torch.einsum("nbi,boi->nbo", x.view(n, b, layer.in_features), tensors["weight"])
            if "bias" in tensors:
                x = x + tensors["bias"]
            x = x.reshape(n, b * layer.out_features)
        if layer.norm:
            x = _batch_norm(x, layer, tensors, b, index, train, batch_stats)
        x = activation(layer.activation, x, spec.w0)
        for src, dst in spec.residuals:
            if dst == index + 1:
                x = _add_residual(x, outputs[src], spec.widths[src], layer.out_features, b, spec)
        outputs.append(x)
    if x.dim() == 4:
        x = x.mean(dim=(2, 3))
    return x.view(n, b, spec.num_outputs).transpose(0, 1)


def _batch_norm(x: Tensor, layer: LayerSpec, t: dict[str, Tensor], b: int, index: int, train: bool,
                batch_stats: list | None) -> Tensor:
    c = layer.out_features
    shape = (1, b * c) + (1,) * (x.dim() - 2)
    if train:
        dims = [0] + list(range(2, x.dim()))
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
        if batch_stats is not None:
            batch_stats.append((index, mean.detach().view(b, c), var.detach().view(b, c)))
    else:
        mean, var = t["running_mean"].reshape(-1), t["running_var"].reshape(-1)
    x = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + BN_EPS)
    return x * t["norm_weight"].reshape(shape) + t["norm_bias"].reshape(shape)


def _add_residual(x: Tensor, skip: Tensor, c_src: int, c_dst: int, b: int, spec: NetworkSpec) -> Tensor:
    if skip.shape[2:] != x.shape[2:]:
        raise NnzooError(f"{spec.describe()}: a residual joins outputs of spatial size {tuple(skip.shape[2:])} "
                         f"and {tuple(x.shape[2:])}; residuals need stride 1 and 'same' padding")
    m = min(c_src, c_dst)
    rest = x.shape[2:]
    x = x.view(x.shape[0], b, c_dst, *rest)
    skip = skip.view(skip.shape[0], b, c_src, *rest)
    return torch.cat([x[:, :, :m] + skip[:, :, :m], x[:, :, m:]], dim=2).reshape(x.shape[0], b * c_dst, *rest)


def cnn_init(num: int, spec: NetworkSpec, init: list[str] | str = "he_normal", init_std: Tensor | float = 0.05,
             generator: torch.Generator | None = None) -> Tensor:
    """Flat ``(num, P)`` initial parameters; ``init`` (one name or one per network) from :data:`INITS`.

    Biases and BatchNorm shifts start at zero, BatchNorm scales and running
    variances at one.  ``init_std`` is the standard deviation of the
    ``random_normal`` / ``truncated_normal`` initialisers (per network).
    """
    names = [init] * num if isinstance(init, str) else list(init)
    unknown = set(names) - set(INITS)
    if unknown or len(names) != num:
        raise NnzooError(f"unknown or missing initialisers {sorted(unknown)}; choose from {', '.join(INITS)}")
    std = torch.as_tensor(init_std, dtype=torch.float32).expand(num)
    params = torch.zeros(num, spec.num_params)
    for s in spec.slots:
        if s.role in ("norm_weight", "running_var"):
            params[:, s.start:s.end] = 1.0
        if s.role != "weight":
            continue
        fan_in = math.prod(s.shape[1:])
        fan_out = s.shape[0] * math.prod(s.shape[2:])
        for i, name in enumerate(names):
            params[i, s.start:s.end] = _init_tensor(name, s.shape, fan_in, fan_out, float(std[i]),
                                                    generator).reshape(-1)
    return params


def _init_tensor(name: str, shape: tuple[int, ...], fan_in: int, fan_out: int, std: float,
                 generator: torch.Generator | None) -> Tensor:
    normal = torch.randn(shape, generator=generator)
    if name == "he_normal":
        return normal * math.sqrt(2.0 / fan_in)
    if name == "glorot_normal":
        return normal * math.sqrt(2.0 / (fan_in + fan_out))
    if name == "random_normal":
        return normal * std
    if name == "truncated_normal":  # resample beyond two standard deviations, like Keras
        while (bad := normal.abs() > 2).any():
            normal[bad] = torch.randn(int(bad.sum()), generator=generator)
        return normal * std
    flat = normal.reshape(shape[0], -1)  # orthogonal
    q, r = torch.linalg.qr(flat if flat.shape[0] >= flat.shape[1] else flat.t())
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    q = q if flat.shape[0] >= flat.shape[1] else q.t()
    return q.reshape(shape)
