"""The compiled path: ``torch.compile`` of a model's per-layer core (the run option ``compile``).

A model opts in with a class attribute ``compiled_cores``: the methods (``"name"`` on the model,
``"sub.name"`` on a submodule) that hold its dense work: the layers.  The front end that builds a batch graph
from raw weights stays eager: it is index arithmetic that changes with every batch.  :func:`compile_model`
replaces those methods on the instance by their compiled versions, run with the hand-written CPU kernels of
:mod:`~nnzoo.models.layers.fused` switched off: Inductor fuses the plain formulas itself (C++/OpenMP on CPU,
Triton on GPU), and dynamo cannot trace those kernels' Python loops over edge chunks.  The model's
``compiled`` flag tells it to take the formulas the compiler handles best (dense statistics over a batch of
one architecture).

Compilation is lazy: the first step of each new input shape pays for it (see ``benchmarks/speed.py
--compiled``).  Batch sizes share one graph once dynamo has seen two of them (its automatic dynamic shapes).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nnzoo.errors import NnzooError
from nnzoo.models.layers.fused import fused_kernels


def compilable(model: nn.Module | type[nn.Module]) -> bool:
    """Whether ``model`` (or a model class) declares methods that :func:`compile_model` can compile."""
    return bool(getattr(model if isinstance(model, type) else type(model), "compiled_cores", ()))


def require_compilable(model: nn.Module | type[nn.Module], name: str) -> None:
    """``compile=true`` on a model without a compiled path: the one line that says so (``name``: how the user
    calls the model)."""
    if not compilable(model):
        raise NnzooError(f"compile=true: {name} has no compiled path (gnn, transformer and dwsnet have one); "
                         "set compile=auto or compile=false")


def _owners(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, method name)`` of each of the model's ``compiled_cores``."""
    found = []
    for path in type(model).compiled_cores:
        owner, _, name = path.rpartition(".")
        found.append((model.get_submodule(owner) if owner else model, name))
    return found


def compile_model(model: nn.Module, mode: str | None = None) -> nn.Module:
    """Compile ``model``'s ``compiled_cores`` methods in place and return the model.

    ``mode`` is ``torch.compile``'s (``None``: the default; ``"reduce-overhead"``: CUDA graphs, which remove
    launch cost on a GPU).  The parameters, the state dict and the checkpoints are the eager model's; only the
    instance's method changes, so :func:`eager_core` restores it.
    """
    require_compilable(model, type(model).__name__)
    for owner, name in _owners(model):
        setattr(owner, name, _without_cpu_kernels(torch.compile(getattr(owner, name), mode=mode)))
    model.compiled = True
    return model


def _without_cpu_kernels(compiled: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(compiled)
    def run(*args: Any, **kwargs: Any) -> Any:
        with fused_kernels(False):
            return compiled(*args, **kwargs)
    return run


def eager_core(model: nn.Module) -> nn.Module:
    """Undo :func:`compile_model`: the class's eager method again."""
    if compilable(model):
        for owner, name in _owners(model):
            owner.__dict__.pop(name, None)
        model.__dict__.pop("compiled", None)
    return model


def compile_counters() -> dict[str, int]:
    """Graph breaks, frames compiled and recompilations dynamo has counted in this process (what the tests and
    ``benchmarks/speed.py`` check stays at zero breaks and one graph per core)."""
    from torch._dynamo.utils import counters
    return {"graph_breaks": sum(counters["graph_break"].values()),
            "frames_compiled": counters["stats"]["unique_graphs"],
            "recompilations": sum(counters["recompiles"].values())}


PAYS_BACK_AFTER: dict[tuple[str, str, int | None], int] = {
    ("DWSNet", "cpu", 2): 3677,  # 1.18x at batch 64, 225 s of compiling
    ("NeuralGraphGNN", "cpu", 1): 705,  # 1.27x at batch 64, 115 s of compiling (the benchmark workers' threads=1)
}
"""Training steps after which ``compile=auto`` compiles, per ``(model class, device type, CPU threads)``
(threads ``None`` on a GPU): the steps whose measured saving repays the measured compilation time
(``benchmarks/speed.py --compiled``, the "Compiled path" tables of ``docs/results.md``; a test checks these
figures against them).  Anything absent here stays eager under ``auto``: a model the compiler does not speed
up, or a device or thread count where nobody has measured it."""


def plan_compile(setting: bool | str, model: nn.Module, device: str, planned_steps: float,
                 threads: int | None = None) -> tuple[bool, str]:
    """Whether to compile ``model`` for a run of ``planned_steps`` training steps on ``device`` (a device type)
    with ``threads`` CPU threads (default: torch's), and the line that says why (empty when there is nothing
    to say).  ``setting`` is the run option ``compile``: ``true``, ``false`` or ``auto`` (compile where
    :data:`PAYS_BACK_AFTER` says it pays)."""
    if setting not in (True, False, "auto"):
        raise NnzooError(f"compile must be true, false or auto, got {setting!r}")
    name = type(model).__name__
    if setting is True:
        require_compilable(model, name)
        return True, f"compile=true: {name}'s layers compiled (the first steps of each input shape compile)"
    if setting is False or not compilable(model):
        return False, ""
    if device == "cpu":
        threads = threads or torch.get_num_threads()
        where = f"cpu, {threads} thread{'s' if threads > 1 else ''}"
    else:
        threads, where = None, device
    after = PAYS_BACK_AFTER.get((name, device, threads))
    if after is None:
        return False, ""
    steps = f"{planned_steps:,.0f}" if math.isfinite(planned_steps) else "unbounded"
    if planned_steps >= after:
        return True, (f"compile=auto: {name}'s layers compiled: it pays back its compile time after ~{after:,} "
                      f"steps ({where}), this run plans {steps} (compile=false: eager)")
    return False, (f"compile=auto: eager: compiling pays back after ~{after:,} steps ({where}), this run plans "
                   f"{steps} (compile=true: compile anyway)")
