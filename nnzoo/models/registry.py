"""Model registry: ``create_model(name, info, **hparams)`` like timm's, plus listing metadata."""

from __future__ import annotations

from typing import Any

from torch import nn

from nnzoo.data.weights import DataInfo
from nnzoo.errors import IncompatibleError, NnzooError
from nnzoo.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model")


def register_model(name: str, summary: str, tasks: tuple[str, ...] = ("classification", "regression"),
                   conv: bool = True, heterogeneous: bool = True, invariant: bool = True,
                   reads_norm: bool = True, io_ordered: bool = True):
    """Register a model class.

    ``conv``: handles convolutional networks; ``heterogeneous``: handles a
    dataset mixing architectures; ``invariant``: its output is invariant to
    hidden-neuron permutations by construction.  Two declarations the
    sensitivity tests read instead of model names: ``reads_norm``, it reads
    normalisation tensors (BatchNorm scale, shift, running statistics);
    ``io_ordered``, its output depends on the order of the input and output
    neurons (which are not symmetries: a set-based model such as StatNN,
    which pools every tensor, is blind to it by design).
    """
    return MODELS.register(name, summary, tasks=tasks, conv=conv, heterogeneous=heterogeneous,
                           invariant=invariant, reads_norm=reads_norm, io_ordered=io_ordered)


def check_task(name: str, task: str, data: str) -> None:
    """Refuse a model that cannot do a dataset's task, in one line and before any data is built or read."""
    tasks = MODELS.entry(name).meta["tasks"]
    if task not in tasks:
        able = [n for n in MODELS.names() if task in MODELS.entry(n).meta["tasks"]]
        what = "edit networks (predict one change per weight)" if task == "editing" else f"do {task}"
        raise IncompatibleError(f"model '{name}' cannot {what}, which dataset '{data}' asks for; "
                                f"use {', '.join(able)}")


def check_compatible(name: str, info: DataInfo) -> None:
    """One-line error when a model cannot run on a dataset (instead of a shape error later)."""
    check_task(name, info.task, info.name)
    check_kinds(name, info.name, conv=any(s.is_conv for s in info.specs), heterogeneous=not info.homogeneous)


def check_kinds(name: str, data: str, conv: bool, heterogeneous: bool) -> None:
    """Refuse a model that cannot read a dataset's kind of networks; called with a dataset's registry metadata
    before anything is built, and with its :class:`DataInfo` once loaded."""
    meta = MODELS.entry(name).meta
    if conv and not meta["conv"]:
        able = [n for n in MODELS.names() if MODELS.entry(n).meta["conv"]]
        raise IncompatibleError(f"model '{name}' cannot read convolutional networks (dataset '{data}'); "
                                f"use {', '.join(able)}")
    if heterogeneous and not meta["heterogeneous"]:
        able = [n for n in MODELS.names() if MODELS.entry(n).meta["heterogeneous"]]
        raise IncompatibleError(f"model '{name}' needs one parameter layout per dataset but '{data}' mixes "
                                f"architectures; use {', '.join(able)}")


def create_model(name: str, info: DataInfo, **hparams: Any) -> nn.Module:
    """Build registered model ``name`` for the dataset described by ``info``."""
    cls = MODELS.get(name)
    check_compatible(name, info)
    try:
        return cls(info, **hparams)
    except TypeError as exc:
        raise NnzooError(f"bad option for model '{name}': {exc}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
