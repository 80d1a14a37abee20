"""Dropout that is cheaper on large CPU tensors, with the same distribution as ``nn.Dropout``.

On CPU ``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``, which costs twice a uniform draw
of the same size: NG-T's six edge dropouts of ``(B, n, n, 32)`` tensors took 11% of a training step.  Here
the mask is ``(U >= p) / (1 - p)`` from one ``rand_like``, built in place and multiplied in (forward and
backward both one product); the kept entries, their scale and the probability are those of ``nn.Dropout``,
only the random stream differs.  Small tensors, GPUs and mixed precision keep ``F.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnzoo.models.layers.fused import fused_enabled

LARGE = 1 << 20  # elements: below this the mask is cheap either way, and the stream stays F.dropout's


class _UniformMaskDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        mask = torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same state, same distribution) whose mask is a thresholded uniform draw on large CPU
    float tensors."""

    def forward(self, x: Tensor) -> Tensor:
        if (self.training and 0 < self.p < 1 and not self.inplace and x.numel() >= LARGE
                and fused_enabled(x)):
            return _UniformMaskDropout.apply(x, self.p)
        return F.dropout(x, self.p, self.training, self.inplace)
