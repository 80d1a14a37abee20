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
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nnzoo.nets.functional import mlp_forward, siren_init
from nnzoo.nets.spec import NetworkSpec


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
