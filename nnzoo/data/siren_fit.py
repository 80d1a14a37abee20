"""Fit many SIRENs to many images at once.

Why it looks like this: a SIREN has only 1,185 parameters, so fitting them one
by one is dominated by Python overhead.  We fit a *chunk* of SIRENs as one
``(C, P)`` tensor (one ``baddbmm`` per layer for the whole chunk) with a
hand-written Adam, which is elementwise and therefore exactly ``C`` independent
Adams.  Chunks of ~100 keep the working set in cache (measured fastest on two
cores).  A SIREN stops when it first reaches ``psnr_target`` (the DWSNets recipe
early-stops at 40 dB); finished SIRENs leave the chunk so the rest run faster.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nnzoo.errors import NnzooError
from nnzoo.io import save_tensors
from nnzoo.nets.functional import mlp_forward, params_to_state_dict, siren_init
from nnzoo.nets.spec import NetworkSpec, siren_spec

IMAGE_SIZE = (28, 28)
"""Height and width of MNIST / FashionMNIST images: the grid every DWSNets INR was fitted on."""

INTENSITY_RANGE = (0.0, 1.0)
"""Pixel values a SIREN is fitted to (``fit_sirens`` images; the INR's output plus its offset)."""

COORDINATE_ORDER = "input 0 = x (column), input 1 = y (row)"
"""What the two inputs of :func:`grid_coordinates` are, in words."""

STATE_DICT_PREFIX = "seq"
"""Key prefix of INR files written here (``seq.{i}.{weight,bias}``, the DWSNets INR class)."""


@dataclass(frozen=True)
class FitRecipe:
    """How a SIREN is fitted unless told otherwise: the recipe of the built ``mnist_inr`` data.

    It lives here, below the offline builder, whose :class:`~nnzoo.data.builders.inr.InrBuildConfig` takes its
    defaults from :data:`DEFAULT_FIT`: :func:`fit_images` and the builder share one set of numbers without
    importing each other."""

    widths: tuple[int, ...] = (2, 32, 32, 1)
    w0: float = 30.0
    init: str = "siren"  # "siren" (fast, >= 40 dB) or "dws" (the DWSNets init, slow)
    steps: int = 1000  # max Adam steps per SIREN
    lr: float = 3e-3
    psnr_target: float = 40.0  # early stop per SIREN, as in the DWSNets recipe
    chunk_size: int = 100


DEFAULT_FIT = FitRecipe()


@dataclass
class FitResult:
    params: Tensor  # (N, P) fitted flat parameters
    psnr: Tensor  # (N,) PSNR in dB of each fitted SIREN (peak value 1.0)
    steps: Tensor  # (N,) optimisation steps each SIREN took


def grid_coordinates(height: int, width: int) -> Tensor:
    """Pixel grid on ``[-1, 1]^2`` as ``(H*W, 2)`` in the public DWSNets / Neural Graphs convention.

    Input 0 is the column (x), input 1 the row (y), both ``linspace(-1, 1, n)``,
    flattened row-major (``np.meshgrid(x, y)`` with its default ``xy`` indexing),
    so pixel ``(row i, column j)`` is coordinate ``(x_j, y_i)`` at position
    ``i * W + j`` of the flat image.  Public INRs were fitted on this grid and
    input neurons carry their own embeddings, so the order is part of the data.
    """
    xs = torch.linspace(-1.0, 1.0, width)
    ys = torch.linspace(-1.0, 1.0, height)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)


def render_inrs(params: Tensor, spec: NetworkSpec, height: int, width: int) -> Tensor:
    """``(B, H, W)`` images drawn by ``B`` INRs ``(B, P)`` on the public grid (:func:`grid_coordinates`),
    output offset included: one batched forward pass, no loop over networks.  Differentiable."""
    coords = grid_coordinates(height, width).to(device=params.device, dtype=params.dtype)
    return mlp_forward(params, spec, coords).reshape(params.shape[0], height, width)


def coordinate_convention(height: int | None = None, width: int | None = None) -> dict[str, Any]:
    """The convention of :func:`grid_coordinates` in words and numbers (for convention cards and help).

    Without a size the grid is described for an ``H x W`` image.
    """
    coords = grid_coordinates(height or 2, width or 2)
    lo, hi = float(coords.min()), float(coords.max())
    size = f"{height}x{width}" if height and width else "HxW (the image size)"
    return {"coordinate_order": COORDINATE_ORDER, "coordinate_range": [lo, hi],
            "grid": f"{size}, linspace({lo:g}, {hi:g}, n) on each axis, endpoints included, flattened row-major "
                    f"(np.meshgrid(x, y), xy indexing): pixel (row i, column j) is input (x_j, y_i) at position "
                    f"i * {width or 'W'} + j",
            "intensity_range": list(INTENSITY_RANGE)}


def psnr_from_mse(mse: Tensor) -> Tensor:
    """PSNR in dB for signals with peak value 1."""
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def fit_sirens(images: Tensor, spec: NetworkSpec, *, steps: int = 500, lr: float = 1e-3,
               psnr_target: float | None = 40.0, chunk_size: int = 100, seed: int = 0, init: str = "siren",
               progress: Callable[[int], None] | None = None, compile: bool = False) -> FitResult:
    """Fit one SIREN of ``spec`` to each image in ``images`` ``(N, H, W)`` with values in ``[0, 1]``.

    ``progress`` is called with the number of SIRENs finished after each chunk.
    ``compile`` runs the forward pass and loss through ``torch.compile``
    (dynamic shapes, since finished SIRENs leave the chunk); it needs a C++
    compiler on CPU and pays a one-off compilation.
    """
    n, height, width = images.shape
    coords = grid_coordinates(height, width)
    targets = images.reshape(n, height * width, 1).float()
    generator = torch.Generator().manual_seed(seed)
    init = siren_init(n, spec, generator, scheme=init)
    out_params = torch.empty_like(init)
    out_psnr = torch.empty(n)
    out_steps = torch.empty(n, dtype=torch.long)
    loss_fn = torch.compile(_per_siren_mse, dynamic=True) if compile else _per_siren_mse
    for start in range(0, n, chunk_size):
        idx = torch.arange(start, min(start + chunk_size, n))
        p, q, k = _fit_chunk(init[idx], targets[idx], coords, spec, steps, lr, psnr_target, loss_fn)
        out_params[idx], out_psnr[idx], out_steps[idx] = p, q, k
        if progress is not None:
            progress(len(idx))
    return FitResult(out_params, out_psnr, out_steps)


def _per_siren_mse(params: Tensor, spec: NetworkSpec, coords: Tensor, targets: Tensor) -> Tensor:
    return (mlp_forward(params, spec, coords) - targets).pow(2).mean(dim=(1, 2))


def _fit_chunk(params: Tensor, targets: Tensor, coords: Tensor, spec: NetworkSpec, steps: int, lr: float,
               psnr_target: float | None, loss_fn=_per_siren_mse) -> tuple[Tensor, Tensor, Tensor]:
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    n = params.shape[0]
    final = params.clone()
    final_psnr = torch.full((n,), -math.inf)
    final_steps = torch.full((n,), steps, dtype=torch.long)
    active = torch.arange(n)  # chunk-local ids still being optimised
    p = params.clone()
    m = torch.zeros_like(p)
    v = torch.zeros_like(p)
    for step in range(steps + 1):
        p.requires_grad_(True)
        mse = loss_fn(p, spec, coords, targets[active])
        psnr = psnr_from_mse(mse.detach())
        if step == steps:
            done = torch.ones_like(psnr, dtype=torch.bool)
        elif psnr_target is not None:
            done = psnr >= psnr_target
        else:
            done = torch.zeros_like(psnr, dtype=torch.bool)
        if done.any():  # keep the parameters that reached the target
            ids = active[done]
            final[ids], final_psnr[ids], final_steps[ids] = p.detach()[done], psnr[done], step
            if done.all():
                break
        (grad,) = torch.autograd.grad(mse.sum(), p)
        keep = ~done  # finished SIRENs leave the chunk
        active, p, grad, m, v = active[keep], p.detach()[keep], grad[keep], m[keep], v[keep]
        with torch.no_grad():
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            t = step + 1
            step_size = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            p = p - step_size * m / (v.sqrt() + eps)
    return final, final_psnr, final_steps


# ------------------------------------------------------------- your own images

@dataclass
class ImageFit:
    """One SIREN fitted to one image by :func:`fit_image`."""

    state_dict: dict[str, Tensor]  # seq.{i}.weight (out, in), seq.{i}.bias (out,): the DWSNets INR keys
    params: Tensor  # (P,) the same parameters, flat
    image: Tensor  # (H, W) the target the SIREN was fitted to, in [0, 1]
    psnr: float  # dB reached on the image (peak value 1)
    steps: int  # Adam steps taken
    psnr_target: float | None  # the early-stopping target the fit aimed at

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state dict (atomically) to ``path``, e.g. ``digit.pth`` for ``nnzoo predict``."""
        save_tensors(path, self.state_dict)
        return Path(path)


def read_image(image: str | os.PathLike | np.ndarray | Tensor, *, size: tuple[int, int] = IMAGE_SIZE,
               invert: bool = False) -> Tensor:
    """An image as a ``size`` float tensor in ``[0, 1]``, ready for :func:`fit_sirens`.

    ``image`` is a path (PNG, JPEG or anything Pillow reads, at most
    :data:`nnzoo.data.images.MAX_IMAGE_PIXELS` pixels) or an array/tensor
    ``(H, W)``, ``(H, W, C)`` or ``(1, H, W)``: integer values are scaled by their type's
    maximum (uint8: 255), floats must already lie in ``[0, 1]``.  Colour is converted to
    grayscale (ITU-R 601 luma; an alpha channel is composited over black), ``invert`` maps
    ``v -> 1 - v``, a non-square image is padded to a square (centred, with the median of its
    border as background), and the result is resized (antialiased bilinear) to ``size``.

    MNIST digits are *white strokes on a black background*; INR classifiers trained on them
    expect that, so pass ``invert=True`` for a dark drawing on light paper.
    """
    name = str(image) if isinstance(image, (str, os.PathLike)) else "image array"
    if isinstance(image, (str, os.PathLike)):
        from nnzoo.data.images import read_image_file
        array = read_image_file(image)  # the one image reader: its pixel limit is checked before decoding
    else:
        array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        pass
    elif array.ndim != 2:
        raise NnzooError(f"{name} has shape {array.shape}; pass a 2-D grayscale image (H, W), or (H, W, C) "
                         "with 1, 3 or 4 channels")
    if array.dtype == bool:
        array = array.astype(np.float64)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64) / np.iinfo(array.dtype).max
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise NnzooError(f"{name} contains NaN or Inf values; pass intensities in [0, 1]")
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise NnzooError(f"{name} has values in [{array.min():g}, {array.max():g}]; pass floats in [0, 1] "
                             "or integers (uint8: 0-255)")
    else:
        raise NnzooError(f"{name} has dtype {array.dtype}; pass numbers (floats in [0, 1] or uint8)")
    if array.ndim == 3:
        channels = array.shape[-1]
        alpha = array[..., 3] if channels == 4 else 1.0
        gray = array[..., 0] if channels == 1 else array[..., :3] @ np.array([0.299, 0.587, 0.114])
        array = gray * alpha
    if array.size == 0:
        raise NnzooError(f"{name} is empty")
    x = torch.tensor(array, dtype=torch.float32)
    if invert:
        x = 1.0 - x
    h, w = x.shape
    if h != w:  # pad to a square with the background (the border's median) to keep the aspect ratio
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        background = float(_border(x).median())
        x = F.pad(x, (left, side - w - left, top, side - h - top), value=background)
    if tuple(x.shape) != tuple(size):
        x = F.interpolate(x[None, None], size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[0, 0]
    return x.clamp(0.0, 1.0)


def _border(image: Tensor) -> Tensor:
    return torch.cat([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def border_mean(image: Tensor) -> float:
    """Mean intensity of the outermost pixels: near 0 for MNIST-like images (white on black)."""
    return float(_border(image).mean())


MAX_FIT_STEPS = 1_000_000
"""Most Adam steps a SIREN fit may take (hours on a CPU; the recipe's 1,000 reach 40 dB): a larger count
is a typo (``--steps 1e23`` overflows the step counters)."""

MAX_SEED = 2**63 - 1
"""Largest seed of a SIREN initialisation (``torch.Generator.manual_seed`` takes 64-bit seeds)."""


def check_fit_options(steps: Any, lr: Any, psnr_target: Any, seed: Any) -> None:
    """Refuse a fit that cannot give an INR, in one line naming the option: no step at all (``--steps 0`` or
    ``-1`` wrote the untrained initialisation, exit 0), an overflowing count or seed, a NaN target."""
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if steps is not None and not (whole(steps) and 1 <= steps <= MAX_FIT_STEPS):
        raise NnzooError(f"--steps must be a whole number of Adam steps from 1 to {MAX_FIT_STEPS:,}, got {steps!r}; "
                         "fewer than one step writes an unfitted INR")
    if not (whole(seed) and 0 <= seed <= MAX_SEED):
        raise NnzooError(f"--seed must be a whole number from 0 to 2**63 - 1, got {seed!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr <= 1):
        raise NnzooError(f"lr must be a learning rate in (0, 1], got {lr!r}")
    if psnr_target is not None and not (isinstance(psnr_target, (int, float)) and not isinstance(psnr_target, bool)
                                        and psnr_target > 0):
        raise NnzooError(f"--psnr-target must be a PSNR in dB above 0 (e.g. 40; inf runs every step), "
                         f"got {psnr_target!r}")


def fit_images(images: Sequence[str | os.PathLike | np.ndarray | Tensor], *, spec: NetworkSpec | None = None,
               size: tuple[int, int] = IMAGE_SIZE, invert: bool = False, steps: int | None = None,
               lr: float | None = None, psnr_target: float | None = None, seed: int = 0,
               progress: Callable[[int], None] | None = None) -> list[ImageFit]:
    """Fit one SIREN per image, in the public convention, with the recipe of the built ``mnist_inr`` data.

    Images are read by :func:`read_image` (all of them before any fitting, so a bad file fails
    fast).  ``spec`` defaults to the DWSNets SIREN (2-32-32-1, sine, w0 = 30, output + 0.5);
    ``steps``, ``lr`` and ``psnr_target`` default to the offline builder's recipe (:data:`DEFAULT_FIT`,
    the defaults of :class:`nnzoo.data.builders.inr.InrBuildConfig`): Adam until the PSNR first reaches the
    target (``psnr_target=math.inf`` runs every step).  ``seed`` fixes the initialisation.
    """
    check_fit_options(steps, lr, psnr_target, seed)  # before any image is read or anything fitted
    recipe = DEFAULT_FIT
    spec = spec or siren_spec(recipe.widths, w0=recipe.w0)
    psnr_target = recipe.psnr_target if psnr_target is None else psnr_target
    targets = torch.stack([read_image(image, size=size, invert=invert) for image in images])
    result = fit_sirens(targets, spec, steps=recipe.steps if steps is None else steps,
                        lr=recipe.lr if lr is None else lr, psnr_target=psnr_target,
                        chunk_size=recipe.chunk_size, seed=seed, init=recipe.init, progress=progress)
    return [ImageFit(params_to_state_dict(p, spec, prefix=STATE_DICT_PREFIX), p.clone(), target, float(q), int(k),
                     psnr_target) for p, target, q, k in zip(result.params, targets, result.psnr, result.steps)]


def fit_image(image: str | os.PathLike | np.ndarray | Tensor, **options: Any) -> ImageFit:
    """Fit one SIREN to one image (a path or an array): ``fit_image("digit.png").save("digit.pth")``.

    The result is an INR in the public convention (:func:`grid_coordinates`: input 0 = x,
    input 1 = y on a ``linspace(-1, 1)`` grid; output + 0.5 = intensity in [0, 1]) with
    DWSNets keys ``seq.{0,1,2}.{weight,bias}``, which ``nnzoo predict --checkpoint
    gnn-mnist_inr digit.pth`` classifies.  The image must be a white digit on black, as in
    MNIST (``invert=True`` for dark-on-light).  ``options`` are those of :func:`fit_images`.
    """
    return fit_images([image], **options)[0]
