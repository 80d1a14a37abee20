"""Checks of what files hold and of what models answer, shared by every reader and by ``nnzoo predict``.

* A tensor read from a network file or a checkpoint must be a plain dense tensor of real numbers: a sparse,
  meta, nested, quantized or complex one either fails deep inside torch (a traceback) or, for complex,
  is silently cast to its real part.  :func:`check_plain_tensors` refuses them in one line naming the file.
* Finite weights can still draw or predict ``inf``/``NaN`` (``1e38`` everywhere): :func:`check_renders_finite`
  bounds what a network with bounded hidden activations (SIRENs) can output, and :func:`check_finite_rows`
  refuses a model answer that is not finite, naming the network it came from, instead of printing ``NaN``
  (not JSON) with exit 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nnzoo.errors import NnzooError


def tensor_kind(value: Tensor) -> tuple[str, str] | None:
    """What makes ``value`` unusable as a weight tensor and how to save it instead, or ``None``."""
    if value.is_nested:
        return "a nested tensor", "save each weight as its own tensor"
    if value.layout != torch.strided:
        return f"a sparse ({str(value.layout).removeprefix('torch.')}) tensor", "save it with .to_dense()"
    if value.device.type == "meta":
        return "a meta tensor, which holds no values", "save the trained weights, not a meta-device model"
    if value.is_quantized:
        return f"a quantized ({str(value.dtype).removeprefix('torch.')}) tensor", "save it with .dequantize()"
    if value.is_complex():
        return (f"a complex ({str(value.dtype).removeprefix('torch.')}) tensor",
                "the networks nnzoo reads have real weights (.real would drop the imaginary part)")
    return None


def check_plain_tensors(tensors: Mapping[Any, Any], source: str | Path, what: str = "tensor") -> None:
    """Refuse, naming ``source`` and the key, any tensor of ``tensors`` that is not a plain dense real tensor
    (see :func:`tensor_kind`); entries that are not tensors are left to the caller's own checks."""
    for key, value in tensors.items():
        kind = tensor_kind(value) if isinstance(value, Tensor) else None
        if kind is not None:
            raise NnzooError(f"{source}: {what} {key!r} is {kind[0]}; nnzoo reads plain dense real tensors only: "
                             f"{kind[1]}")


BOUNDED_ACTIVATIONS = {"sine": 1.0, "tanh": 1.0, "sigmoid": 1.0}
"""Hidden activations whose output is bounded (by this value): a network using only these has an output
bounded by its last layer's weights, whatever its input."""

FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def check_renders_finite(flat: Tensor, spec, source: str | Path) -> None:
    """Refuse a network whose float32 forward pass can overflow on inputs in ``[-1, 1]``: with bounded hidden
    activations (a SIREN) every pre-activation and the output are bounded by ``sum |w| * bound + |b|`` per row,
    computed here in float64.  Finite but huge weights (``1e38``) otherwise render ``inf`` and give NaN
    predictions, an ``inf`` test loss or an all-NaN edited network, with exit 0."""
    hidden = [layer.activation for layer in spec.layers[:-1]]
    if spec.is_conv or any(a not in BOUNDED_ACTIVATIONS for a in hidden):
        return  # unbounded activations: the forward pass itself is checked (check_finite_rows)
    params = flat.detach().double()
    bound = 1.0  # inputs: coordinates in [-1, 1]
    for i, layer in enumerate(spec.layers):
        weight, bias = spec.slot(i, "weight"), spec.slot(i, "bias")
        rows = params[weight.start:weight.end].abs().reshape(layer.out_features, -1).sum(1) * bound
        if bias is not None:
            rows = rows + params[bias.start:bias.end].abs()
        scale = spec.w0 if layer.activation == "sine" else 1.0
        largest = float(rows.max()) * scale + abs(spec.output_offset if i == spec.num_layers - 1 else 0.0)
        if not math.isfinite(largest) or largest > FLOAT32_MAX:
            raise NnzooError(f"{source}: layer {i} of {spec.describe()} can output {largest:.3g}, beyond float32 "
                             f"({FLOAT32_MAX:.3g}), so the network would draw inf or NaN; its weights reach "
                             f"{float(params.abs().max()):.3g}: re-fit or replace this network")
        bound = BOUNDED_ACTIVATIONS.get(layer.activation, 1.0)


def check_finite_rows(values: Tensor | Sequence[Tensor], sources: Sequence[str | Path], what: str) -> None:
    """Refuse the first row of ``values`` (one row, or one tensor, per network, in the order of ``sources``)
    that holds NaN or inf, naming its network: a model answer that is not a number is never printed or written."""
    if isinstance(values, Tensor):
        finite = torch.isfinite(values.reshape(len(sources), -1)).all(dim=1).tolist()
    else:
        finite = [bool(torch.isfinite(v).all()) for v in values]
    if not all(finite):
        source = sources[finite.index(False)]
        raise NnzooError(f"{source}: the checkpoint's {what} for this network is NaN or infinite (weights far "
                         "outside what it was trained on, or a damaged checkpoint); nothing was written, check the "
                         "network and the checkpoint")


def check_weight_dtypes(module: torch.nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Refuse a checkpoint whose floating-point weights were stored as integers or booleans (``.long()``):
    ``load_state_dict`` would copy the truncated values in silently and the model would answer NaN or noise.
    (The caller prefixes the checkpoint's path.)"""
    own = module.state_dict()
    for key, value in state_dict.items():
        mine = own.get(key)
        if isinstance(value, Tensor) and isinstance(mine, Tensor) and mine.is_floating_point() \
                and not value.is_floating_point():
            raise NnzooError(f"weight '{key}' is stored as {str(value.dtype).removeprefix('torch.')}, "
                             f"the model's is {str(mine.dtype).removeprefix('torch.')}; the file was converted or "
                             "damaged, restore it or export the run again")


def check_resumed_logs(version_dir: Path) -> None:
    """Refuse to resume a run whose ``metrics.csv`` the CSV logger could not read back (a folder, not UTF-8,
    not CSV): one line naming the file before anything is written, not a traceback once training started."""
    import csv
    path = Path(version_dir) / "metrics.csv"
    if not path.exists() and not path.is_symlink():
        return
    fix = "move it out of the run folder to resume without its earlier rows, or start a new run without resume=true"
    if not path.is_file():
        raise NnzooError(f"resume=true: {path} is not a regular file; {fix}")
    try:
        with path.open(newline="", encoding="utf-8") as file:
            for _ in csv.DictReader(file):
                pass
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise NnzooError(f"resume=true: {path} cannot be read back as UTF-8 CSV ({type(exc).__name__}: "
                         f"{str(exc)[:80]}); {fix}") from None
