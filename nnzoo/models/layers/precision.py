"""Mixed precision (``trainer.precision=bf16-mixed`` / ``16-mixed``): what stays in float32 under autocast.

Autocast runs matrix products in half precision and leaves every other op in the dtype of its inputs, so
buffers made with ``new_zeros`` from a float32 tensor no longer match what the layers return, and
reductions of half-precision tensors lose what the model depends on.  Evaluating a network on its own
weights (probe features, rendering edited INRs), the Fourier lift of raw weights and the statistics of
aggregations and norms are therefore computed in float32; both helpers are no-ops outside autocast, so
float32 (and float64) results are unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)


def upcast(x: Tensor) -> Tensor:
    """``x`` as float32 if it is float16/bfloat16 (an autocast output), else ``x`` itself."""
    return x.float() if x.dtype in LOW_PRECISION else x


def autocast_off(device: torch.device) -> torch.autocast:
    """A context in which autocast is disabled on ``device``'s type (ops run in their inputs' dtype)."""
    return torch.autocast(device_type=device.type, enabled=False)
